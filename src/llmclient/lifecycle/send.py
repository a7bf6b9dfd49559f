"""Sending: one retry layer (the call's `RetryPolicy`) under one deadline, counting every attempt; and a whole
chat call from admission to its record."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from llmclient.lifecycle.call import Call, Outcome
from llmclient.lifecycle.deadline import Deadline
from llmclient.lifecycle.steps import Pipeline
from llmclient.types import ChatResponse

T = TypeVar("T")


async def send(call: Call, deadline: Deadline, attempt: Callable[[], Awaitable[T]]) -> T:
    """Await `attempt()` under the call's retry policy and `deadline`; `call.attempts` counts each request."""

    async def counted() -> T:
        call.attempts += 1
        try:
            return await attempt()
        except Exception as error:  # a retry or another deployment may follow: remember what this one may cost
            call.attempt_failed(error)
            raise

    async with deadline.scope(provider=call.provider, model=call.model):
        if call.route is not None:  # a model group: retries and moves between its deployments
            return await call.route.run(call, counted)
        return await call.policy.run(counted, call.retrying if call.observers is not None else None)


async def admit(call: Call, pipeline: Pipeline, deadline: Deadline) -> None:
    """Admission under the call's deadline: counting the prompt (a tokenizer may load, or hang) is part of the
    call's time, so `timeout=` bounds it too."""
    async with deadline.scope(provider=call.provider, model=call.model):
        await pipeline.admit(call)


def deadline_of(call: Call, default_s: float | None) -> Deadline:
    """The call's deadline, started now: its own `timeout=`, else the client's."""
    return Deadline(default_s if call.timeout is None else call.timeout)


async def chat(call: Call, pipeline: Pipeline, deadline_s: float | None) -> ChatResponse:
    """One chat call: admit and send with retries under one deadline, then price, settle and record it once.

    A failure after admission is recorded when it was, or may have been, billed (a 2xx we could not use, a timeout
    after the request left) and released otherwise.
    """

    def attempt() -> Awaitable[ChatResponse]:  # reads `call.request` each time: routing rebuilds it per deployment
        assert call.request is not None, "a chat call carries its request"
        return call.driver.chat(call.request)

    deadline = deadline_of(call, deadline_s)
    try:
        await admit(call, pipeline, deadline)
        try:
            response = await send(call, deadline, attempt)
        except BaseException as exc:
            await pipeline.fail(call, exc)
            raise
    finally:
        deadline.close()
    response.applied_params = call.applied
    response.dropped_params = call.dropped
    if call.deployment is not None:
        response.deployment = call.deployment
    outcome = Outcome(
        response.usage,
        request_id=response.request_id,
        served_model=response.model,
        service_tier=response.service_tier,
        response=response,
    )
    pipeline.finish(call, outcome)
    response.cost = outcome.cost
    return response
