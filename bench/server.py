"""A minimal OpenAI-compatible HTTP/1.1 server on raw asyncio, for measuring client overhead.

It answers `POST /v1/chat/completions` with one fixed `chat.completion` (usage included) or, when the body has
`"stream": true`, a short SSE stream that ends with a usage chunk and `data: [DONE]`. `POST /v1/embeddings` returns
one fixed `EMBEDDING_DIMENSIONS`-long vector per input (as floats, or base64 when `encoding_format` asks for it).
`GET /v1/models` lists the one model. Every answer is encoded once at start-up (embeddings: joined from one encoded
item), so the server spends as little CPU per request as it can; it runs as its own process so that the client's
CPU time can be measured alone:

    python bench/server.py --port 8123     # prints "ready" once it listens on 127.0.0.1:8123
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

HOST = "127.0.0.1"  # loopback only: this server has no auth and must never be reachable from outside
MODEL = "bench"
REPLY_TEXT = "Hello! How can I help you today?"
# How REPLY_TEXT is cut into stream deltas, the way a tokenizer would cut it.
REPLY_PIECES = ("Hello", "!", " How", " can", " I", " help", " you", " today", "?")
USAGE: dict[str, Any] = {
    "prompt_tokens": 9,
    "completion_tokens": 9,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
CREATED = 1_718_000_000
COMPLETION_ID = "chatcmpl-bench0000000000000000000001"
REQUEST_ID = "req_bench00000000000000000000001"
EMBEDDING_DIMENSIONS = 32
# One fixed vector: the bench measures the client's work per request, not the server's.
EMBEDDING = [round((n + 1) / EMBEDDING_DIMENSIONS, 6) for n in range(EMBEDDING_DIMENSIONS)]
MAX_HEAD = 64 * 1024  # a request head larger than this is not a benchmark client: refuse it
MAX_BODY = 16 * 1024 * 1024


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def chat_completion() -> dict[str, Any]:
    """The fixed non-streamed reply, shaped like api.openai.com's."""
    return {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }


def stream_events() -> list[dict[str, Any]]:
    """The fixed streamed reply: a role delta, content deltas, the finish chunk, then the usage chunk."""
    base = {
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    events = [{**base, "choices": [choice({"role": "assistant", "content": "", "refusal": None})]}]
    events += [{**base, "choices": [choice({"content": piece})]} for piece in REPLY_PIECES]
    events.append({**base, "choices": [choice({}, "stop")]})
    # Sent whether or not stream_options.include_usage was asked for, so every client parses the same bytes.
    events.append({**base, "choices": [], "usage": USAGE})
    return events


def _head(status: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _json_response(status: str, body: bytes) -> bytes:
    return (
        _head(
            status,
            [
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
                ("x-request-id", REQUEST_ID),
                ("openai-processing-ms", "1"),
            ],
        )
        + body
    )


def _sse_response() -> bytes:
    # Chunked, as real OpenAI streams are, so the connection stays reusable without a content-length.
    payload = [b"data: " + _dumps(event) + b"\n\n" for event in stream_events()]
    payload.append(b"data: [DONE]\n\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in payload) + b"0\r\n\r\n"
    head = _head(
        "200 OK",
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("transfer-encoding", "chunked"),
            ("cache-control", "no-cache"),
            ("x-request-id", REQUEST_ID),
        ],
    )
    return head + chunks


def _error(status: str, message: str, kind: str) -> bytes:
    return _json_response(status, _dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}))


def _embedding_items() -> dict[str, tuple[bytes, bytes]]:
    """For each encoding, the bytes of one item before and after its index."""
    import base64
    import struct

    packed = base64.b64encode(struct.pack(f"<{EMBEDDING_DIMENSIONS}f", *EMBEDDING)).decode()
    items = {}
    for encoding, vector in (("float", _dumps(EMBEDDING)), ("base64", _dumps(packed))):
        items[encoding] = (b'{"object":"embedding","index":', b',"embedding":' + vector + b"}")
    return items


EMBEDDING_ITEMS = _embedding_items()


def embeddings_response(count: int, encoding: str) -> bytes:
    """The answer to an embeddings request with `count` inputs."""
    head, tail = EMBEDDING_ITEMS["base64" if encoding == "base64" else "float"]
    data = b",".join(head + str(index).encode() + tail for index in range(count))
    usage = b'{"prompt_tokens":%d,"total_tokens":%d}' % (count * 4, count * 4)
    body = b'{"object":"list","data":[' + data + b'],"model":"' + MODEL.encode() + b'","usage":' + usage + b"}"
    return _json_response("200 OK", body)


CHAT_RESPONSE = _json_response("200 OK", _dumps(chat_completion()))
STREAM_RESPONSE = _sse_response()
MODELS_RESPONSE = _json_response(
    "200 OK",
    _dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}]}),
)
NOT_FOUND = _error("404 Not Found", "no such route", "invalid_request_error")
BAD_JSON = _error("400 Bad Request", "the body is not a JSON object", "invalid_request_error")
BAD_REQUEST = _error("400 Bad Request", "malformed HTTP request", "invalid_request_error")


class _Incomplete(Exception):
    """More bytes are needed before the request in the buffer can be parsed."""


def _chunked_body(buffer: bytearray, start: int) -> tuple[bytes, int]:
    """Decode a chunked body starting at `start`; return it and the offset just past it (trailers skipped)."""
    parts: list[bytes] = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            raise _Incomplete
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailers_end = buffer.find(b"\r\n\r\n", position - 2)
            if trailers_end < 0:
                raise _Incomplete
            return b"".join(parts), trailers_end + 4
        if len(buffer) < position + size + 2:
            raise _Incomplete
        parts.append(bytes(buffer[position : position + size]))
        position += size + 2


class ChatProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; pipelined requests are answered in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and self._buffer:
            try:
                answer, keep_alive, consumed = self._parse()
            except _Incomplete:
                if len(self._buffer) > MAX_HEAD + MAX_BODY:
                    self._close_with(BAD_REQUEST)
                return
            except ValueError:
                self._close_with(BAD_REQUEST)
                return
            del self._buffer[:consumed]
            self._transport.write(answer)
            if not keep_alive:
                self._transport.close()
                return

    def _close_with(self, answer: bytes) -> None:
        if self._transport is not None:
            self._transport.write(answer)
            self._transport.close()

    def _parse(self) -> tuple[bytes, bool, int]:
        """The answer to the first complete request in the buffer, whether to keep the connection, bytes used."""
        buffer = self._buffer
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buffer) > MAX_HEAD:
                raise ValueError("request head too large")
            raise _Incomplete
        lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body_start = head_end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, consumed = _chunked_body(buffer, body_start)
        else:
            length = int(headers.get("content-length", "0"))
            if length < 0 or length > MAX_BODY:
                raise ValueError("bad content-length")
            if len(buffer) < body_start + length:
                raise _Incomplete
            body, consumed = bytes(buffer[body_start : body_start + length]), body_start + length
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return self._answer(method, target.split("?", 1)[0], body), keep_alive, consumed

    @staticmethod
    def _answer(method: str, path: str, body: bytes) -> bytes:
        if method == "POST" and path == "/v1/chat/completions":
            try:
                request = json.loads(body)
            except ValueError:
                return BAD_JSON
            if not isinstance(request, dict):
                return BAD_JSON
            return STREAM_RESPONSE if request.get("stream") is True else CHAT_RESPONSE
        if method == "POST" and path == "/v1/embeddings":
            try:
                request = json.loads(body)
            except ValueError:
                return BAD_JSON
            inputs = request.get("input") if isinstance(request, dict) else None
            if isinstance(inputs, str):
                inputs = [inputs]
            if not isinstance(inputs, list):
                return BAD_JSON
            return embeddings_response(len(inputs), str(request.get("encoding_format") or "float"))
        if method == "GET" and path == "/v1/models":
            return MODELS_RESPONSE
        return NOT_FOUND


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:`port` until SIGINT or SIGTERM, printing "ready" once listening."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # A deep backlog: the concurrent benchmark opens 100 connections at once.
    server = await loop.create_server(ChatProtocol, HOST, port, backlog=1024, reuse_address=True)
    async with server:
        print("ready", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse `--port` and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error("--port must be in 1..65535")
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
