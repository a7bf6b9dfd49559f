r"""A call's overall deadline: started once, shared by every attempt, every wait between them and every chunk.

```python
import asyncio
import pytest
from llmclient import APITimeoutError
from llmclient.lifecycle.deadline import Deadline

with pytest.raises(APITimeoutError, match=r"0\.05 s deadline"):
    async with Deadline(0.05).scope():
        await asyncio.sleep(1)
```

One timer per call, armed when the first scope is entered and cancelled by `close()` (which every call runs in a
`finally`: no timer outlives its call, however long the deadline): entering and leaving a scope
(once per call, and once per streamed chunk) only notes which task is waiting. When the timer fires, the tasks
inside a scope are cancelled and their scopes raise `APITimeoutError`; a scope entered after it fired raises at
once. A stream read between the caller's own awaits is therefore bounded without the caller's code being cancelled.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from llmclient.errors import APITimeoutError

if TYPE_CHECKING:
    import asyncio


class Deadline:
    """`seconds` from now on the running loop's clock (None: no deadline); `scope()` guards a block with it.

    Must be created inside a running event loop; `close()` it when the call is over (a later scope would still
    be bounded: the timer is armed again).
    """

    __slots__ = ("_current_task", "_handle", "_inside", "_loop", "expired", "seconds", "when")

    def __init__(self, seconds: float | None) -> None:
        import asyncio

        self.seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._current_task = asyncio.current_task  # looked up once: a scope asks for it around every chunk
        self.when = None if seconds is None else self._loop.time() + seconds
        self.expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._inside: list[_Scope] = []

    def scope(self, *, provider: str | None = None, model: str | None = None) -> _Scope:
        """An `async with` block that raises `APITimeoutError` (naming the provider and model) past the deadline."""
        return _Scope(self, provider, model)

    def close(self) -> None:
        """Disarm the timer: the call is over."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self) -> None:
        self._handle = None
        self.expired = True
        for scope in self._inside:
            scope.cancel()


class _Scope:
    # A plain class rather than `@asynccontextmanager`: it runs on every call and around every streamed chunk, and
    # the generator machinery costs several microseconds each time. Once exited it may be entered again (a stream
    # reads every chunk in the same one); a scope that timed out has raised, ending its call.
    __slots__ = ("_cancelled", "_cancelling", "_deadline", "_model", "_provider", "_task")

    def __init__(self, deadline: Deadline, provider: str | None, model: str | None) -> None:
        self._deadline = deadline
        self._provider = provider
        self._model = model
        self._task: asyncio.Task[object] | None = None
        self._cancelled = False
        self._cancelling = 0

    def _timeout(self) -> APITimeoutError:
        return APITimeoutError(
            f"the call did not finish within its {self._deadline.seconds:g} s deadline",
            provider=self._provider,
            model=self._model,
        )

    async def __aenter__(self) -> None:
        deadline = self._deadline
        if deadline.when is None:
            return
        if deadline.expired:
            raise self._timeout()
        task = self._task = deadline._current_task()
        assert task is not None, "a deadline scope runs inside a task"
        if deadline._handle is None:
            deadline._handle = deadline._loop.call_at(deadline.when, deadline._expire)
        if sys.version_info >= (3, 11):  # tells the deadline's cancellation from the caller's own (3.10 cannot)
            self._cancelling = task.cancelling()
        deadline._inside.append(self)

    def cancel(self) -> None:
        assert self._task is not None
        self._cancelled = True
        self._task.cancel()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task = self._task
        if task is None:
            return
        self._deadline._inside.remove(self)
        if not self._cancelled:
            return
        remaining = 0
        if sys.version_info >= (3, 11):
            remaining = task.uncancel()
        import asyncio

        if remaining <= self._cancelling and kind is not None and issubclass(kind, asyncio.CancelledError):
            raise self._timeout() from exc
