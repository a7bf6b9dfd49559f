"""A hostile HTTP server on loopback: it answers each request with whatever a test scripts, byte for byte.

Raw asyncio rather than a framework, so it can send what no well-behaved server would: bodies nested 100,000
levels deep, lines of megabytes, redirects with JSON bodies, headers echoing the key, answers that never come.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from llmclient import Client, LLMClientError

KEY = "sk-hostile-0123456789abcdefghijKEY"
DEEP = b"[" * 100_000 + b"]" * 100_000
PRICES = {"openai-compatible/m": 1}  # 1 USD per million tokens, input and output


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """One scripted answer: a status line, headers, and the body in pieces (floats are pauses in seconds)."""

    status: int = 200
    body: Sequence[bytes | float] = (b"",)
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


def ok(content: str = "hi", *, usage: Any = None, **message: Any) -> Reply:
    """A chat completion."""
    usage = {"prompt_tokens": 5, "completion_tokens": 2} if usage is None else usage
    payload = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content, **message}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }
    return Reply(200, (json.dumps(payload).encode(),), {"content-type": "application/json"})


def sse(*events: bytes | str) -> Reply:
    """A server-sent event stream of `data:` events."""
    pieces = [e if isinstance(e, bytes) else f"data: {e}\n\n".encode() for e in events]
    return Reply(200, pieces, {"content-type": "text/event-stream"})


def chunk(text: str) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


class HostileServer:
    """Serves `script(request)` on 127.0.0.1; every answer carries a header echoing the key (a logging trap)."""

    def __init__(self, script: Callable[[Request], Reply]) -> None:
        self.script = script
        self.requests: list[Request] = []
        self.url = ""
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> HostileServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.requests.append(request)
                reply = self.script(request)
                if reply.hang:
                    await asyncio.sleep(3600)
                pieces = list(reply.body)
                whole = all(isinstance(piece, bytes) for piece in pieces) and len(pieces) == 1
                lines = [f"HTTP/1.1 {reply.status} X", f"x-echo: Bearer {KEY}"]
                lines += [f"{name}: {value}" for name, value in reply.headers.items()]
                lines.append(f"content-length: {len(pieces[0])}" if whole else "connection: close")  # type: ignore[arg-type]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
                for piece in pieces:
                    if isinstance(piece, float):
                        await asyncio.sleep(piece)
                    else:
                        writer.write(piece)
                        await writer.drain()
                if not whole:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception behind it (`__cause__` and `__context__`)."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]


def assert_clean(error: BaseException, caplog: pytest.LogCaptureFixture | None = None, key: str = KEY) -> None:
    """The one rule: an llmclient error, with the key nowhere in its text, args, chain or body (which is bounded),
    nor in the DEBUG logs of llmclient, httpx and httpcore."""
    assert isinstance(error, LLMClientError), f"{type(error).__name__} escaped: {error!r}"[:500]
    for link in chain(error):
        texts = [str(link), repr(link), *map(repr, link.args), repr(getattr(link, "object", ""))]
        texts += [repr(getattr(link, name, "")) for name in ("body", "partial_text", "location", "doc")]
        for text in texts:
            assert key not in text, f"key in {type(link).__name__}: {text[:300]}"
        body = getattr(link, "body", None)
        assert body is None or len(json.dumps(body, default=str)) <= 4000
        assert len(getattr(link, "doc", "") or "") <= 4000  # a JSONDecodeError's document
    assert len(str(error)) <= 1000
    if caplog is not None:
        for record in caplog.records:
            if record.name.split(".")[0] in ("llmclient", "httpx", "httpcore"):
                assert key not in record.getMessage(), f"key in the {record.name} log"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def client_for(server: HostileServer, **options: Any) -> Client:
    """A client whose `openai-compatible` provider is the hostile server, with the key and prices set."""
    provider = {"base_url": server.url, "api_key": KEY, **options.pop("provider", {})}
    return Client(providers={"openai-compatible": provider}, prices=PRICES, retry=options.pop("retry", 0), **options)
