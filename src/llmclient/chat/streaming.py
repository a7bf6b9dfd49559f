"""Streaming: `ChatStream` drives a streamed call through the pipeline and assembles its chunks into one reply.

A failure before the first chunk is retried like any call; after it, never: a timeout or cut becomes a
`StreamInterruptedError` that keeps the partial text. A stream that ends, fails or is closed after anything may
have been generated is recorded once, as an estimate when the provider sent no usage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from llmclient.errors import APITimeoutError, StreamError, StreamInterruptedError
from llmclient.lifecycle import Call, Outcome, Pipeline
from llmclient.lifecycle.budget_admission import check_stream, watches_stream
from llmclient.lifecycle.call import ended_by
from llmclient.lifecycle.send import admit, deadline_of, send
from llmclient.observability.observers import notify
from llmclient.types import ChatChunk, ChatRequest, ChatResponse, Choice, Message, TokenLogprob, ToolCall, Usage


class ChatStream:
    """An async iterator of `ChatChunk`s; after it ends, `response` holds the assembled `ChatResponse`.

    Use it in `async for`, or as `async with client.stream(...) as stream:` to close the connection early.
    Nothing is sent until it is iterated.
    """

    def __init__(self, call: Call, pipeline: Pipeline, deadline_s: float | None) -> None:
        self._call = call
        self._pipeline = pipeline
        self._deadline_s = deadline_s
        self._response: ChatResponse | None = None
        self._iterator: AsyncIterator[ChatChunk] | None = None

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream and close its connection."""
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]

    @property
    def response(self) -> ChatResponse:
        """The assembled reply; available once the stream has ended."""
        if self._response is None:
            raise RuntimeError("the stream has not finished; iterate it to the end first")
        return self._response

    async def final_response(self) -> ChatResponse:
        """Consume what is left of the stream and return the assembled reply."""
        async for _ in self:
            pass
        return self.response

    async def _run(self) -> AsyncIterator[ChatChunk]:
        call, pipeline = self._call, self._pipeline
        assert call.request is not None
        assembler = Assembler()
        iterator: AsyncIterator[ChatChunk] | None = None
        output_tokens = 0

        async def first_chunk() -> ChatChunk | None:
            nonlocal iterator
            assert call.request is not None  # read per attempt: routing rebuilds it for another deployment
            iterator = call.driver.stream(call.request).__aiter__()
            try:
                return await iterator.__anext__()
            except StopAsyncIteration:
                return None

        deadline = deadline_of(call, self._deadline_s)
        try:
            await admit(call, pipeline, deadline)
            watch = watches_stream(call)
            chunk = await send(call, deadline, first_chunk)
            heard = call.observers.on_chunk if call.observers is not None else ()
            while chunk is not None:
                assembler.add(chunk)
                if heard:
                    notify(heard, call, chunk)
                if watch and chunk.delta:
                    output_tokens += (await call.count_text(chunk.delta)).tokens
                    check_stream(call, output_tokens)
                yield chunk
                try:
                    async with deadline.scope(provider=call.provider, model=call.model):
                        chunk = await iterator.__anext__()  # type: ignore[union-attr]
                except StopAsyncIteration:
                    chunk = None
                except APITimeoutError as exc:  # after the first chunk a timeout is a cut stream: keep the text
                    raise StreamInterruptedError(
                        f"{call.provider} stream cut: {exc.message}",
                        partial_text=assembler.text(),
                        provider=call.provider,
                        model=call.model,
                        request_id=assembler.request_id,
                    ) from exc
        except BaseException as exc:
            if iterator is not None:
                await iterator.aclose()  # type: ignore[attr-defined]
            await self._failed(exc, assembler)
            raise
        finally:
            deadline.close()
        if iterator is not None:
            await iterator.aclose()  # type: ignore[attr-defined]
        self._response = self._finished(assembler)

    def _finished(self, assembler: Assembler) -> ChatResponse:
        """The assembled reply of a stream that ended, priced and recorded once."""
        call = self._call
        assert call.request is not None
        response = assembler.response(call.request, call.provider)
        response.applied_params = call.applied
        response.dropped_params = call.dropped
        if call.deployment is not None:
            response.deployment = call.deployment
        if response.finish_reason is None:  # a driver that ended without saying why: keep what arrived
            response.finish_reason = "stop"
        outcome = Outcome(
            response.usage,
            request_id=response.request_id,
            served_model=response.model,
            service_tier=response.service_tier,
            response=response,
        )
        self._pipeline.finish(call, outcome)
        response.cost = outcome.cost
        return response

    async def _failed(self, error: BaseException, assembler: Assembler) -> None:
        """A stream cut, cancelled or failed: once anything may have been generated, record an estimate once."""
        call = self._call
        if call.attempts == 0 or (not assembler.received and not isinstance(error, StreamError)):
            # Nothing arrived: released, or recorded with an unknown cost when it timed out after the request left.
            await self._pipeline.fail(call, error)
            return
        output = await call.estimate_output(assembler.generated())
        usage = Usage(input_tokens=await call.prompt_tokens(), output_tokens=output, estimated=True)
        outcome = Outcome(usage, request_id=assembler.request_id, error=ended_by(error))
        self._pipeline.finish(call, outcome, error)


