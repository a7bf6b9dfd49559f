"""HTTP plumbing: the only module that imports httpx.

It builds the `httpx.AsyncClient` for a driver, offers the transport seam (`transport=` takes any
`httpx.AsyncBaseTransport`, e.g. `httpx.MockTransport`), reads SSE events and NDJSON lines,
and translates every httpx and JSON failure into the llmclient error tree in one place.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmclient.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    LLMClientError,
    ResponseFormatError,
    error_from_response,
    redact,
    request_id_from,
)

if TYPE_CHECKING:
    import httpx

    Transport = httpx.AsyncBaseTransport
else:
    Transport = Any  # httpx is imported when the first HTTP driver is built, keeping `import llmclient` light

_USER_AGENT = "llmclient/0.1"


@dataclass(frozen=True)
class Timeouts:
    """Timeouts for one call.

    Args:
        connect: Seconds to open a connection.
        read: Seconds between two reads of the body (a stream that goes quiet this long fails).
        total: The call's overall deadline in seconds, retries and stream included; None for none. It is what
            stops a server that keeps a connection alive by dripping bytes.
    """

    connect: float = 10.0
    # As long as the whole call: a non-streamed reply from a reasoning model or a CPU-bound local server can take
    # minutes before its first byte. A stream that keeps a connection alive by dripping bytes is stopped by `total`.
    read: float = 600.0
    total: float | None = 600.0

    @classmethod
    def from_value(cls, value: float | Timeouts | None) -> Timeouts:
        """A float is the overall deadline (connect and read timeouts capped by it); None means no deadline."""
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(total=None)
        return cls(connect=min(cls.connect, value), read=value, total=value)


class HTTPClient:
    """An httpx client bound to one provider: JSON requests, streamed lines, errors already translated."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        secrets: Iterable[str] = (),
        transport: Transport | None = None,
        timeouts: Timeouts | None = None,
        refine: Callable[[APIError], LLMClientError] | None = None,
        refine_connect: Callable[[APIConnectionError], LLMClientError] | None = None,
    ) -> None:
        global httpx
        import httpx

        timeouts = timeouts or Timeouts()
        self.provider = provider
        # `refine` may turn an error answer into any llmclient error (a 400 that says a model lacks tools is an
        # unsupported capability, not a bad request); `refine_connect` adds a provider's hint to a refused connection.
        self._refine = refine
        self._refine_connect = refine_connect
        self._urls: dict[str, httpx.URL] = {}
        self._secrets = tuple(secret for secret in secrets if secret)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"user-agent": _USER_AGENT, **headers},
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
            transport=transport,
            follow_redirects=False,
        )

    def _url(self, path: str) -> httpx.URL:
        # Joined once per path: httpx would otherwise merge and re-parse the base URL on every request.
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._client.base_url).join(path.lstrip("/"))
        return url

    async def post_json(
        self, path: str, body: dict[str, Any], *, model: str | None, rate_limits: dict[str, str] | None = None
    ) -> tuple[Any, str | None]:
        """POST `body` as JSON; return the decoded JSON answer and the request id. `rate_limits`, when given,
        receives the answer's `x-ratelimit-*` headers."""
        try:
            response = await self._client.post(self._url(path), content=_dumps(body), headers=_JSON_HEADERS)
        except httpx.HTTPError as exc:
            raise self._translate(exc, model) from exc
        request_id = request_id_from(response.headers)
        if rate_limits is not None:
            rate_limits.update((k, v) for k, v in response.headers.items() if k.startswith("x-ratelimit-"))
        if response.status_code >= 400:
            raise self._error(response, response.content, model)
        return self.decode_json(response.content, model=model, request_id=request_id, status=response.status_code), (
            request_id
        )

    async def get_json(self, path: str, *, model: str | None = None) -> Any:
        """GET `path` and decode its JSON answer."""
        try:
            response = await self._client.get(self._url(path))
        except httpx.HTTPError as exc:
            raise self._translate(exc, model) from exc
        if response.status_code >= 400:
            raise self._error(response, response.content, model)
        return self.decode_json(response.content, model=model, request_id=request_id_from(response.headers))

    @asynccontextmanager
    async def stream_lines(
        self, path: str, body: dict[str, Any], *, model: str | None
    ) -> AsyncIterator[tuple[str | None, AsyncIterator[str]]]:
        """POST `body` and yield the request id and an iterator over the answer's lines (decoded, unsplit)."""
        async with self._stream(path, body, _STREAM_HEADERS, model) as response:
            yield request_id_from(response.headers), self._lines(response, model)

    @asynccontextmanager
    async def stream_ndjson(
        self, path: str, body: dict[str, Any], *, model: str | None
    ) -> AsyncIterator[tuple[str | None, AsyncIterator[bytes]]]:
        """POST `body` and yield the request id and an iterator over the answer's NDJSON lines (see `iter_ndjson`)."""
        async with self._stream(path, body, _NDJSON_HEADERS, model) as response:
            yield request_id_from(response.headers), iter_ndjson(self._bytes(response, model))

    @asynccontextmanager
    async def _stream(
        self, path: str, body: dict[str, Any], headers: Mapping[str, str], model: str | None
    ) -> AsyncIterator[httpx.Response]:
        request = self._client.build_request("POST", self._url(path), content=_dumps(body), headers=headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._translate(exc, model) from exc
        try:
            if response.status_code >= 400:
                try:
                    content = await response.aread()
                except httpx.HTTPError as exc:
                    raise self._translate(exc, model) from exc
                raise self._error(response, content, model)
            yield response
        finally:
            await response.aclose()

    async def _lines(self, response: httpx.Response, model: str | None) -> AsyncIterator[str]:
        try:
            async for line in response.aiter_lines():
                yield line
        except httpx.HTTPError as exc:
            raise self._translate(exc, model) from exc

    async def _bytes(self, response: httpx.Response, model: str | None) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise self._translate(exc, model) from exc

    def redact(self, text: str) -> str:
        """`text` without this client's API key or anything shaped like one."""
        return redact(text, self._secrets)

    def decode_json(
        self, content: bytes, *, model: str | None, request_id: str | None = None, status: int | None = None
    ) -> Any:
        """Decode a JSON body, or raise `ResponseFormatError` with a bounded excerpt."""
        try:
            return json.loads(content)
        except ValueError as exc:
            excerpt = redact(content[:200].decode("utf-8", errors="replace"), self._secrets)
            what = "an empty body" if not content.strip() else f"a body that is not JSON: {excerpt!r}"
            raise ResponseFormatError(
                f"{self.provider} returned {what}",
                provider=self.provider,
                model=model,
                request_id=request_id,
                status=status,
            ) from exc

    def _error(self, response: httpx.Response, content: bytes, model: str | None) -> LLMClientError:
        error = error_from_response(
            response.status_code,
            content,
            response.headers,
            provider=self.provider,
            model=model,
            secrets=self._secrets,
        )
        return self._refine(error) if self._refine else error

    def _translate(self, exc: httpx.HTTPError, model: str | None) -> LLMClientError:
        detail = redact(str(exc) or type(exc).__name__, self._secrets)
        if exc.args and detail != str(exc):
            # The original stays chained as the cause for debugging, so it must not carry the key either.
            exc.args = (detail, *exc.args[1:])
        if isinstance(exc, httpx.TimeoutException):
            kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
            return APITimeoutError(f"{self.provider}: {kind} timeout ({detail})", provider=self.provider, model=model)
        if isinstance(exc, httpx.ConnectError):
            refused = APIConnectionError(
                f"could not connect to {self.provider} at {self._client.base_url} ({detail})",
                provider=self.provider,
                model=model,
            )
            return self._refine_connect(refused) if self._refine_connect else refused
        return APIConnectionError(
            f"{self.provider}: connection failed ({type(exc).__name__}: {detail})",
            provider=self.provider,
            model=model,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
_STREAM_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}
_NDJSON_HEADERS = {"content-type": "application/json", "accept": "application/x-ndjson"}


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events from decoded lines, as `(event, data)`; comments and keep-alive lines are skipped.

    Follows the WHATWG event-stream rules that matter for LLM APIs: `data:` lines of one event join with
    newlines, a blank line ends an event, `:` starts a comment, and an event cut off by the end of the stream is
    still delivered.
    """
    event = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line[0] == ":":
            continue
        field, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield event or "message", "\n".join(data)


async def iter_ndjson(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of an NDJSON body as bytes, from chunks cut anywhere; blank lines are skipped.

    Lines are split at `\\n` only, a byte that never occurs inside a multi-byte UTF-8 sequence, so a chunk that ends
    mid-line or mid-character is safe and each line decodes whole (`json.loads` takes bytes; a trailing `\\r` is
    whitespace to it). A last line without its newline is still delivered. Work is linear in the body size however
    small the chunks are.
    """
    parts: list[bytes] = []
    async for chunk in chunks:
        if b"\n" not in chunk:
            if chunk:
                parts.append(chunk)
            continue
        lines = chunk.split(b"\n")
        if parts:
            parts.append(lines[0])
            lines[0] = b"".join(parts)
            parts = []
        tail = lines.pop()
        if tail:
            parts.append(tail)
        for line in lines:
            if line.strip():
                yield line
    if parts:
        line = b"".join(parts)
        if line.strip():
            yield line
