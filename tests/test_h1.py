"""The native HTTP/1.1 backend (llmclient.http.backends.native) against servers that write exact bytes: framing,
keep-alive, the pool, streams left early, TLS, and answers no well-behaved server sends."""

from __future__ import annotations

import asyncio
import gc
import gzip
import itertools
import json
import socket
import ssl
import struct
import time
import tracemalloc
import warnings
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from llmclient import (
    APIConnectionError,
    APITimeoutError,
    Client,
    ConfigurationError,
    HTTPOptions,
    Limits,
    ResponseFormatError,
    Timeouts,
)

BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
).encode()
MODEL = "openai-compatible/m"


def answer(body: bytes = BODY, *, headers: str = "", status: str = "200 OK") -> list[bytes | float | None]:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{headers}\r\n"
    return [head.encode() + body]


def chunked(*pieces: bytes) -> list[bytes | float | None]:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    return [head, *(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces), b"0\r\n\r\n"]


@dataclass
class Wire:
    """A loopback server writing what `script(request_number)` returns: bytes, pauses (floats) and None to close."""

    script: Callable[[int], list[Any]]
    url: str = ""
    connections: int = 0
    closed_by_client: int = 0  # connections the client ended (the server read its end)
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.AbstractServer | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                size = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
                self.requests.append(head + await reader.readexactly(size))
                for piece in self.script(len(self.requests)):
                    if piece is None:
                        return
                    if piece == "reset":  # an RST instead of a FIN
                        sock = writer.transport.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    if isinstance(piece, float):
                        await asyncio.sleep(piece)
                    else:
                        writer.write(piece)
                        await writer.drain()
        except asyncio.IncompleteReadError as exc:
            self.closed_by_client += not exc.partial
        except ConnectionError:
            self.closed_by_client += 1
        finally:
            writer.close()


@pytest.fixture
async def wire() -> AsyncIterator[Callable[..., Any]]:
    started: list[Wire] = []

    async def start(script: Callable[[int], list[bytes | float | None]], tls: ssl.SSLContext | None = None) -> Wire:
        server = Wire(script)
        server.server = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
        port = server.server.sockets[0].getsockname()[1]
        server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1"
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.server is not None
        server.server.close()
        await server.server.wait_closed()


async def tls_server(wire: Any, folder: Path) -> tuple[Wire, Path]:
    """A TLS server whose certificate a throwaway authority signed, and that authority's bundle."""
    authority = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(served)
    bundle = folder / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    return await wire(lambda n: answer(), tls=served), bundle


def client(url: str, timeouts: Timeouts | None = None, **http: Any) -> Client:
    provider: dict[str, Any] = {"base_url": url, "http": {"backend": "native", "trust_env": False, **http}}
    if timeouts is not None:
        provider["timeouts"] = timeouts
    return Client(providers={"openai-compatible": provider}, prices={MODEL: 0}, retry=0)


