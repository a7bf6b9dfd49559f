"""Faults on the wire, through the public `Client`, for the OpenAI-format drivers (OpenAI, DeepSeek).

Every case ends in a recovered result or one exact llmclient error (never a raw httpx, json or KeyError), and
counts the requests sent. The server is an `httpx.MockTransport` whose response bodies are `Body` streams that
record `aclose()`; the `serve` fixture fails a test that leaves any body open.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmclient import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ChatStream,
    Client,
    InsufficientBalanceError,
    LLMClientError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    RetryPolicy,
    ServerError,
    StreamDecodeError,
    StreamInterruptedError,
    UnknownModelError,
    Usage,
)

FIXTURES = Path(__file__).parent / "fixtures"
# gpt-3.5-turbo is priced and counts with cl100k_base, which ships offline; a model on o200k_base would try to
# download its encoding when usage is estimated locally (a cut stream): a warning, so an error here.
MODEL = "openai/gpt-3.5-turbo"
STREAM_TEXT = "Hello, 世界 👋🏽!"
STREAM_USAGE = Usage(input_tokens=9, output_tokens=7)
CHAT_TEXT = "Hello! How can I assist you today?"


def fixture_bytes(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


SSE = fixture_bytes("openai", "stream.sse")
# The recorded events: role, "Hello", ", 世界", " 👋🏽!", finish_reason, usage, [DONE].
EVENTS = tuple(event + b"\n\n" for event in SSE.split(b"\n\n") if event.strip())
assert len(EVENTS) == 7
assert EVENTS[-1] == b"data: [DONE]\n\n"


# -- the fake server -------------------------------------------------------------------------------------------


class Body(httpx.AsyncByteStream):
    """A response body sent in pieces, then failing or dripping forever if told to; records `aclose()`."""

    def __init__(
        self,
        pieces: Sequence[bytes] = (),
        *,
        fail: Exception | None = None,
        drip: bytes | None = None,
        every: float = 0.05,
    ) -> None:
        self.pieces = list(pieces)
        self.fail = fail
        self.drip = drip
        self.every = every
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail is not None:
            raise self.fail
        while self.drip is not None:
            await asyncio.sleep(self.every)
            yield self.drip

    async def aclose(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status with a body, or a transport error raised instead of answering."""

    status: int = 200
    pieces: tuple[bytes, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    raises: type[httpx.TransportError] | None = None  # raised before any answer (reset, refused, timeout)
    fail: type[httpx.TransportError] | None = None  # raised by the body after its pieces (a cut connection)
    drip: bytes | None = None  # sent every 0.05 s after the pieces, forever


def json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, (json.dumps(payload).encode(),), {"content-type": "application/json", **(headers or {})})


def raw_reply(status: int, content: bytes, content_type: str = "text/html") -> Reply:
    return Reply(status, (content,), {"content-type": content_type})


def sse_reply(*pieces: bytes, fail: type[httpx.TransportError] | None = None) -> Reply:
    return Reply(200, pieces, {"content-type": "text/event-stream"}, fail=fail)


OK = json_reply(200, json.loads(fixture_bytes("openai", "chat_completion.json")))
STREAM_OK = sse_reply(SSE)