class _Reply:
    """What has arrived of one reply (one choice)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.logprobs: list[TokenLogprob] | None = None
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: Any = None

    def add(self, chunk: ChatChunk) -> None:
        if chunk.delta:
            self.text.append(chunk.delta)
        if chunk.reasoning_delta:
            self.reasoning.append(chunk.reasoning_delta)
        if chunk.refusal_delta:
            self.refusal.append(chunk.refusal_delta)
        if chunk.logprobs:
            self.logprobs = (self.logprobs or []) + chunk.logprobs
        for delta in chunk.tool_call_deltas:
            call = self.calls.setdefault(delta.index, {"id": "", "name": "", "arguments": []})
            if delta.id:
                call["id"] = delta.id
            if delta.name:
                call["name"] += delta.name
            call["arguments"].append(delta.arguments)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason

    def message(self) -> Message:
        calls = [
            ToolCall.model_validate({"id": c["id"], "name": c["name"], "arguments": "".join(c["arguments"])})
            for _, c in sorted(self.calls.items())
        ]
        refusal = "".join(self.refusal) or None
        return Message(
            role="assistant",
            content="".join(self.text) if self.text or not (calls or refusal) else None,
            tool_calls=calls or None,
            reasoning="".join(self.reasoning) or None,
            refusal=refusal,
        )

    def generated(self) -> str:
        return (
            "".join(self.text) + "".join(self.refusal) + "".join("".join(c["arguments"]) for c in self.calls.values())
        )


class Assembler:
    """Joins streamed chunks into one reply (one per choice, with `n > 1`)."""

    def __init__(self) -> None:
        self.replies: dict[int, _Reply] = {}
        self.usage: Usage | None = None
        self.model: str | None = None
        self.request_id: str | None = None
        self.service_tier: str | None = None
        self.received = False

    def add(self, chunk: ChatChunk) -> None:
        """Take in one chunk."""
        self.received = True
        reply = self.replies.get(chunk.choice)
        if reply is None:
            reply = self.replies[chunk.choice] = _Reply()
        reply.add(chunk)
        if chunk.usage is not None:
            self.usage = chunk.usage
        self.model = chunk.model or self.model
        self.request_id = chunk.request_id or self.request_id
        self.service_tier = chunk.service_tier or self.service_tier

    def text(self) -> str:
        """The first reply's text so far."""
        first = self.replies.get(0)
        return "".join(first.text) if first else ""

    def generated(self) -> str:
        """Everything generated so far, every reply's (to estimate the output of a cut stream)."""
        return "".join(reply.generated() for reply in self.replies.values())

    def response(self, request: ChatRequest, provider: str) -> ChatResponse:
        """The assembled reply (usage flagged as estimated when the stream carried none)."""
        replies = [(index, self.replies[index]) for index in sorted(self.replies)] or [(0, _Reply())]
        choices = [
            Choice(index=index, message=reply.message(), finish_reason=reply.finish_reason, logprobs=reply.logprobs)
            for index, reply in replies
        ]
        first = choices[0]
        return ChatResponse(
            message=first.message,
            finish_reason=first.finish_reason,
            logprobs=first.logprobs,
            choices=choices if len(choices) > 1 else [],
            usage=self.usage or Usage(estimated=True),
            model=self.model or request.model,
            provider=provider,
            request_id=self.request_id,
            service_tier=self.service_tier,
        )
