r"""A call's overall deadline: started once, shared by every attempt, every wait between them and every chunk.

```python
import asyncio
import pytest
from llmclient import APITimeoutError
from llmclient.pipeline.deadline import Deadline

with pytest.raises(APITimeoutError, match=r"0\.05 s deadline"):
    async with Deadline(0.05).scope():
        await asyncio.sleep(1)
```
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

from llmclient.errors import APITimeoutError

if TYPE_CHECKING:
    import asyncio

# asyncio is imported on first use, like httpx: `import llmclient` stays light.
if sys.version_info >= (3, 11):

    def _timeout_at(when: float) -> Any:
        import asyncio

        return asyncio.timeout_at(when)

else:  # pragma: no cover - Python 3.10 has no asyncio.timeout_at

    class _timeout_at:
        def __init__(self, when: float) -> None:
            self._when = when
            self._fired = False

        async def __aenter__(self) -> None:
            import asyncio

            task = asyncio.current_task()
            assert task is not None
            self._handle = asyncio.get_running_loop().call_at(self._when, self._fire, task)

        def _fire(self, task: asyncio.Task[Any]) -> None:
            self._fired = True
            task.cancel()

        async def __aexit__(
            self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
        ) -> None:
            import asyncio

            self._handle.cancel()
            if self._fired and kind is asyncio.CancelledError:
                raise TimeoutError from exc


class Deadline:
    """`seconds` from now on the running loop's clock (None: no deadline); `scope()` guards a block with it.

    Must be created inside a running event loop.
    """

    __slots__ = ("seconds", "when")

    def __init__(self, seconds: float | None) -> None:
        import asyncio

        self.seconds = seconds
        self.when = None if seconds is None else asyncio.get_running_loop().time() + seconds

    def scope(self, *, provider: str | None = None, model: str | None = None) -> _Scope:
        """An `async with` block that raises `APITimeoutError` (naming the provider and model) past the deadline."""
        return _Scope(self, provider, model)


class _Scope:
    # A plain class rather than `@asynccontextmanager`: it runs on every call and around every streamed chunk, and
    # the generator machinery costs several microseconds each time.
    __slots__ = ("_deadline", "_model", "_provider", "_timeout")

    def __init__(self, deadline: Deadline, provider: str | None, model: str | None) -> None:
        self._deadline = deadline
        self._provider = provider
        self._model = model
        self._timeout: Any = None

    async def __aenter__(self) -> None:
        if self._deadline.when is not None:
            self._timeout = _timeout_at(self._deadline.when)
            await self._timeout.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timeout is None:
            return
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError as timeout:
            raise APITimeoutError(
                f"the call did not finish within its {self._deadline.seconds:g} s deadline",
                provider=self._provider,
                model=self._model,
            ) from timeout
