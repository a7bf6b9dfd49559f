"""Closing what belongs to an event loop while that loop still runs, at its end.

A connection pool belongs to the loop that opened its sockets. A script that runs one client under several
`asyncio.run()` calls ends each loop with the pool's idle connections open; the loop closes, and their sockets stay
open until the garbage collector finds them (a `ResourceWarning` each), however long the process runs. asyncio has
no "this loop is ending" callback, but `asyncio.run`, `asyncio.Runner` (pytest-asyncio's loops), uvloop and a
`SyncClient`'s loop all close every async generator the loop has started (`loop.shutdown_asyncgens()`) before they
close the loop. So a pool starts one small async generator on each loop it binds to, and the generator's `finally`
closes that loop's connections there, the proper way. A loop closed without that step (`loop.close()` alone)
leaves the pool to drop them when it next binds to another loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable


async def _until_loop_end(close: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await close()


def on_loop_end(close: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None] | None:
    """Have the running event loop await `close()` when it shuts down its async generators (the end of
    `asyncio.run`), or when the returned watcher is garbage collected while the loop runs.

    The caller keeps the watcher as long as what `close` closes; `close` must check that it still has something of
    this loop to close (the watcher may outlive a rebinding). Returns None where the loop cannot watch (its
    generators were already shut down): the caller then does without.
    """
    watcher = _until_loop_end(close)
    try:
        # Started by hand up to its `yield` (nothing to await before it): the running loop's first-iteration hook
        # registers it here, from synchronous code.
        watcher.asend(None).send(None)
    except StopIteration:
        return watcher
    except Exception:  # the loop warned that its generators were shut down already (an error under -W error)
        return None
    return None  # not reached: the generator yields without awaiting
