"""Streaming: `ChatStream` runs a streamed call as one `Lifecycle` and assembles its chunks into one reply
(`llmclient.drivers.streams.StreamAssembler`, the driver toolkit's assembler).

The first chunk is the lifecycle's attempt: a failure before it is retried like any call. After it, never: each
chunk is read under the call's deadline, and a timeout or cut becomes a `StreamInterruptedError` that keeps the
partial text. The assembler is the lifecycle's `stream`, so a stream that fails or is closed after anything may
have been generated is recorded once, as an estimate; one that ends without usage is counted and flagged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from llmclient.drivers.streams import StreamAssembler
from llmclient.errors import APITimeoutError, StreamInterruptedError
from llmclient.lifecycle import Call, Pipeline
from llmclient.lifecycle.budget_admission import check_stream, watches_stream
from llmclient.lifecycle.flow import Lifecycle
from llmclient.observability.observers import notify
from llmclient.types import ChatChunk, ChatResponse


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
        call, assembler, chunks = self._call, StreamAssembler(), _Chunks(self._call)
        async with Lifecycle(call, self._pipeline, self._deadline_s) as life:
            life.stream = assembler
            try:
                watch = watches_stream(call)
                chunk = await life.send(chunks.first)
                heard = call.observers.on_chunk if call.observers is not None else ()
                # One scope for every chunk: it is entered again after each exit (cheaper than one per chunk).
                scope, output_tokens = life.deadline.scope(provider=call.provider, model=call.model), 0
                while chunk is not None:
                    assembler.add(chunk)
                    if heard:
                        notify(heard, call, chunk)
                    if watch and chunk.delta:
                        output_tokens += (await call.count_text(chunk.delta)).tokens
                        check_stream(call, output_tokens)
                    yield chunk
                    try:  # inline, not a method: it runs for every chunk
                        async with scope:
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

    def cut(self, error: APITimeoutError, assembler: StreamAssembler) -> StreamInterruptedError:
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
