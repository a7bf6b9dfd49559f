"""Sending: one retry layer (the call's `RetryPolicy`) under one deadline, counting every attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from llmclient.pipeline.call import Call
from llmclient.pipeline.deadline import Deadline

T = TypeVar("T")


async def send(call: Call, deadline: Deadline, attempt: Callable[[], Awaitable[T]]) -> T:
    """Await `attempt()` under the call's retry policy and `deadline`; `call.attempts` counts each request."""

    async def counted() -> T:
        call.attempts += 1
        return await attempt()

    async with deadline.scope(provider=call.provider, model=call.model):
        return await call.policy.run(counted)
