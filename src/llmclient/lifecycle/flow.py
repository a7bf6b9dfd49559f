"""The one call lifecycle: every call runs as a `Lifecycle`, so a rule about calls is written once, here.

Chat (`chat` below), streams (`llmclient.chat.streaming`) and embedding jobs (`llmclient.embeddings.job`) each run
one; structured output and the tool loop are chat calls, one per step.

```
async with Lifecycle(call, pipeline, deadline_s) as life:   admit   Pipeline.admit under the call's deadline;
                                                                    a refusal sends nothing
    reply = await life.send(attempt)                        send    the retry layer (or a model group's Route)
                                                                    under the deadline; every attempt counted
    await life.reply(reply)   # or life.finish(outcome)     settle  usage the provider left out is counted and
                                                                    flagged, then priced, budgets settled and
                                                                    one record written (Pipeline.finish)
# an error leaving the block: `failed`                      what arrived is recorded (estimated where the
                                                                    provider sent no usage); a call that may have
                                                                    been billed is recorded at an unknown cost;
                                                                    any other is released. Observers hear the end
                                                                    once, either way.
```
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, TypeVar

from llmclient.errors import APITimeoutError, ResponseFormatError, StreamError
from llmclient.lifecycle.call import Call, Outcome, ended_by
from llmclient.lifecycle.deadline import Deadline
from llmclient.lifecycle.steps import Pipeline
from llmclient.types import ChatResponse, Usage

T = TypeVar("T")


class Received(Protocol):
    """What a stream has received so far (its assembler): a stream that breaks is recorded from it."""

    received: bool
    request_id: str | None

    def generated(self) -> str:
        """Everything generated so far, to estimate the output tokens of a cut stream."""
        ...


class Lifecycle:
    """One logical call from admission to its single record; see the module docstring for the order.

    Args:
        call: The call (its driver, request, retry policy, own `timeout`).
        pipeline: The client's steps and observers.
        deadline_s: The client's deadline in seconds, used when the call has no `timeout` of its own.
    """

    __slots__ = ("billed", "call", "deadline", "pipeline", "stream")

    def __init__(self, call: Call, pipeline: Pipeline, deadline_s: float | None) -> None:
        self.call = call
        self.pipeline = pipeline
        self.deadline = Deadline(deadline_s if call.timeout is None else call.timeout)
        self.billed: Usage | None = None
        """The usage of requests answered so far (an embedding job's batches): recorded if a later one fails."""
        self.stream: Received | None = None
        """A stream's assembler: once anything arrived, a failure is recorded as an estimate of it."""

    async def __aenter__(self) -> Lifecycle:
        # Admission is part of the call's time: counting the prompt (a tokenizer may load, or hang) is bounded too.
        try:
            async with self.scope():
                await self.pipeline.admit(self.call)
        except BaseException:  # refused (the pipeline has released what it took) or out of time
            self.deadline.close()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if error is not None:
                await self.failed(error)
            elif not self.call.recorded:  # ended without an answer to record (every batch came from the cache)
                self.pipeline.release(self.call, None)
        finally:
            self.deadline.close()

    def scope(self) -> AbstractAsyncContextManager[None]:
        """An `async with` block bounded by the call's deadline (a stream reads each chunk in one)."""
        return self.deadline.scope(provider=self.call.provider, model=self.call.model)

    async def send(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Await `attempt()` under the call's retry policy (a model group's `Route` for a routed call) and its
        deadline; `call.attempts` counts every request, and one that may have been billed is noted."""
        call = self.call

        async def counted() -> T:
            call.attempts += 1
            try:
                return await attempt()
            except Exception as error:  # a retry or another deployment may follow: remember what this one may cost
                call.attempt_failed(error)
                raise

        async with self.scope():
            if call.route is not None:
                return await call.route.run(call, counted)
            return await call.policy.run(counted, call.retrying if call.observers is not None else None)

    async def reply(self, response: ChatResponse) -> ChatResponse:
        """Settle a chat or stream call that answered: the reply takes the parameters applied and dropped and the
        deployment, its usage is completed (`completed`), and it is priced, settled and recorded once."""
        call = self.call
        response.applied_params = call.applied
        response.dropped_params = call.dropped
        if call.deployment is not None:
            response.deployment = call.deployment
        usage = response.usage
        if not (usage.prompt_tokens and usage.output_tokens):  # only then can a figure be missing
            response.usage = usage = await self.completed(usage, call.prompt_tokens, lambda: generated(response))
        outcome = Outcome(
            usage,
            request_id=response.request_id,
            served_model=response.model,
            service_tier=response.service_tier,
            response=response,
        )
        self.finish(outcome)
        response.cost = outcome.cost
        return response

    def finish(self, outcome: Outcome) -> Outcome:
        """Price, settle and record the call's outcome, once; `outcome.cost` is then set."""
        self.pipeline.finish(self.call, outcome)
        return outcome

    async def completed(
        self, usage: Usage, prompt: Callable[[], Awaitable[int]], output: Callable[[], str] | None = None
    ) -> Usage:
        """`usage` with each figure the provider left out counted here and flagged `estimated`: a reply is never
        recorded as 0 tokens and $0. A prompt of 0 tokens is counted with `prompt()`; no output tokens for a reply
        that generated text (`output()`) are counted with the driver's tokenizer (else a tokenizer-free estimate)."""
        text = output() if output is not None and not usage.output_tokens else ""
        if usage.prompt_tokens and not text:
            return usage
        update: dict[str, object] = {"estimated": True}
        if not usage.prompt_tokens:
            update["input_tokens"] = await prompt()
        if text:
            update["output_tokens"] = await self.call.estimate_output(text)
        return usage.model_copy(update=update)

    async def failed(self, error: BaseException) -> None:
        """End a call that failed after admission: record what arrived or may have been billed, else release."""
        call, stream = self.call, self.stream
        if call.recorded:
            return
        if stream is not None and call.attempts and (stream.received or isinstance(error, StreamError)):
            # A stream that started was billed for what it generated: an estimate of it, once.
            output = await call.estimate_output(stream.generated())
            usage = Usage(input_tokens=await call.prompt_tokens(), output_tokens=output, estimated=True)
            outcome = Outcome(usage, request_id=stream.request_id, error=ended_by(error))
        elif self.billed is not None:  # requests answered before the failure (an embedding job's batches)
            outcome = Outcome(self.billed, error=ended_by(error))
        elif isinstance(error, ResponseFormatError) and error.status is not None and error.status < 300:
            # A 2xx we could not use was billed: its prompt, counted (an estimate).
            usage = Usage(input_tokens=await call.prompt_tokens(), estimated=True)
            outcome = Outcome(usage, request_id=error.request_id, error=ended_by(error))
        elif maybe_billed(call, error):  # the cost is unknown (None): `priced` keeps Pricing from guessing it
            usage = Usage(input_tokens=await call.prompt_tokens(), estimated=True)
            outcome = Outcome(usage, error=ended_by(error), priced=True)
        else:
            self.pipeline.release(call, error)
            return
        self.pipeline.finish(call, outcome, error)


def maybe_billed(call: Call, error: BaseException) -> bool:
    """Whether a failed call may have been billed though nothing usable came back: it, or any attempt before the
    last, timed out after a request was sent (a provider bills what it generated for a client that stopped
    waiting), also when a retry or another deployment failed after it (a 500, a 401)."""
    if call.billed_unknown:
        return True
    return isinstance(error, APITimeoutError) and error.request_sent is not False and call.attempts > 0


def generated(response: ChatResponse) -> str:
    """Everything a reply generated, every choice's: text, refusal and tool-call arguments (to count its output
    when the provider did not)."""
    messages = [choice.message for choice in response.choices] or [response.message]
    return "".join(
        message.text + (message.refusal or "") + "".join(call.raw_arguments for call in message.tool_calls or ())
        for message in messages
    )


async def chat(call: Call, pipeline: Pipeline, deadline_s: float | None) -> ChatResponse:
    """One chat call: admitted, sent with retries under one deadline, then priced, settled and recorded once."""

    def attempt() -> Awaitable[ChatResponse]:  # reads `call.request` each time: routing rebuilds it per deployment
        assert call.request is not None, "a chat call carries its request"
        return call.driver.chat(call.request)

    async with Lifecycle(call, pipeline, deadline_s) as life:
        return await life.reply(await life.send(attempt))
