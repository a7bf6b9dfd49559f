"""The native backend's parser path fuzzed (hypothesis): answers framed every way HTTP/1.1 allows (length, chunked
with extensions and trailers, until close), streams with every line end, all cut into random pieces; then the same
with their framing broken (a token dropped, replaced or repeated, the answer cut short, a line that never ends).

Each example sends two calls over one client: the generated answer, then a clean one. The first must give the right
answer or a typed llmclient error; the second the right answer (a broken answer never poisons the next call); never
a hang, another exception, or more than 1 MiB held.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmclient import Client, LLMClientError, Timeouts

MODEL = "openai-compatible/m"
TEXT = "pong, 你好"


def completion() -> bytes:
    return json.dumps(
        {
            "id": "c",
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
    ).encode()


def events(ends: list[str]) -> bytes:
    """The stream of TEXT, one character per event, each line ending as `ends` says in turn."""
    lines: list[str] = []
    for char in TEXT:
        lines += [f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': char}}]})}", ""]
    lines += [": a comment", f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}"]
    lines += ["", "data: [DONE]", ""]
    text, previous = "", ""
    for n, line in enumerate(lines):
        end = ends[n % len(ends)]
        if previous == "\r" and not line and end == "\n":
            end = "\r\n"  # a bare LF would join the CR before it into one CRLF, and the blank line would be lost
        text, previous = text + line + end, end
    return text.encode()


@dataclass
class Answer:
    """An answer as tokens: (bytes, may be broken). Mutations touch framing tokens only (a status or header line, a
    chunk's size line or its end), never the content nor the blank line that ends the head: without it the content
    would be read as headers, which any client would do."""

    tokens: list[tuple[bytes, bool]] = field(default_factory=list)

    def add(self, data: bytes, framing: bool = True) -> None:
        self.tokens.append((data, framing))

    def end_head(self) -> None:
        self.add(b"\r\n", framing=False)

    def bytes(self) -> bytes:
        return b"".join(data for data, _ in self.tokens)


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, Answer]:
    """A well-formed answer to a chat or a stream, framed by length, chunks or the close."""
    kind = draw(st.sampled_from(["chat", "stream"]))
    body = completion() if kind == "chat" else events(draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1)))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    answer = Answer()
    answer.add(b"HTTP/1.1 200 OK\r\n")
    answer.add(f"content-type: {'application/json' if kind == 'chat' else 'text/event-stream'}\r\n".encode())
    for _ in range(draw(st.integers(0, 3))):
        answer.add(f"x-{draw(st.sampled_from(['a', 'b', 'request-id']))}: {draw(st.integers(0, 999))}\r\n".encode())
    if draw(st.booleans()):
        answer.add(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n")  # an informational answer first
        answer.tokens.insert(0, answer.tokens.pop())
    if framing == "length":
        answer.add(f"content-length: {len(body)}\r\n".encode())
        answer.end_head()
        answer.add(body, framing=False)
    elif framing == "chunked":
        answer.add(b"transfer-encoding: chunked\r\n")
        answer.end_head()
        at = 0
        while at < len(body):
            size = draw(st.integers(1, 64))
            extension = draw(st.sampled_from([b"", b";x=1", b';name="v"']))
            answer.add(f"{min(size, len(body) - at):x}".encode() + extension + b"\r\n")
            answer.add(body[at : at + size], framing=False)
            answer.add(b"\r\n")
            at += size
        answer.add(b"0\r\n" + draw(st.sampled_from([b"", b"x-trailer: 1\r\n"])) + b"\r\n")
    else:
        answer.add(b"connection: close\r\n")
        answer.end_head()
        answer.add(body, framing=False)
    return kind, answer


JUNK = st.sampled_from(
    [b"", b"\r", b"\n", b"\r\n", b":", b" ", b"0", b"ff", b";", b"\x00", b"HTTP/1.1 200 OK\r\n", b"zz"]
)


@st.composite
def broken(draw: st.DrawFn, answer: Answer) -> bytes:
    """`answer` with its framing broken one way or another (its content untouched)."""
    tokens = list(answer.tokens)
    framing = [n for n, (_, is_framing) in enumerate(tokens) if is_framing]
    how = draw(st.sampled_from(["drop", "replace", "repeat", "cut", "endless line", "trailing bytes"]))
    n = draw(st.sampled_from(framing))
    if how == "drop":
        del tokens[n]
    elif how == "replace":
        tokens[n] = (draw(JUNK), True)
    elif how == "repeat":
        tokens.insert(n, tokens[n])
    elif how == "endless line":
        tokens.insert(n, (b"x-endless: " + b"a" * draw(st.integers(60_000, 300_000)), True))
    data = b"".join(data for data, _ in tokens)
    if how == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "trailing bytes":
        data += draw(JUNK)
    return data


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


CLEAN = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(completion()),
    completion(),
)


STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n" + events(["\n"])


class Server:
    """A loopback server on a thread: the first request of an example gets `script`'s pieces (then the connection
    closes), every later one a clean chat answer."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.script: list[bytes] = []
        self.served = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock, contextlib.suppress(OSError):  # the client may give up on an answer half sent
            for _ in self.requests(sock):
                self.served += 1
                if self.served > 1:
                    sock.sendall(CLEAN)
                    continue
                for piece in self.script:
                    sock.sendall(piece)
                    time.sleep(0.0002)  # most pieces arrive as reads of their own
                return

    def requests(self, sock: socket.socket) -> Iterator[None]:
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffered += data
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            size = int(next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))[15:])
            while len(buffered) < size:
                data = sock.recv(65536)
                if not data:
                    return
                buffered += data
            buffered = buffered[size:]
            yield


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    served = Server()
    for kind, answer in [("chat", CLEAN), ("stream", STREAM)]:  # first calls' imports and caches, before tracing
        served.script, served.served = [answer], 0
        asyncio.run(two_calls(served.url, kind))
    yield served
    served.listener.close()


