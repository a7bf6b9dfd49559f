"""Streaming: `ChatStream` drives a streamed call through the pipeline and assembles its chunks into one reply
(`llmclient.drivers.streams.StreamAssembler`, the driver toolkit's assembler).

A failure before the first chunk is retried like any call; after it, never: a timeout or cut becomes a
`StreamInterruptedError` that keeps the partial text. A stream that ends, fails or is closed after anything may
have been generated is recorded once, as an estimate when the provider sent no usage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from llmclient.drivers.streams import StreamAssembler
from llmclient.errors import APITimeoutError, StreamError, StreamInterruptedError
from llmclient.lifecycle import Call, Outcome, Pipeline
from llmclient.lifecycle.budget_admission import check_stream, watches_stream
from llmclient.lifecycle.call import ended_by
from llmclient.lifecycle.send import admit, deadline_of, send
from llmclient.observability.observers import notify
from llmclient.types import ChatChunk, ChatResponse, Usage


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
        assembler = StreamAssembler()
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

    def _finished(self, assembler: StreamAssembler) -> ChatResponse:
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

    async def _failed(self, error: BaseException, assembler: StreamAssembler) -> None:
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
