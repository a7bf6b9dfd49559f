"""A scripted server on loopback that speaks one wire: it answers each model request with the next step of its
script, in the format its `Wire` writes, and keeps every request it received.

Raw asyncio HTTP/1.1 rather than a framework, so any HTTP backend of llmclient (its own pool, aiohttp, httpx) talks
to it as to a provider: keep-alive for whole bodies, a closed connection after a stream, and a stream that hangs
until the client goes away (`ScriptedServer.closed_early` counts those).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from llmclient.testing.script import Failure, Reply, Step


@dataclass
class Request:
    """One request the server received."""

    method: str
    target: str
    """The request target: path and query (`/v1beta/models/m:streamGenerateContent?alt=sse`)."""
    headers: dict[str, str]
    """Its headers, names in lower case."""
    body: bytes

    @property
    def path(self) -> str:
        """The path, without the query."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        """The query's parameters."""
        return parse_qs(urlsplit(self.target).query)

    def json(self) -> Any:
        """The body decoded as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    """What the server sends back: a status, headers, and the body in pieces.

    Args:
        status: The HTTP status.
        body: The body in pieces; several pieces are sent as a stream on a connection closed afterwards.
        headers: Its headers.
        hang: After the body, keep the connection open until the client closes it.
    """

    status: int = 200
    body: Sequence[bytes] = (b"",)
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
        """A JSON body."""
        body = json.dumps(payload).encode()
        return cls(status, (body,), {"content-type": "application/json", **(headers or {})})


class Wire(Protocol):
    """A provider's format, for the scripted server: how it writes each step and what it reads of a request.

    The conformance cases script their steps in llmclient's terms (`Reply`, `Failure`); a wire writes them as its
    provider documents (`llmclient.testing.wires` has the built-in ones). Implement this to run the conformance
    suite against a driver of a new wire.
    """

    reports: frozenset[str]
    """The usage figures the provider reports beside input and output: any of "cached", "cache_write" and
    "reasoning". The cases script only these."""

    def side(self, request: Request) -> Answer | None:
        """The answer to a request that is not a model request (a model's metadata, a token count), or None."""
        ...

    def reply(self, reply: Reply, request: Request, number: int) -> Answer:
        """`reply` as the provider sends it: a whole body, or a stream when `request` asks for one. `number`
        counts the model requests so far (for ids)."""
        ...

    def failure(self, failure: Failure, request: Request) -> Answer:
        """An error answer as the provider documents it."""
        ...

    def tool_results(self, request: Request) -> list[tuple[str, str]]:
        """The tool results a request sends back, as (call id, text) pairs in order."""
        ...


Check = Callable[[Request], list[str]]
"""A check of each model request (a provider's published request schema): the problems found, none when it
conforms. A request with problems is answered with 400, and the problems are kept (`ScriptedServer.problems`)."""


class ScriptedServer:
    """Serves a script on 127.0.0.1 in one wire's format.

    Args:
        wire: The provider's format.
        check: A check each model request must pass (its provider's request schema).

    ```python
    from llmclient.testing import Reply, ScriptedServer
    from llmclient.testing.wires import OpenAIWire

    async with ScriptedServer(OpenAIWire()) as server:
        server.script(Reply(text="Hi!"))
        assert server.url.startswith("http://127.0.0.1:")
    ```
    """

    def __init__(self, wire: Wire, *, check: Check | None = None) -> None:
        self.wire = wire
        self.check = check
        self.steps: list[Step] = []
        self.requests: list[Request] = []
        """Every request received, side requests included."""
        self.model_requests: list[Request] = []
        """The model requests, each of which took a step."""
        self.problems: list[str] = []
        """What `check` found, over all requests."""
        self.closed_early = 0
        """Hanging streams the client closed."""
        self.url = ""
        self._server: asyncio.AbstractServer | None = None

    def script(self, *steps: Step) -> None:
        """Append steps: each model request takes the next one."""
        self.steps.extend(steps)

    async def start(self) -> ScriptedServer:
        """Listen on a free loopback port (once); `url` is then `http://127.0.0.1:<port>`."""
        if self._server is not None:
            return self
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> ScriptedServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def answer(self, request: Request) -> Answer:
        """What the server answers `request` with: a side answer, a refusal of a request that fails `check`, or
        the next step of the script."""
        self.requests.append(request)
        side = self.wire.side(request)
        if side is not None:
            return side
        problems = self.check(request) if self.check is not None else []
        if problems:
            self.problems.extend(problems)
            return Answer.json({"error": {"message": "; ".join(problems)[:2000], "type": "invalid_request"}}, 400)
        if not self.steps:
            return Answer.json({"error": {"message": "the script is used up", "type": "script"}}, 500)
        self.model_requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Failure):
            return self.wire.failure(step, request)
        return self.wire.reply(step, request, len(self.model_requests))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                answer = self.answer(request)
                if not await self._write(answer, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _write(self, answer: Answer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Send `answer`; whether the connection stays open for another request."""
        whole = len(answer.body) == 1 and not answer.hang
        lines = [f"HTTP/1.1 {answer.status} {'OK' if answer.status < 400 else 'Error'}"]
        lines += [f"{name}: {value}" for name, value in answer.headers.items()]
        lines.append(f"content-length: {len(answer.body[0])}" if whole else "connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        for piece in answer.body:
            writer.write(piece)
            await writer.drain()
        if answer.hang:
            await reader.read()  # until the client closes its end
            self.closed_early += 1
        return whole


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    except asyncio.IncompleteReadError:
        return None
    method, target, _ = head[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, target, headers, body)


__all__ = ["Answer", "Check", "Request", "ScriptedServer", "Wire"]