async def test_length_chunked_and_close_delimited_bodies(wire: Any) -> None:
    half = len(BODY) // 2
    scripts = {
        "length": lambda n: answer(),
        "length, split across writes": lambda n: [answer()[0][:40], 0.01, answer()[0][40:]],  # type: ignore[index]
        "chunked": lambda n: chunked(BODY[:half], BODY[half:]),
        "until close": lambda n: [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n" + BODY, None],
        "after 103 Early Hints": lambda n: [b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n", *answer()],
    }
    for name, script in scripts.items():
        server = await wire(script)
        async with client(server.url) as llm:
            for _ in range(2):
                assert (await llm.chat("ping", model=MODEL)).text == "pong", name


async def test_keep_alive_reuses_a_connection_and_survives_the_server_closing_it(wire: Any) -> None:
    server = await wire(lambda n: answer() if n != 2 else [*answer(headers="connection: close\r\n"), None])
    async with client(server.url) as llm:
        for _ in range(4):
            assert (await llm.chat("ping", model=MODEL)).text == "pong"
    assert server.connections == 2  # the second answer said close: one new connection for the third and fourth
    request = server.requests[0].decode("latin-1").lower()
    assert "host: 127.0.0.1:" in request and "accept-encoding: identity" in request
    assert request.startswith("post /v1/chat/completions http/1.1\r\n")


@pytest.mark.parametrize(
    "script",
    [
        lambda n: [*answer(), 0.01, None],  # answers, then closes the idle connection
        # Two answers to one request (in one write, then while idle): the first is read, the connection dropped.
        lambda n: [answer()[0] + answer()[0]] if n == 1 else [*answer(), 0.02, *answer()],  # type: ignore[operator]
    ],
    ids=["closed while idle", "bytes nobody asked for"],
)
async def test_a_connection_in_doubt_is_not_reused(wire: Any, script: Any) -> None:
    server = await wire(script)
    async with client(server.url) as llm:
        for _ in range(3):
            assert (await llm.chat("ping", model=MODEL)).text == "pong"
            await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_stray_bytes_after_an_answer_are_never_read_as_the_next_one(wire: Any) -> None:
    server = await wire(lambda n: [answer()[0] + b"HTTP/1.1 200 OK\r\n"] if n == 1 else answer())  # type: ignore[operator]
    async with client(server.url) as llm:
        for _ in range(3):
            assert (await llm.chat("ping", model=MODEL)).text == "pong"
    assert server.connections == 2


async def test_closing_the_client_mid_call_fails_nothing_and_leaks_no_slot(wire: Any) -> None:
    server = await wire(lambda n: [0.2, *answer()])
    llm = client(server.url, max_connections=1)
    calls = [asyncio.ensure_future(llm.chat("ping", model=MODEL)) for _ in range(3)]
    await asyncio.sleep(0.05)  # one in flight, two waiting for the one connection
    await llm.aclose()
    assert [reply.text for reply in await asyncio.gather(*calls)] == ["pong"] * 3
    assert (await llm.chat("ping", model=MODEL)).text == "pong"  # a closed client opens new connections
    await llm.aclose()


async def test_a_slot_a_cancelled_waiter_cannot_take_goes_to_the_next(wire: Any) -> None:
    server = await wire(lambda n: answer())
    llm = client(server.url, max_connections=1)
    backend = llm.driver("openai-compatible")._http._fast  # type: ignore[attr-defined]
    loop = backend._bind()
    backend._open = 1  # the one connection is busy
    second, third = (asyncio.ensure_future(backend._wait_for_slot(loop)) for _ in range(2))
    await asyncio.sleep(0)
    backend._free_slot()  # the second is handed the slot, then cancelled before it runs
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await asyncio.wait_for(third, 1) is None  # the slot went on to the third
    assert backend._open == 1
    await llm.aclose()


async def test_a_caller_cancelled_while_waiting_leaves_the_line(wire: Any) -> None:
    server = await wire(lambda n: [0.1, *answer()])
    async with client(server.url, max_connections=1) as llm:
        backend = llm.driver("openai-compatible")._http._fast  # type: ignore[attr-defined]
        first = asyncio.ensure_future(llm.chat("first", model=MODEL))
        await asyncio.sleep(0.02)
        waiting = asyncio.ensure_future(llm.chat("waiting", model=MODEL))
        await asyncio.sleep(0.02)
        assert len(backend._waiters) == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not backend._waiters
        assert (await first).text == "pong"
        assert (await llm.chat("after", model=MODEL)).text == "pong"
    assert server.connections == 1


async def test_callers_waiting_for_a_connection_are_served_in_the_order_they_came(wire: Any) -> None:
    server = await wire(lambda n: [0.02, *answer()])
    async with client(server.url, max_connections=1) as llm:

        async def calls(name: str, count: int) -> None:
            for _ in range(count):
                await llm.chat(name, model=MODEL)

        first = asyncio.ensure_future(calls("first", 3))  # back to back: each call would find the connection idle
        await asyncio.sleep(0.005)
        await asyncio.gather(first, calls("second", 1), calls("third", 1))
    order = [next(n for n in ("first", "second", "third") if n.encode() in r) for r in server.requests]
    assert order == ["first", "second", "third", "first", "first"]


async def test_closing_leaves_no_socket_open_over_tls_either(wire: Any, tmp_path: Path) -> None:
    server, bundle = await tls_server(wire, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with client(server.url, verify=str(bundle)) as llm:
            assert (await llm.chat("ping", model=MODEL)).text == "pong"
        del llm
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_headers_that_would_inject_lines_or_hosts_idna_refuses(wire: Any) -> None:
    for headers in ({"x-team": "a\r\nx-injected: 1"}, {"x team": "a"}, {"x-team": "caf\u00e9 \u2615"}):
        with pytest.raises(ConfigurationError, match="header"):
            Client(providers={"openai-compatible": {"base_url": "http://127.0.0.1:9/v1", "headers": headers}}).driver(
                "openai-compatible"
            )
    async with client("http://" + "a" * 64 + ".example/v1") as llm:
        with pytest.raises(APIConnectionError, match="could not connect"):
            await llm.chat("ping", model=MODEL)


async def test_a_stream_read_to_its_done_marker_keeps_its_connection(wire: Any) -> None:
    events = [
        f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': 'x'}, 'finish_reason': 'stop'}]})}\n\n",
        "data: [DONE]\n\n",
    ]
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    framed = b"".join(f"{len(e):x}\r\n{e}\r\n".encode() for e in events)
    server = await wire(lambda n: [head + framed, 0.01, b"0\r\n\r\n"])  # the terminator a moment after [DONE]
    async with client(server.url) as llm:
        for _ in range(3):
            assert "".join([chunk.delta async for chunk in llm.stream("ping", model=MODEL)]) == "x"
    assert server.connections == 1


async def test_a_stream_left_early_closes_its_connection(wire: Any) -> None:
    events = [f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': 'x'}}]})}\n\n".encode()] * 3
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    framed = [f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events]
    server = await wire(lambda n: [head, framed[0], 0.2, *framed[1:], b"0\r\n\r\n"] if n == 1 else answer())
    async with client(server.url) as llm:
        async for chunk in llm.stream("ping", model=MODEL):
            assert chunk.delta == "x"
            break
        assert (await llm.chat("ping", model=MODEL)).text == "pong"
    assert server.connections == 2


@pytest.mark.parametrize(
    ("script", "match"),
    [
        (lambda n: [b'HTTP/1.1 200 OK\r\ncontent-length: 9999\r\n\r\n{"id"', None], "closed the connection"),
        (
            lambda n: [b'HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n5\r\n{"id"\r\n', None],
            "closed the connection",
        ),
        (
            lambda n: [b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"id"', 0.01, "reset"],
            "closed the connection",
        ),
        (lambda n: [b"HTTP/1.1 200 OK\r\n" + b"x-flood: 1\r\n" * 300 + b"\r\n"], "headers run past"),
        (
            lambda n: [b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n", None],
            "not valid HTTP",
        ),
        (lambda n: [b"NOT HTTP AT ALL\r\n\r\n", None], "not valid HTTP"),
        (lambda n: [None], "closed the connection"),
    ],
)
async def test_broken_answers_are_connection_errors(wire: Any, script: Any, match: str) -> None:
    server = await wire(script)
    async with client(server.url) as llm:
        with pytest.raises(APIConnectionError, match=match):
            await llm.chat("ping", model=MODEL)
        assert len(llm.ledger) == 0


async def test_compressed_answers_though_identity_was_asked_for(wire: Any) -> None:
    event = f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': 'x'}}]})}\n\n".encode()
    end = f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n".encode()
    packed = gzip.compress(event * 3 + end + b"data: [DONE]\n\n")
    streamed = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n\r\n"
    scripts = {
        "gzip": lambda n: answer(gzip.compress(BODY), headers="content-encoding: gzip\r\n"),
        "zlib deflate": lambda n: answer(zlib.compress(BODY), headers="content-encoding: deflate\r\n"),
        "gzip stream": lambda n: [streamed + packed[:20], 0.01, packed[20:], None],
    }
    for name, script in scripts.items():
        server = await wire(script)
        async with client(server.url) as llm:
            if name == "gzip stream":
                assert "".join([c.delta async for c in llm.stream("ping", model=MODEL)]) == "xxx", name
            else:
                assert (await llm.chat("ping", model=MODEL)).text == "pong", name
    bomb = gzip.compress(b" " * 5_000_000)  # 5 MB of spaces in about 5 kB
    for script, match in [
        (lambda n: answer(b"\x8b\x00 not brotli", headers="content-encoding: br\r\n"), "encoded as 'br'"),
        (lambda n: answer(b"not gzip at all", headers="content-encoding: gzip\r\n"), "encoded as 'gzip'"),
        (lambda n: answer(bomb, headers="content-encoding: gzip\r\n"), "over the 1,000,000 byte limit"),
    ]:
        server = await wire(script)
        provider = {
            "base_url": server.url,
            "limits": Limits(max_response_bytes=1_000_000),
            "http": {"trust_env": False},
        }
        async with Client(providers={"openai-compatible": provider}, prices={MODEL: 1}, retry=0) as llm:
            with pytest.raises(ResponseFormatError, match=match) as caught:
                await llm.chat("ping", model=MODEL)
            assert caught.value.status == 200
            assert len(llm.ledger) == 1  # answered, so billed: recorded though unusable


async def test_a_refused_connection_and_a_silent_server(wire: Any, unused_tcp_port: int) -> None:
    async with client(f"http://127.0.0.1:{unused_tcp_port}/v1") as llm:
        with pytest.raises(APIConnectionError, match="could not connect"):
            await llm.chat("ping", model=MODEL)
    server = await wire(lambda n: [1.0, *answer()])
    async with client(server.url, timeouts=Timeouts(connect=5, read=0.1, total=None)) as llm:
        with pytest.raises(APITimeoutError, match=r"read timeout \(no data for 0.1 s\)"):
            await llm.chat("ping", model=MODEL)


async def test_a_connect_timeout_when_the_server_takes_no_more_connections() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepts: once its backlog is full, further SYNs go unanswered
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(4)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    await asyncio.sleep(0.05)
    try:
        async with client(f"http://127.0.0.1:{port}/v1", Timeouts(connect=0.2, read=5, total=None)) as llm:
            with pytest.raises(APITimeoutError, match=r"connect timeout") as caught:
                await llm.chat("ping", model=MODEL)
            assert caught.value.request_sent is False  # never sent: safe to retry, nothing billed
            assert len(llm.ledger) == 0
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def test_a_cancelled_call_gives_its_connection_slot_back(wire: Any) -> None:
    server = await wire(lambda n: [0.5, *answer()] if n == 1 else answer())
    async with client(server.url, max_connections=1) as llm:
        slow = asyncio.ensure_future(llm.chat("ping", model=MODEL))
        await asyncio.sleep(0.1)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert (await llm.chat("ping", model=MODEL)).text == "pong"  # the one slot is free again
    assert server.connections == 2  # the cancelled exchange's connection was not reused


async def test_tls_verified_against_the_given_authority(wire: Any, tmp_path: Path) -> None:
    server, bundle = await tls_server(wire, tmp_path)
    async with client(server.url, verify=str(bundle)) as llm:
        assert (await llm.chat("ping", model=MODEL)).text == "pong"
    async with client(server.url) as llm:  # certifi's authorities do not know this one
        with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await llm.chat("ping", model=MODEL)
    async with client(server.url, verify=False) as llm:
        assert (await llm.chat("ping", model=MODEL)).text == "pong"


def test_options_name_the_native_backend() -> None:
    assert HTTPOptions().backend == "native"
    with pytest.raises(ValueError, match="'native', 'aiohttp' or 'httpx'"):
        HTTPOptions(backend="h2")  # type: ignore[arg-type]


async def test_idle_connections_close_at_keepalive_expiry_and_beyond_the_idle_bound(wire: Any) -> None:
    server = await wire(lambda n: [0.05, *answer()])
    async with client(server.url, keepalive_expiry=0.3, max_idle_connections=2) as llm:
        await asyncio.gather(*(llm.chat("ping", model=MODEL) for _ in range(5)))
        await asyncio.sleep(0.1)
        assert (server.connections, server.closed_by_client) == (5, 3)  # two kept idle, three closed at once
        await asyncio.sleep(0.4)
        assert server.closed_by_client == 5  # the idle ones closed at their expiry, no call needed
        assert (await llm.chat("ping", model=MODEL)).text == "pong"
    assert server.connections == 6


async def test_a_kept_alive_connection_the_server_closed_while_the_loop_was_blocked(wire: Any) -> None:
    server = await wire(lambda n: [*answer(), 0.05, None])  # the server's keep-alive timeout: 50 ms
    async with client(server.url) as llm:
        for _ in range(5):
            assert (await llm.chat("ping", model=MODEL)).text == "pong"
            time.sleep(0.15)  # noqa: ASYNC251 - a blocking call: the server's close waits unseen on the socket
    assert server.connections == 5


async def test_a_request_on_a_connection_closed_before_answering_goes_once_more_on_a_new_one(wire: Any) -> None:
    # The second request on each connection is met by a close, no byte of an answer: it never started there.
    server = await wire(lambda n: answer() if n % 2 else [None])
    async with client(server.url) as llm:
        for _ in range(4):
            assert (await llm.chat("ping", model=MODEL)).text == "pong"
    assert len(server.requests) == 7 and server.connections == 4
    # A new connection closed before answering is an error (the server may have started on the request).
    server = await wire(lambda n: [None])
    async with client(server.url) as llm:
        with pytest.raises(APIConnectionError, match="closed the connection"):
            await llm.chat("ping", model=MODEL)
    assert len(server.requests) == 1


async def test_an_answer_that_closes_without_saying_so_back_to_back(wire: Any) -> None:
    server = await wire(lambda n: [*answer(), None])  # HTTP/1.1, no `connection: close`, then the close
    async with client(server.url) as llm:
        replies = await asyncio.gather(*(llm.chat("ping", model=MODEL) for _ in range(3)))
        for _ in range(20):
            replies.append(await llm.chat("ping", model=MODEL))
    assert [reply.text for reply in replies] == ["pong"] * 23


@pytest.mark.parametrize(
    "endless",
    [
        b"HTTP/1.1 200 OK\r\nx-endless: ",  # one header line that never ends
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\npong!\r\n0\r\nx-trailer: ",  # a trailer
        b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n",  # informational answers, forever
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=",  # a chunk extension
    ],
    ids=["header", "trailer", "1xx", "chunk extension"],
)
async def test_an_endless_line_is_bounded_in_size_and_in_time(wire: Any, endless: bytes) -> None:
    filler = endless[-50:] if endless.endswith(b"\r\n\r\n") else b"a" * 4096
    fast = await wire(lambda n: itertools.chain([endless], itertools.repeat(filler, 100_000)))
    tracemalloc.start()
    try:
        started = time.monotonic()
        async with client(fast.url, Timeouts(connect=5, read=5, total=None)) as llm:
            with pytest.raises(APIConnectionError, match=r"run past (64 KiB|200 fields)"):
                await llm.chat("ping", model=MODEL)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5 and peak < 1 << 20
    drip = filler if filler.endswith(b"\r\n") else b"a"  # every 20 ms: data, no progress
    slow = await wire(lambda n: [endless, *[0.02, drip] * 1000])
    started = time.monotonic()
    async with client(slow.url, Timeouts(connect=5, read=0.3, total=None)) as llm:
        with pytest.raises(APITimeoutError, match=r"read timeout \(no (complete head|progress) for 0.3 s\)"):
            await llm.chat("ping", model=MODEL)
    assert time.monotonic() - started < 1
