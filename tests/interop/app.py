"""One small OpenAI-compatible app for the interop suite, written once and served by every server under test.

`answer` decides what to send for a request (chat, stream, embeddings, the model list); the adapters below only
carry it over each server's interface: ASGI (uvicorn, hypercorn, granian), WSGI (waitress), an aiohttp.web handler,
and a `http.server` handler. The model name picks a variant:

- `m`: the plain answers; `m-cr` and `m-crlf`: streams whose lines end in a bare CR or CRLF (LF otherwise);
- `m-gzip`: a gzip-compressed answer whatever the client asked for; `m-big`: a 2 MB chat answer.

Every answer carries `x-request-id: peer-<client port>`, so a test can count the connections its calls used.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

Answer = tuple[int, list[tuple[str, str]], list[bytes]]
BIG = 2_000_000
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()


def reply_text(prompt: str, model: str) -> str:
    """What the chat model answers (the stream sends the same text in pieces)."""
    return "x" * BIG if model == "m-big" else f"echo: {prompt}"


def usage(prompt: str, text: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = len(prompt.split()) + 3, len(text.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def vector(text: str, index: int) -> list[float]:
    data = text.encode()
    return [float(len(data)), float(sum(data) % 997), float(index), 0.5]


def answer(method: str, path: str, body: bytes, peer: int) -> Answer:
    """Status, headers and body pieces (a stream's events, each its own piece) for one request."""
    headers = [("x-request-id", f"peer-{peer}")]
    if method == "GET" and path.endswith("/models"):
        return 200, [*headers, ("content-type", "application/json")], [MODELS]
    try:
        request = json.loads(body)
        model = request["model"]
    except (ValueError, KeyError, TypeError):
        return 400, [*headers, ("content-type", "application/json")], [b'{"error": {"message": "bad request"}}']
    if path.endswith("/embeddings"):
        texts = request["input"]
        data = [{"object": "embedding", "index": i, "embedding": vector(t, i)} for i, t in enumerate(texts)]
        payload = {"object": "list", "model": model, "data": data, "usage": {"prompt_tokens": len(texts)}}
        return 200, [*headers, ("content-type", "application/json")], [json.dumps(payload).encode()]
    prompt = request["messages"][-1]["content"]
    text = reply_text(prompt, model)
    if request.get("stream"):
        return 200, [*headers, ("content-type", "text/event-stream")], list(events(prompt, text, model))
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    payload = {"id": "chatcmpl-1", "object": "chat.completion", "model": model, "choices": [choice]}
    content = json.dumps({**payload, "usage": usage(prompt, text)}).encode()
    if model == "m-gzip":
        return (
            200,
            [*headers, ("content-type", "application/json"), ("content-encoding", "gzip")],
            [gzip.compress(content)],
        )
    return 200, [*headers, ("content-type", "application/json")], [content]


def events(prompt: str, text: str, model: str) -> Iterator[bytes]:
    """The chat answer as server-sent events: three pieces of text, the finish, the usage, `[DONE]`."""
    end = "\r" if model == "m-cr" else "\r\n" if model == "m-crlf" else "\n"
    third = max(1, len(text) // 3)
    pieces = [text[:third], text[third : 2 * third], text[2 * third :]]
    chunks: list[dict[str, Any]] = [{"index": 0, "delta": {"content": piece}} for piece in pieces]
    chunks.append({"index": 0, "delta": {}, "finish_reason": "stop"})
    for choice in chunks:
        yield f"data: {json.dumps({'id': 'c', 'model': model, 'choices': [choice]})}{end}{end}".encode()
    final = {"id": "c", "model": model, "choices": [], "usage": usage(prompt, text)}
    yield f": the usage follows{end}data: {json.dumps(final)}{end}{end}".encode()
    yield f"data: [DONE]{end}{end}".encode()


# -- ASGI: uvicorn, hypercorn, granian -----------------------------------------------------------------------------


async def asgi(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[dict[str, Any]], Any]) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    peer = (scope.get("client") or ("", 0))[1]
    status, headers, pieces = answer(scope["method"], scope["path"], body, peer)
    if len(pieces) == 1:
        headers = [*headers, ("content-length", str(len(pieces[0])))]
    await send(
        {"type": "http.response.start", "status": status, "headers": [(k.encode(), v.encode()) for k, v in headers]}
    )
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- WSGI: waitress ------------------------------------------------------------------------------------------------


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else b""
    peer = int(environ.get("REMOTE_PORT") or 0)
    status, headers, pieces = answer(environ["REQUEST_METHOD"], environ["PATH_INFO"], body, peer)
    if len(pieces) == 1:
        headers = [*headers, ("content-length", str(len(pieces[0])))]
    start_response(f"{status} {'OK' if status == 200 else 'Bad Request'}", headers)
    return pieces


# -- aiohttp.web ---------------------------------------------------------------------------------------------------


async def aiohttp_handler(request: Any) -> Any:
    from aiohttp import web

    peer = request.transport.get_extra_info("peername")[1]
    status, headers, pieces = answer(request.method, request.path, await request.read(), peer)
    if len(pieces) == 1:
        return web.Response(status=status, headers=headers, body=pieces[0])
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    for piece in pieces:
        await response.write(piece)
    await response.write_eof()
    return response


# -- http.server ---------------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """The app over the standard library's server: HTTP/1.0 as it comes (every answer ends its connection), or with
    `protocol_version = "HTTP/1.1"` and `close_after_answer`: a complete HTTP/1.1 answer, no `connection: close`,
    then the connection closes (what a server does when a worker recycles)."""

    close_after_answer = False

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("content-length") or 0)))

    def _answer(self, body: bytes) -> None:
        status, headers, pieces = answer(self.command, self.path, body, self.client_address[1])
        chunked = self.request_version == "HTTP/1.1" and self.protocol_version == "HTTP/1.1" and len(pieces) > 1
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if len(pieces) == 1:
            self.send_header("content-length", str(len(pieces[0])))
        elif chunked:
            self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        if self.close_after_answer:
            self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass
