"""Framing of streamed bodies: lines, server-sent events and NDJSON from chunks cut anywhere, each bounded.

Every HTTP backend feeds these the chunks it reads, so a stream is split (at LF, CRLF or a bare CR), decoded and
bounded the same way over the native backend, aiohttp and httpx. A line or event over its limit raises
(`ValueError` for lines, `StreamDecodeError` for events) before it can grow without bound.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from llmclient.errors import StreamDecodeError

DEFAULT_MAX_EVENT_BYTES = 8 * 2**20
"""The longest stream line or event read by default (`Limits.max_event_bytes`)."""

_INFLATABLE = ("gzip", "x-gzip", "deflate")


def _inflater(encoding: str, start: bytes) -> zlib._Decompress:
    if encoding not in _INFLATABLE:
        raise ValueError(f"no decoder for {encoding!r}")
    # wbits 47: a gzip or zlib header, detected; "deflate" sent raw (no zlib header, as some servers do) is -15.
    return zlib.decompressobj(47 if encoding != "deflate" or start[:1] == b"\x78" else -15)


def inflate(content: bytes, encoding: str, limit: int) -> bytes | None:
    """A gzip or deflate body undone, or None when it would expand past `limit` bytes (a small body must not
    grow without bound). `ValueError` for another encoding or a corrupt body."""
    try:
        plain: bytes = _inflater(encoding, content).decompress(content, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"corrupt {encoding} body") from exc
    return None if len(plain) > limit else plain


async def inflate_stream(pieces: AsyncIterator[bytes], encoding: str, cap: int) -> AsyncGenerator[bytes, None]:
    """A gzip or deflate stream undone a piece at a time, no piece over `cap` bytes (what the framing accepts as
    one line). `ValueError` for another encoding or corrupt data."""
    inflater = None
    async for raw in pieces:
        inflater = inflater or _inflater(encoding, raw)
        try:
            piece = inflater.decompress(raw, cap)
            while piece:
                yield piece
                tail = inflater.unconsumed_tail
                piece = inflater.decompress(tail, cap) if tail else b""
        except zlib.error as exc:
            raise ValueError(f"corrupt {encoding} stream") from exc


async def iter_sse(
    lines: AsyncIterator[str], *, max_event_chars: int | None = None
) -> AsyncGenerator[tuple[str, str], None]:
    """Server-sent events from decoded lines, as `(event, data)`; comments and keep-alive lines are skipped.

    Follows the WHATWG event-stream rules that matter for LLM APIs: `data:` lines of one event join with
    newlines, a blank line ends an event, `:` starts a comment, and an event cut off by the end of the stream is
    still delivered. An event whose data grows past `max_event_chars` (the default limit when None) raises
    `StreamDecodeError`.
    """
    limit = DEFAULT_MAX_EVENT_BYTES if max_event_chars is None else max_event_chars
    event = ""
    data: list[str] = []
    size = 0
    async for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data, size = "", [], 0
            continue
        if line[0] == ":":
            continue
        field, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if field == "data":
            size += len(value) + 1
            if size > limit:
                raise StreamDecodeError(f"a stream event over the {limit:,} character limit")
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)


async def _raw_lines(chunks: AsyncIterator[bytes], limit: int, decode: bool = False) -> AsyncGenerator[Any, None]:
    """The lines of a body as bytes (as text with `decode`: not UTF-8 becomes U+FFFD), from chunks cut anywhere;
    linear in the body size however small the chunks are.

    A line ends at LF, CRLF or a bare CR (the event-stream format allows all three; NDJSON's JSON never holds a raw
    CR), bytes never inside a multi-byte UTF-8 sequence. A CR that ends one chunk and an LF that starts the next are
    one line end. A line over `limit` bytes raises `ValueError` as soon as it is known to be too long.
    """
    parts: list[bytes] = []
    pending = 0
    after_cr = False
    async for chunk in chunks:
        if after_cr and chunk:
            after_cr = False
            if chunk[0] == 10:  # the LF of a CRLF cut between two chunks
                chunk = chunk[1:]
        if b"\r" in chunk:
            after_cr = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            if chunk:
                parts.append(chunk)
                pending += len(chunk)
                if pending > limit:
                    raise ValueError(f"a stream line over the {limit:,} byte limit")
            continue
        lines = chunk.split(b"\n")
        if parts:
            parts.append(lines[0])
            lines[0] = b"".join(parts)
            parts = []
        tail = lines.pop()
        pending = len(tail)
        if tail:
            parts.append(tail)
        if pending > limit or any(len(line) > limit for line in lines):
            raise ValueError(f"a stream line over the {limit:,} byte limit")
        for line in lines:
            yield line.decode("utf-8", "replace") if decode else line
    if parts:
        yield b"".join(parts).decode("utf-8", "replace") if decode else b"".join(parts)


def iter_lines(chunks: AsyncIterator[bytes], *, max_line_bytes: int | None = None) -> AsyncGenerator[str, None]:
    """The lines of a body as text, blank lines kept (they end SSE events), each ending at LF, CRLF or CR; bytes
    that are not UTF-8 become U+FFFD. A last line without its line end is still delivered; one longer than
    `max_line_bytes` (the default limit when None) raises `ValueError`."""
    # The splitter itself, decoding as it goes: a generator around it would cost a resumption per line.
    return _raw_lines(chunks, DEFAULT_MAX_EVENT_BYTES if max_line_bytes is None else max_line_bytes, decode=True)


async def iter_ndjson(
    chunks: AsyncIterator[bytes], *, max_line_bytes: int | None = None
) -> AsyncGenerator[bytes, None]:
    """The lines of an NDJSON body as bytes (ending at LF, CRLF or CR), blank lines skipped. A line longer than
    `max_line_bytes` (the default limit when None) raises `ValueError`."""
    limit = DEFAULT_MAX_EVENT_BYTES if max_line_bytes is None else max_line_bytes
    lines = _raw_lines(chunks, limit)
    try:
        async for line in lines:
            if line.strip():
                yield line
    finally:  # closed early (the reader found its end marker): so is the splitter, here rather than by the GC
        await lines.aclose()
