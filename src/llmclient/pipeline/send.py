"""Sending: one retry layer (the call's `RetryPolicy`) under one deadline, counting every attempt; and a whole
chat call from admission to its record."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from llmclient.pipeline.call import Call, Outcome
from llmclient.pipeline.deadline import Deadline
from llmclient.pipeline.steps import Pipeline
from llmclient.types import ChatResponse

T = TypeVar("T")


async def send(call: Call, deadline: Deadline, attempt: Callable[[], Awaitable[T]]) -> T:
    """Await `attempt()` under the call's retry policy and `deadline`; `call.attempts` counts each request."""

    async def counted() -> T:
        call.attempts += 1
        return await attempt()

    async with deadline.scope(provider=call.provider, model=call.model):
        return await call.policy.run(counted, call.retrying if call.observers is not None else None)


async def chat(call: Call, pipeline: Pipeline, deadline_s: float | None) -> ChatResponse:
    """One chat call: admit, send with retries under the deadline, then price, settle and record it once.

    A failure after admission is recorded when it was billed (a 2xx we could not use) and released otherwise.
    """
    request = call.request
    assert request is not None, "a chat call carries its request"
    await pipeline.admit(call)
    try:
        response = await send(call, Deadline(deadline_s), lambda: call.driver.chat(request))
    except BaseException as exc:
        pipeline.fail(call, exc)
        raise
    response.applied_params = call.applied
    response.dropped_params = call.dropped
    outcome = Outcome(response.usage, request_id=response.request_id, served_model=response.model, response=response)
    pipeline.finish(call, outcome)
    response.cost = outcome.cost
    return response
