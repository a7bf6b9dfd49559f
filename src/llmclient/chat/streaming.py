"""Streaming: `ChatStream` runs a streamed call as one `Lifecycle` and assembles its chunks into one reply.

The first chunk is the lifecycle's attempt: a failure before it is retried like any call. After it, never: each
chunk is read under the call's deadline, and a timeout or cut becomes a `StreamInterruptedError` that keeps the
partial text. The assembler is the lifecycle's `stream`, so a stream that fails or is closed after anything may
have been generated is recorded once, as an estimate; one that ends without usage is counted and flagged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

from llmclient.errors import APITimeoutError, StreamInterruptedError
from llmclient.lifecycle import Call, Pipeline
from llmclient.lifecycle.budget_admission import check_stream, watches_stream
from llmclient.lifecycle.flow import Lifecycle
from llmclient.observability.observers import notify
from llmclient.types import ChatChunk, ChatRequest, ChatResponse, Choice, Message, TokenLogprob, ToolCall, Usage


class ChatStream(AbstractAsyncContextManager["ChatStream"]):
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
        call, assembler, chunks = self._call, Assembler(), _Chunks(self._call)
        async with Lifecycle(call, self._pipeline, self._deadline_s) as life:
            life.stream = assembler
            try:
                watch = watches_stream(call)
                chunk = await life.send(chunks.first)
                heard = call.observers.on_chunk if call.observers is not None else ()
                deadline, output_tokens = life.deadline, 0
                while chunk is not None:
                    assembler.add(chunk)
                    if heard:
                        notify(heard, call, chunk)
                    if watch and chunk.delta:
                        output_tokens += (await call.count_text(chunk.delta)).tokens
                        check_stream(call, output_tokens)
                    yield chunk
                    try:  # inline, not a method: it runs for every chunk
                        async with deadline.scope(provider=call.provider, model=call.model):
                            chunk = await chunks.iterator.__anext__()
                    except StopAsyncIteration:
                        chunk = None
                    except APITimeoutError as exc:  # after the first chunk a timeout is a cut: keep the text
                        raise chunks.cut(exc, assembler) from exc
            finally:  # the connection first: then the call is settled
                await chunks.aclose()
            assert call.request is not None
            response = assembler.response(call.request, call.provider)
            if response.finish_reason is None:  # a driver that ended without saying why: keep what arrived
                response.finish_reason = "stop"
            self._response = await life.reply(response)


class _Chunks:
    """The driver's chunk iterator for one stream: the first chunk is an attempt the lifecycle may retry, the rest
    are read under the call's deadline, never retried."""

    def __init__(self, call: Call) -> None:
        self._call = call
        self._iterator: AsyncIterator[ChatChunk] | None = None

    @property
    def iterator(self) -> AsyncIterator[ChatChunk]:
        """The driver's stream, once opened (`first`)."""
        assert self._iterator is not None, "the stream is opened by its first chunk"
        return self._iterator

    async def first(self) -> ChatChunk | None:
        """Open the stream (again, on a retry) and read its first chunk; None for a stream with none."""
        call = self._call
        assert call.request is not None  # read per attempt: routing rebuilds it for another deployment
        self._iterator = call.driver.stream(call.request).__aiter__()
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            return None

    def cut(self, error: APITimeoutError, assembler: Assembler) -> StreamInterruptedError:
        """The error of a stream cut by a timeout after its first chunk: it keeps the text that arrived."""
        call = self._call
        return StreamInterruptedError(
            f"{call.provider} stream cut: {error.message}",
            partial_text=assembler.text(),
            provider=call.provider,
            model=call.model,
            request_id=assembler.request_id,
        )

    async def aclose(self) -> None:
        """Close the driver's stream (and its connection), however the stream ended."""
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]


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