async def two_calls(url: str, kind: str) -> tuple[object, object, int]:
    """The first call's result (an answer's text or a typed error), the second's text, and the memory traced
    before them (the peak is measured from there)."""
    provider = {"base_url": url, "http": {"backend": "native", "trust_env": False}}
    timeout = Timeouts(connect=2, read=1, total=5)
    async with Client(providers={"openai-compatible": provider}, prices={MODEL: 0}, retry=0, timeout=timeout) as llm:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        first: object
        try:
            if kind == "chat":
                first = (await llm.chat("ping", model=MODEL)).text
            else:
                first = "".join([chunk.delta async for chunk in llm.stream("ping", model=MODEL)])
        except LLMClientError as exc:
            first = exc
        second = (await llm.chat("ping", model=MODEL)).text
        return first, second, base


def check(server: Server, kind: str, data: bytes, cuts: list[int], *, broken: bool) -> None:
    server.script, server.served = pieces(data, cuts), 0
    try:
        first, second, base = asyncio.run(asyncio.wait_for(two_calls(server.url, kind), 10))
    except asyncio.TimeoutError:
        pytest.fail(f"hung on {data[:300]!r}")
    held = tracemalloc.get_traced_memory()[1] - base
    assert second == TEXT
    assert first == TEXT or (broken and isinstance(first, LLMClientError)), (first, data[:300])
    assert held < 1 << 20, f"{held:,} bytes held for {data[:100]!r}"


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


@FUZZ
@given(generated=answers(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_well_formed_answers_cut_anywhere(server: Server, generated: tuple[str, Answer], cuts: list[int]) -> None:
    kind, answer = generated
    check(server, kind, answer.bytes(), cuts, broken=False)


@FUZZ
@given(data=st.data(), generated=answers(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_broken_framing_gives_the_answer_or_a_typed_error(
    server: Server, data: st.DataObject, generated: tuple[str, Answer], cuts: list[int]
) -> None:
    kind, answer = generated
    check(server, kind, data.draw(broken(answer)), cuts, broken=True)
