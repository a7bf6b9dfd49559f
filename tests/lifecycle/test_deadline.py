"""The call's one deadline (llmclient.lifecycle.deadline)."""

from __future__ import annotations

import asyncio

import pytest

from llmclient import APITimeoutError
from llmclient.lifecycle import Deadline


async def test_deadline_raises_a_typed_timeout() -> None:
    with pytest.raises(APITimeoutError, match=r"0\.05 s deadline"):
        async with Deadline(0.05).scope():
            await asyncio.sleep(5)
    async with Deadline(None).scope():
        await asyncio.sleep(0)


async def test_one_timer_bounds_every_scope_and_close_disarms_it() -> None:
    deadline = Deadline(0.05)
    async with deadline.scope():
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # expires between two scopes: the caller's own code is not cancelled
    assert deadline.expired
    with pytest.raises(APITimeoutError):
        async with deadline.scope(provider="p", model="m"):
            raise AssertionError("a scope entered after the deadline does not run")
    finished = Deadline(0.05)
    async with finished.scope():
        pass
    finished.close()
    await asyncio.sleep(0.1)
    assert not finished.expired


async def test_a_callers_own_cancellation_is_not_a_timeout() -> None:
    deadline = Deadline(5)

    async def waits() -> None:
        async with deadline.scope():
            await asyncio.sleep(5)

    task = asyncio.ensure_future(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline.close()


async def test_one_scope_entered_again_is_bounded_each_time() -> None:
    # A stream reads every chunk in the same scope: each entry is bounded, and the time between entries is not.
    deadline = Deadline(0.2)
    scope = deadline.scope(provider="p", model="m")
    for _ in range(3):
        async with scope:
            await asyncio.sleep(0)
    await asyncio.sleep(0.3)  # the caller's own code, outside the scope: not cancelled
    with pytest.raises(APITimeoutError, match=r"0\.2 s deadline"):
        async with scope:
            raise AssertionError("entered after the deadline")
    waiting = Deadline(0.05)
    again = waiting.scope()
    async with again:
        pass
    with pytest.raises(APITimeoutError):
        async with again:
            await asyncio.sleep(5)
    assert waiting.expired
