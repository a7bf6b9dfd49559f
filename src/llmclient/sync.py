"""`SyncClient`: the async `Client` for scripts and notebooks, without asyncio in sight.

It runs one `Client` on a private event loop in a background thread. That makes it safe to call from plain code,
from inside a running event loop (a Jupyter cell), and from several threads at once.

```python
from llmclient import SyncClient

with SyncClient(default_model="fake/echo") as client:
    reply = client.chat("Hello")
    assert reply.text == "You said: Hello"
    assert "".join(chunk.delta for chunk in client.stream("one two")) == "You said: one two"
    assert len(client.ledger) == 2
```
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable, Coroutine, Iterator
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from llmclient.accounting.budgets import BudgetScope
from llmclient.accounting.ledger import CostLedger
from llmclient.chat.streaming import ChatStream
from llmclient.client import Client
from llmclient.types import ChatChunk, ChatResponse

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


class LoopThread:
    """A private event loop on a daemon thread; `run` executes a coroutine there from any thread and waits.

    The caller's context variables travel with the coroutine, so a budget opened with `with client.budget(...)`
    in the calling thread applies to the calls it makes.
    """

    def __init__(self, name: str = "llmclient") -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the private loop and return its result (or raise its error) in this thread."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("SyncClient was called from its own event loop; use the async Client there")
        outcome = self.submit(coroutine)
        try:
            return outcome.result()
        except BaseException:
            outcome.cancel()  # interrupted while waiting (Ctrl-C): stop the work on the loop too
            raise

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start `coroutine` on the private loop; its future can be awaited from another loop
        (`asyncio.wrap_future`), and cancelling it cancels the work."""
        context = contextvars.copy_context()
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            if outcome.cancelled():  # cancelled before it started
                coroutine.close()
                return
            task = context.run(self.loop.create_task, coroutine)
            task.add_done_callback(lambda done: _copy_outcome(done, outcome))
            outcome.add_done_callback(lambda done: done.cancelled() and self.loop.call_soon_threadsafe(task.cancel))

        self.loop.call_soon_threadsafe(start)
        return outcome

    def close(self) -> None:
        """Stop the loop and its thread, after winding down what ran on it (as `asyncio.run` ends a loop): its
        async generators (connection pools close there, `http.loop_end`) and its default executor's threads."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self.run(_wind_down(self.loop))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


async def _wind_down(loop: asyncio.AbstractEventLoop) -> None:
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def _copy_outcome(task: asyncio.Task[T], outcome: concurrent.futures.Future[T]) -> None:
    if outcome.done():  # cancelled by the caller: the task was told to stop
        if not task.cancelled():
            task.exception()  # retrieved, so an error while stopping is not logged as lost
        return
    if task.cancelled():
        outcome.cancel()
    elif (error := task.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncClient, P], R]:
    """`Client.<method>` as a blocking `SyncClient` method with the same typed signature (derived, not copied)."""

    @functools.wraps(method)
    def blocking(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._runner.run(method(self.client, *args, **kwargs))

    return blocking


def _streaming(
    method: Callable[Concatenate[Client, P], ChatStream],
) -> Callable[Concatenate[SyncClient, P], SyncStream]:
    """`Client.stream` as a plain iterator of chunks (`.response` holds the assembled reply at the end)."""

    @functools.wraps(method)
    def streaming(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> SyncStream:
        return SyncStream(self._runner, method(self.client, *args, **kwargs))

    return streaming


def _options_of(
    init: Callable[Concatenate[Client, P], None],
) -> Callable[[Callable[..., None]], Callable[Concatenate[SyncClient, P], None]]:
    """Type `SyncClient.__init__` with `Client.__init__`'s keyword arguments (derived, not copied)."""

    def typed(sync_init: Callable[..., None]) -> Callable[Concatenate[SyncClient, P], None]:
        return sync_init

    return typed


class SyncClient:
    """The `Client`'s calls, blocking. Takes the same arguments as `Client`; `SyncClient.of(client)` wraps a ready
    one.

    Use it as a context manager, or call `close()` when done.
    """

    @_options_of(Client.__init__)
    def __init__(self, *, client: Client | None = None, **options: Any) -> None:
        self._runner = LoopThread()
        self.client = client if client is not None else self._runner.run(_make(options))

    @classmethod
    def of(cls, client: Client) -> SyncClient:
        """A `SyncClient` over a ready `Client` (its drivers, ledger and budgets), e.g. one shared with async code."""
        return cls(client=client)  # type: ignore[call-arg]  # the typed signature is Client's; this one is ours

    def __repr__(self) -> str:
        return f"SyncClient({self.client!r})"

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections and models, then the private loop."""
        if not self._runner.loop.is_closed():
            self._runner.run(self.client.aclose())
            self._runner.close()

    @property
    def ledger(self) -> CostLedger:
        """The client's ledger: exact totals of every call and its recent records (see `CostLedger`)."""
        return self.client.ledger

    def budget(self, usd: Decimal | str | int, *, allow_unknown_prices: bool = False) -> BudgetScope:
        """A spending limit for the calls made inside `with client.budget(...):` (see `Client.budget`)."""
        return self.client.budget(usd, allow_unknown_prices=allow_unknown_prices)

    chat = _blocking(Client.chat)
    embed = _blocking(Client.embed)
    count_tokens = _blocking(Client.count_tokens)
    similarity = _blocking(Client.similarity)
    search = _blocking(Client.search)
    run = _blocking(Client.run)

    stream = _streaming(Client.stream)


class SyncStream:
    """A streamed reply as a plain iterator; chunks are fetched from the private loop one at a time."""

    def __init__(self, runner: LoopThread, stream: ChatStream) -> None:
        self._runner = runner
        self._stream = stream
        self._iterator = stream.__aiter__()

    def __iter__(self) -> Iterator[ChatChunk]:
        try:
            while True:
                try:
                    yield self._runner.run(_next(self._iterator))
                except StopAsyncIteration:
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Stop the stream early and close its connection."""
        self._runner.run(self._stream.aclose())

    @property
    def response(self) -> ChatResponse:
        """The assembled reply, once the stream has ended."""
        return self._stream.response

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


async def _make(options: dict[str, Any]) -> Client:
    return Client(**options)


async def _next(iterator: Any) -> ChatChunk:
    chunk: ChatChunk = await iterator.__anext__()
    return chunk
