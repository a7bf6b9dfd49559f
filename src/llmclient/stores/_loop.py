"""The event loop every PostgreSQL connection of this process lives on: one daemon thread, started on first use.

Why a loop of its own rather than the caller's: a call's admission awaits the database from whatever loop the
caller runs (`asyncio.run` after `asyncio.run`, a `SyncClient`'s thread, a web framework's loop), while recording
happens in the pipeline's synchronous `finish` and must not wait at all. With the connections on this loop, a
caller's loop only ever awaits a future, for at most the store's timeout, and a record is handed over in
microseconds; the database's silences, reconnections and spooling never run on the caller's loop. psycopg's async
connections and pool do the I/O here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


class StoreLoop:
    """An asyncio loop on a daemon thread. `StoreLoop.get()` is the process's one (made again after a fork: the
    child has the parent's memory but not its threads)."""

    _current: ClassVar[StoreLoop | None] = None
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="llmclient-postgres", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @classmethod
    def get(cls) -> StoreLoop:
        """The running store loop, started if there is none in this process yet."""
        with cls._guard:
            current = cls._current
            if current is None or current.pid != os.getpid() or not current._thread.is_alive():
                current = cls._current = cls()
            return current

    def in_loop(self) -> bool:
        """Whether the caller runs on this loop's thread (where waiting for the loop would deadlock)."""
        return threading.get_ident() == self._thread.ident

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coroutine` on the store loop; its future may be awaited from any loop or waited on from any thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call_soon(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function(*args)` on the store loop, soon (thread-safe, returns at once)."""
        self.loop.call_soon_threadsafe(function, *args)

    async def wait(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Await `coroutine`, run on the store loop, from the caller's loop; at `timeout` it is cancelled there and
        `TimeoutError` raised here at once (the caller never waits on the database's goodwill)."""
        future = asyncio.wrap_future(self.submit(coroutine))
        try:
            # A wrapped future is done the moment it is cancelled, so a timeout returns here at once, however long
            # the store loop then takes to unwind the query.
            return await asyncio.wait_for(future, timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            future.cancel()  # cancels the task on the store loop too
            raise

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Wait for `coroutine` on the store loop from a thread that is not the loop's (a blocking API)."""
        if self.in_loop():
            coroutine.close()
            raise RuntimeError("a blocking PostgreSQL call cannot run on the store's own loop; await it instead")
        future = self.submit(coroutine)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None