class Server:
    """Answers requests from a script; the last reply repeats. Keeps every request and every body it sent."""

    def __init__(self, replies: Sequence[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []
        self.bodies: list[Body] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if reply.raises is not None:
            raise reply.raises(f"{reply.raises.__name__} from the test server", request=request)
        fail = None if reply.fail is None else reply.fail("peer closed connection mid-body", request=request)
        body = Body(reply.pieces, fail=fail, drip=reply.drip)
        self.bodies.append(body)
        return httpx.Response(reply.status, headers=reply.headers, stream=body)

    @property
    def count(self) -> int:
        return len(self.requests)

    def unclosed(self) -> list[int]:
        return [index for index, body in enumerate(self.bodies) if not body.closed]


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Makes servers; after the test, every response body any of them sent must have been closed."""
    servers: list[Server] = []

    def make(*replies: Reply) -> Server:
        server = Server(replies)
        servers.append(server)
        return server

    yield make
    for server in servers:
        assert server.unclosed() == [], f"response bodies left open: {server.unclosed()} of {len(server.bodies)}"


def make_client(
    server: Server,
    *,
    max_retries: int = 3,
    timeout: float = 600.0,
    provider: str = "openai",
    max_retry_after: float = 60.0,
) -> Client:
    policy = RetryPolicy(
        max_retries=max_retries, initial_backoff=0, max_backoff=0, jitter=False, max_retry_after=max_retry_after
    )
    return Client(
        transport=httpx.MockTransport(server),
        providers={provider: {"api_key": "sk-test"}},
        retry=policy,
        timeout=timeout,
    )


async def chat_error(client: Client, model: str = MODEL, **kwargs: Any) -> LLMClientError:
    with pytest.raises(LLMClientError) as caught:
        await client.chat("Hi", model=model, **kwargs)
    return caught.value


async def read_stream(client: Client, **kwargs: Any) -> tuple[str, ChatStream]:
    stream = client.stream("Hi", model=MODEL, **kwargs)
    text = "".join([chunk.delta async for chunk in stream])
    return text, stream


async def stream_error(client: Client) -> tuple[LLMClientError, str]:
    """The error a stream ends in, and the text its chunks delivered before it."""
    received: list[str] = []
    with pytest.raises(LLMClientError) as caught:
        await drain(client.stream("Hi", model=MODEL), received)
    return caught.value, "".join(received)


async def drain(stream: ChatStream, received: list[str]) -> None:
    async for chunk in stream:
        received.append(chunk.delta)


def assert_same_request_resent(server: Server) -> None:
    assert {(r.method, r.url.path) for r in server.requests} == {("POST", "/v1/chat/completions")}
    assert len({r.content for r in server.requests}) == 1


# -- retries: 429 and Retry-After ------------------------------------------------------------------------------


def http_date_in(seconds: float) -> str:
    return email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "min_wait"),
    [
        pytest.param(lambda: {"retry-after": "0"}, 0.0, id="retry-after-seconds"),
        pytest.param(lambda: {"retry-after-ms": "5"}, 0.004, id="retry-after-ms"),
        # An HTTP date has whole seconds: 1.5 s ahead waits between 0.5 and 1.5 s.
        pytest.param(lambda: {"retry-after": http_date_in(1.5)}, 0.4, id="retry-after-http-date"),
    ],
)
async def test_429_waits_as_told_then_recovers(
    serve: Callable[..., Server], headers: Callable[[], dict[str, str]], min_wait: float
) -> None:
    rate_limited = json_reply(429, json.loads(fixture_bytes("openai", "error_429_rate_limit.json")), headers())
    server = serve(rate_limited, OK)
    async with make_client(server) as client:
        started = time.monotonic()
        reply = await client.chat("Hi", model=MODEL)
        elapsed = time.monotonic() - started
    assert reply.text == CHAT_TEXT
    assert server.count == 2
    assert_same_request_resent(server)
    assert min_wait <= elapsed < 3.0


async def test_429_without_retry_after_is_retried_with_backoff(serve: Callable[..., Server]) -> None:
    server = serve(json_reply(429, json.loads(fixture_bytes("openai", "error_429_rate_limit.json"))), OK)
    async with make_client(server) as client:
        assert (await client.chat("Hi", model=MODEL)).text == CHAT_TEXT
    assert server.count == 2


@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        (429, {"retry-after": "120"}, RateLimitError),
        (429, {"retry-after-ms": "120000"}, RateLimitError),
        (503, {"retry-after": "120"}, ServerError),
    ],
)
async def test_retry_after_above_the_cap_is_not_waited_for(
    serve: Callable[..., Server], status: int, headers: dict[str, str], kind: type[APIError]
) -> None:
    server = serve(json_reply(status, {"error": {"message": "slow down"}}, {"x-request-id": "req_cap", **headers}))
    async with make_client(server, max_retry_after=5.0) as client:
        started = time.monotonic()
        error = await chat_error(client)
    assert type(error) is kind
    assert server.count == 1
    assert error.retry_after == 120.0  # type: ignore[attr-defined]
    assert error.status == status
    assert error.request_id == "req_cap"
    assert time.monotonic() - started < 2.0


# -- retries: 5xx ----------------------------------------------------------------------------------------------


async def test_500_502_503_then_success_recovers(serve: Callable[..., Server]) -> None:
    server = serve(
        json_reply(500, {"error": {"message": "internal", "type": "server_error"}}),
        raw_reply(502, fixture_bytes("openai", "error_502.html")),
        json_reply(503, {"error": {"message": "overloaded"}}),
        OK,
    )
    async with make_client(server, max_retries=3) as client:
        reply = await client.chat("Hi", model=MODEL)
    assert reply.text == CHAT_TEXT
    assert reply.usage == Usage(input_tokens=19, output_tokens=10)
    assert server.count == 4
    assert_same_request_resent(server)


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_always_503_gives_server_error_after_every_retry(serve: Callable[..., Server], max_retries: int) -> None:
    server = serve(json_reply(503, {"error": {"message": "overloaded"}}, {"x-request-id": "req_503"}))
    async with make_client(server, max_retries=max_retries) as client:
        error = await chat_error(client)
    assert type(error) is ServerError
    assert (error.status, error.request_id, error.provider, error.model) == (503, "req_503", "openai", "gpt-3.5-turbo")
    assert server.count == max_retries + 1


@pytest.mark.parametrize("per_call", [0, 1, 4])
async def test_per_call_max_retries_overrides_the_client(serve: Callable[..., Server], per_call: int) -> None:
    server = serve(json_reply(503, {"error": {"message": "overloaded"}}))
    async with make_client(server, max_retries=2) as client:
        error = await chat_error(client, max_retries=per_call)
        assert type(error) is ServerError
        assert server.count == per_call + 1
        error = await chat_error(client)  # the client's own count is untouched
    assert type(error) is ServerError
    assert server.count == per_call + 1 + 3


# -- never retried ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "payload", "kind"),
    [
        (400, {"error": {"message": "bad 'messages'", "type": "invalid_request_error"}}, BadRequestError),
        (401, json.loads(fixture_bytes("openai", "error_401.json")), AuthenticationError),
        (403, {"error": {"message": "Country not supported", "type": "permission_error"}}, PermissionDeniedError),
        (404, {"error": {"message": "Unknown url /v1/chat/completions"}}, NotFoundError),
        (404, json.loads(fixture_bytes("openai", "error_404_model.json")), UnknownModelError),
        (422, {"detail": "unprocessable"}, BadRequestError),
        (429, json.loads(fixture_bytes("openai", "error_429_quota.json")), QuotaExceededError),
    ],
)
async def test_client_errors_are_never_retried(
    serve: Callable[..., Server], status: int, payload: Any, kind: type[APIError]
) -> None:
    server = serve(json_reply(status, payload, {"x-request-id": f"req_{status}"}), OK)
    async with make_client(server, max_retries=3) as client:
        error = await chat_error(client)
    assert type(error) is kind
    assert server.count == 1
    assert (error.status, error.request_id, error.provider) == (status, f"req_{status}", "openai")
    assert error.retryable is False


async def test_deepseek_402_is_insufficient_balance_and_not_retried(serve: Callable[..., Server]) -> None:
    payload = json.loads(fixture_bytes("deepseek", "error_402.json"))
    server = serve(json_reply(402, payload, {"x-request-id": "req_ds402"}), OK)
    async with make_client(server, provider="deepseek") as client:
        error = await chat_error(client, model="deepseek/deepseek-flash")
    assert type(error) is InsufficientBalanceError
    assert isinstance(error, QuotaExceededError)
    assert server.count == 1
    assert server.requests[0].url == "https://api.deepseek.com/chat/completions"
    assert (error.status, error.request_id) == (402, "req_ds402")
    assert (error.provider, error.model) == ("deepseek", "deepseek-flash")
    assert "Insufficient Balance" in error.message


# -- connection failures and timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (httpx.ReadError, APIConnectionError),
        (httpx.RemoteProtocolError, APIConnectionError),
        (httpx.ConnectError, APIConnectionError),
        (httpx.ReadTimeout, APITimeoutError),
        (httpx.ConnectTimeout, APITimeoutError),
    ],
)
async def test_transport_errors_are_retried_then_raised_typed(
    serve: Callable[..., Server], raised: type[httpx.TransportError], kind: type[LLMClientError]
) -> None:
    server = serve(Reply(raises=raised))
    async with make_client(server, max_retries=2) as client:
        error = await chat_error(client)
    assert type(error) is kind
    assert isinstance(error.__cause__, raised)
    assert server.count == 3
    assert_same_request_resent(server)


async def test_connection_reset_then_success_recovers(serve: Callable[..., Server]) -> None:
    server = serve(Reply(raises=httpx.ReadError), Reply(raises=httpx.ConnectError), OK)
    async with make_client(server, max_retries=2) as client:
        assert (await client.chat("Hi", model=MODEL)).text == CHAT_TEXT
    assert server.count == 3


async def test_body_cut_while_reading_a_chat_reply_is_a_connection_error(serve: Callable[..., Server]) -> None:
    server = serve(Reply(200, (b'{"id": "chatcmpl-1", "choi',), fail=httpx.RemoteProtocolError))
    async with make_client(server, max_retries=1) as client:
        error = await chat_error(client)
    assert type(error) is APIConnectionError
    assert server.count == 2


# -- a server that keeps the connection alive by dripping bytes ---------------------------------------------------

DRIP = Reply(200, (), {"content-type": "text/event-stream"}, drip=b": keep-alive\n\n")


async def test_keep_alive_drip_on_chat_hits_the_deadline(serve: Callable[..., Server]) -> None:
    server = serve(DRIP)
    async with make_client(server, timeout=0.5) as client:
        started = time.monotonic()
        error = await chat_error(client)
        elapsed = time.monotonic() - started
    assert type(error) is APITimeoutError
    assert "0.5" in error.message
    assert elapsed < 5.0
    assert server.count == 1
    assert server.bodies[0].closed


async def test_keep_alive_drip_on_stream_hits_the_deadline(serve: Callable[..., Server]) -> None:
    server = serve(DRIP)
    async with make_client(server, timeout=0.5) as client:
        started = time.monotonic()
        error, received = await stream_error(client)
        elapsed = time.monotonic() - started
    assert type(error) is APITimeoutError
    assert received == ""
    assert elapsed < 5.0
    assert server.count == 1
    assert server.bodies[0].closed
    # The request left, so the provider may bill what it generated: one record, cost unknown (docs/costs.md).
    [record] = client.ledger.records
    assert (record.cost, record.attempts, record.error) == (None, 1, "APITimeoutError")


async def test_drip_after_the_first_chunk_keeps_the_partial_text(serve: Callable[..., Server]) -> None:
    # After the first chunk a failure is a StreamError that keeps the partial text (Client.stream's contract),
    # whether the driver saw a read timeout or the call's deadline fired.
    server = serve(Reply(200, EVENTS[:2], {"content-type": "text/event-stream"}, drip=b": keep-alive\n\n"))
    async with make_client(server, timeout=0.5) as client:
        started = time.monotonic()
        error, received = await stream_error(client)
        elapsed = time.monotonic() - started
    assert received == "Hello"
    assert elapsed < 5.0
    assert server.bodies[0].closed
    assert type(error) is StreamInterruptedError
    assert error.partial_text == "Hello"
    assert isinstance(error.__cause__, APITimeoutError)


# -- error bodies that are not JSON, or huge ---------------------------------------------------------------------


async def test_html_502_page_becomes_a_short_plain_message(serve: Callable[..., Server]) -> None:
    server = serve(raw_reply(502, fixture_bytes("openai", "error_502.html")))
    async with make_client(server, max_retries=1) as client:
        error = await chat_error(client)
    assert type(error) is ServerError
    assert server.count == 2
    assert "<" not in error.message
    assert ">" not in error.message
    assert "<" not in str(error)
    assert len(error.message) <= 500
    assert "502 Bad Gateway" in error.message
    assert error.body is None  # type: ignore[attr-defined]


HUGE = 100_000


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(
            b"<!DOCTYPE html><html><head><style>"
            + b"p{margin:0}" * 2000
            + b"</style></head><body>"
            + b"<p>The service is temporarily unavailable.</p>" * 2000
            + b"</body></html>",
            "text/html",
            id="html",
        ),
        pytest.param(b"upstream connect error or disconnect/reset before headers. " * 1700, "text/plain", id="text"),
        pytest.param(json.dumps({"error": {"message": "x" * HUGE}}).encode(), "application/json", id="json-message"),
        pytest.param(
            json.dumps({"error": {"message": "m", "trace": ["y" * 50] * 2000}}).encode(),
            "application/json",
            id="json-body",
        ),
    ],
)
async def test_huge_error_bodies_give_bounded_messages(
    serve: Callable[..., Server], content: bytes, content_type: str
) -> None:
    assert len(content) >= HUGE
    server = serve(raw_reply(503, content, content_type))
    async with make_client(server, max_retries=0) as client:
        started = time.monotonic()
        error = await chat_error(client)
        elapsed = time.monotonic() - started
    assert type(error) is ServerError
    assert server.count == 1
    assert len(error.message) <= 500
    assert len(str(error)) <= 600
    assert "<" not in error.message
    body = error.body  # type: ignore[attr-defined]
    assert body is None or len(json.dumps(body)) <= 2000
    assert elapsed < 1.0


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"<html><body>" + b"<script>x" * 12_000, id="unclosed-scripts"),
        pytest.param(b"<html><body></p>" + b"<a" * 50_000, id="unclosed-tags"),
    ],
)
async def test_broken_html_error_page_is_mapped_quickly(serve: Callable[..., Server], content: bytes) -> None:
    # A page cut off by a proxy, full of unclosed tags: mapping it must not stall the event loop for seconds.
    assert len(content) >= HUGE
    server = serve(raw_reply(502, content))
    async with make_client(server, max_retries=0) as client:
        started = time.monotonic()
        error = await chat_error(client)
        elapsed = time.monotonic() - started
    assert type(error) is ServerError
    assert len(error.message) <= 500
    assert "<" not in error.message
    assert elapsed < 1.0


# -- 2xx bodies that are not a chat completion -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"   \n", id="blank"),
        pytest.param(fixture_bytes("openai", "chat_completion.json")[:120], id="truncated"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"<html><body>OK</body></html>", id="html"),
        pytest.param(b'{"choices": []}', id="no-choices"),
        pytest.param(b'{"foo": 1}', id="wrong-object"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"text"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"choices": "abc"}', id="choices-string"),
        pytest.param(b'{"choices": [null]}', id="choice-null"),
        pytest.param(b'{"choices": [{"message": null}]}', id="message-null"),
        pytest.param(b'{"choices": [{"message": "hi"}]}', id="message-string"),
        pytest.param(b'{"choices": [{"message": {"content": 5}}]}', id="content-number"),
        pytest.param(b'{"choices": [{"message": {"content": "hi"}}], "usage": "lots"}', id="usage-string"),
    ],
)
async def test_unusable_2xx_body_is_a_response_format_error(serve: Callable[..., Server], content: bytes) -> None:
    server = serve(Reply(200, (content,), {"content-type": "application/json", "x-request-id": "req_fmt"}), OK)
    async with make_client(server, max_retries=3) as client:
        error = await chat_error(client)
    assert type(error) is ResponseFormatError
    assert server.count == 1
    assert error.request_id == "req_fmt"
    assert len(error.message) <= 500


# -- SSE framing ---------------------------------------------------------------------------------------------------


def split_points(data: bytes) -> list[int]:
    return list(range(1, len(data)))


async def assert_stream_reads_whole(client: Client, server: Server, pieces: Sequence[bytes]) -> None:
    server.replies = [sse_reply(*pieces)]
    text, stream = await read_stream(client)
    assert text == STREAM_TEXT, pieces
    assert stream.response.text == STREAM_TEXT
    assert stream.response.usage == STREAM_USAGE
    assert stream.response.finish_reason == "stop"


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"], ids=["lf", "crlf"])
async def test_sse_split_at_every_byte_boundary(serve: Callable[..., Server], line_end: bytes) -> None:
    data = SSE.replace(b"\n", line_end)
    multibyte = [i for i in range(1, len(data)) if data[i] & 0xC0 == 0x80]  # inside a UTF-8 character
    assert len(multibyte) == 10  # 世, 界: 2 each; 👋, 🏽: 3 each
    server = serve()
    started = time.monotonic()
    async with make_client(server, max_retries=0) as client:
        for cut in split_points(data):
            await assert_stream_reads_whole(client, server, [data[:cut], data[cut:]])
    assert server.count == len(data) - 1
    assert time.monotonic() - started < 20.0


async def test_sse_byte_by_byte(serve: Callable[..., Server]) -> None:
    server = serve()
    async with make_client(server, max_retries=0) as client:
        await assert_stream_reads_whole(client, server, [SSE[i : i + 1] for i in range(len(SSE))])
        await assert_stream_reads_whole(client, server, list(EVENTS))
    assert server.count == 2


async def test_deepseek_keep_alive_comments_are_skipped(serve: Callable[..., Server]) -> None:
    data = fixture_bytes("deepseek", "stream_keepalive.sse")
    server = serve(sse_reply(*[data[i : i + 7] for i in range(0, len(data), 7)]))
    async with make_client(server, provider="deepseek") as client:
        stream = client.stream("Hi", model="deepseek/deepseek-flash")
        response = await stream.final_response()
    assert response.text
    assert response.finish_reason is not None
    assert server.count == 1


# -- streams that end badly ------------------------------------------------------------------------------------


async def test_stream_without_done_but_with_finish_reason_recovers(serve: Callable[..., Server]) -> None:
    server = serve(sse_reply(*EVENTS[:6]))
    async with make_client(server) as client:
        text, stream = await read_stream(client)
    assert text == STREAM_TEXT
    assert stream.response.usage == STREAM_USAGE
    assert stream.response.finish_reason == "stop"
    assert server.count == 1


async def test_stream_ending_without_finish_reason_is_interrupted(serve: Callable[..., Server]) -> None:
    server = serve(sse_reply(*EVENTS[:4]))
    async with make_client(server) as client:
        error, received = await stream_error(client)
    assert type(error) is StreamInterruptedError
    assert error.partial_text == received == STREAM_TEXT
    assert server.count == 1


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(b"data: {not json\n\n", id="not-json"),
        pytest.param(b"data: [1, 2]\n\n", id="array"),
        pytest.param(b'data: {"choices": [{"delta": "x"}]}\n\n', id="delta-string"),
        pytest.param(b'data: {"choices": ["x"]}\n\n', id="choice-string"),
        pytest.param(b'data: {"choices": [{"delta": {"tool_calls": [{"index": "a"}]}}]}\n\n', id="bad-tool-index"),
        pytest.param(b'data: {"choices": [], "usage": "lots"}\n\n', id="usage-string"),
    ],
)
async def test_garbled_event_mid_stream_is_a_decode_error(serve: Callable[..., Server], event: bytes) -> None:
    server = serve(sse_reply(*EVENTS[:2], event, *EVENTS[2:]))
    async with make_client(server) as client:
        error, received = await stream_error(client)
    assert type(error) is StreamDecodeError
    assert error.partial_text == received == "Hello"
    assert server.count == 1


async def test_error_event_mid_stream_is_interrupted_with_its_message(serve: Callable[..., Server]) -> None:
    server = serve(sse_reply(*EVENTS[:2], b'data: {"error": {"message": "overloaded"}}\n\n', *EVENTS[2:]))
    async with make_client(server) as client:
        error, received = await stream_error(client)
    assert type(error) is StreamInterruptedError
    assert "overloaded" in error.message
    assert error.partial_text == received == "Hello"
    assert server.count == 1


async def test_connection_dropped_mid_stream_is_interrupted_and_not_retried(serve: Callable[..., Server]) -> None:
    server = serve(sse_reply(*EVENTS[:2], fail=httpx.RemoteProtocolError), STREAM_OK)
    async with make_client(server, max_retries=3) as client:
        error, received = await stream_error(client)
    assert type(error) is StreamInterruptedError
    assert isinstance(error.__cause__, APIConnectionError)
    assert error.partial_text == received == "Hello"
    assert server.count == 1


@pytest.mark.parametrize(
    "failure",
    [
        json_reply(503, {"error": {"message": "overloaded"}}),
        json_reply(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "1"}),
        Reply(raises=httpx.ConnectError),
        sse_reply(EVENTS[0], fail=httpx.ReadError),  # cut before any text arrived
    ],
    ids=["503", "429", "connect", "cut-before-text"],
)
async def test_stream_failure_before_the_first_chunk_is_retried(serve: Callable[..., Server], failure: Reply) -> None:
    server = serve(failure, STREAM_OK)
    async with make_client(server, max_retries=2) as client:
        text, stream = await read_stream(client)
    assert text == STREAM_TEXT
    assert stream.response.usage == STREAM_USAGE
    assert server.count == 2
    assert_same_request_resent(server)


async def test_stream_always_503_raises_server_error(serve: Callable[..., Server]) -> None:
    server = serve(json_reply(503, {"error": {"message": "overloaded"}}))
    async with make_client(server, max_retries=2) as client:
        error, received = await stream_error(client)
    assert type(error) is ServerError
    assert received == ""
    assert server.count == 3
    assert len(client.ledger) == 0


async def test_closing_a_stream_early_closes_the_body(serve: Callable[..., Server]) -> None:
    server = serve(Reply(200, EVENTS[:2], {"content-type": "text/event-stream"}, drip=b": keep-alive\n\n"))
    async with make_client(server) as client, client.stream("Hi", model=MODEL) as stream:
        async for chunk in stream:
            assert chunk.delta == "Hello"
            break
    assert server.bodies[0].closed


# -- the ledger ------------------------------------------------------------------------------------------------


async def test_ledger_has_one_record_for_a_recovered_chat(serve: Callable[..., Server]) -> None:
    server = serve(json_reply(503, {"error": {"message": "overloaded"}}), Reply(raises=httpx.ReadError), OK)
    async with make_client(server) as client:
        await client.chat("Hi", model=MODEL, tags=["faults"])
    [record] = client.ledger.records
    assert record.kind == "chat"
    assert record.attempts == server.count == 3
    assert record.error is None
    assert record.usage == Usage(input_tokens=19, output_tokens=10)
    assert record.tags == ("faults",)


@pytest.mark.parametrize(
    "failure",
    [json_reply(503, {"error": {"message": "overloaded"}}), json_reply(401, {"error": {"message": "bad key"}})],
    ids=["503", "401"],
)
async def test_a_failed_chat_adds_no_record(serve: Callable[..., Server], failure: Reply) -> None:
    server = serve(failure)
    async with make_client(server, max_retries=1) as client:
        await chat_error(client)
    assert len(client.ledger) == 0


async def test_ledger_has_one_record_for_a_recovered_stream(serve: Callable[..., Server]) -> None:
    server = serve(json_reply(503, {"error": {"message": "overloaded"}}), STREAM_OK)
    async with make_client(server) as client:
        await read_stream(client)
    [record] = client.ledger.records
    assert (record.kind, record.attempts, record.error) == ("stream", 2, None)
    assert record.usage == STREAM_USAGE


async def test_ledger_has_one_estimated_record_for_a_cut_stream(serve: Callable[..., Server]) -> None:
    server = serve(sse_reply(*EVENTS[:3], fail=httpx.RemoteProtocolError))
    async with make_client(server) as client:
        error, received = await stream_error(client)
    assert type(error) is StreamInterruptedError
    assert received == "Hello, 世界"
    [record] = client.ledger.records
    assert record.kind == "stream"
    assert record.attempts == 1
    assert record.error == "StreamInterruptedError"
    assert record.usage.estimated is True
    assert record.usage.input_tokens > 0
    assert record.usage.output_tokens > 0
