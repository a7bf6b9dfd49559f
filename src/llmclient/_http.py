"""HTTP plumbing: the only module that imports httpx (`_aiohttp.py` is the only one that imports aiohttp).

`HTTPClient` sends a driver's requests over one of two backends. By default it is aiohttp (`_aiohttp.py`), whose
per-call CPU cost is a third of httpx's; `transport=` (any `httpx.AsyncBaseTransport`, e.g. `httpx.MockTransport`),
`HTTPOptions(backend="httpx")`, or a started `respx` mock select httpx, so the test seams keep working. Both
backends take the same `Timeouts` and `HTTPOptions` (proxy, environment, TLS verification, connection limits,
keep-alive). This module also reads SSE events and NDJSON lines, and translates every httpx and JSON failure into
the llmclient error tree in one place.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from llmclient._http_options import HTTPOptions as HTTPOptions  # re-exported: drivers take it from here
from llmclient._http_options import respx_routing
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

    from llmclient._aiohttp import AiohttpBackend

    Transport = httpx.AsyncBaseTransport
else:
    Transport = Any  # httpx is imported when the first HTTP driver is built, keeping `import llmclient` light

_USER_AGENT = "llmclient/0.1"


@dataclass(frozen=True)
class Timeouts:
    """Timeouts for one call.

    Args:
        connect: Seconds to open a connection (TCP and TLS).
        read: Seconds between two reads of the answer (a stream that goes quiet this long fails).
        total: The call's overall deadline in seconds, retries and stream included; None for none. It is what
            stops a server that keeps a connection alive by dripping bytes.
        write: Seconds to send the request body; None means as long as `read`. The aiohttp backend has no write
            timeout of its own: it reads while it writes, so a peer that stops reading the body is caught by `read`.
        pool: Seconds to wait for a free connection when `HTTPOptions.max_connections` are all busy; None means as
            long as `read`. With aiohttp it bounds the wait and the opening of a new connection together.
    """

    connect: float = 10.0
    # As long as the whole call: a non-streamed reply from a reasoning model or a CPU-bound local server can take
    # minutes before its first byte. A stream that keeps a connection alive by dripping bytes is stopped by `total`.
    read: float = 600.0
    total: float | None = 600.0
    write: float | None = None
    pool: float | None = None

    @classmethod
    def from_value(cls, value: float | Timeouts | None) -> Timeouts:
        """A float is the overall deadline (connect and read timeouts capped by it); None means no deadline."""
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(total=None)
        return cls(connect=min(cls.connect, value), read=value, total=value)


class HTTPClient:
    """One provider's HTTP connection pool: JSON requests, streamed lines, errors already translated.

    Args:
        provider: The provider name errors carry.
        base_url: Every path is relative to it.
        headers: Headers sent with every request (the API key's among them).
        secrets: Strings never to show in an error message.
        transport: An httpx transport; selects the httpx backend (`httpx.MockTransport` in tests).
        timeouts: Connect, read, write and pool timeouts (`total` is the pipeline's).
        options: Proxy, environment, TLS verification, connection limits, keep-alive and backend.
        refine: Turns an error answer into a more specific llmclient error.
        refine_connect: Adds a provider's hint to a refused connection.
    """

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        secrets: Iterable[str] = (),
        transport: Transport | None = None,
        timeouts: Timeouts | None = None,
        options: HTTPOptions | Mapping[str, Any] | None = None,
        refine: Callable[[APIError], LLMClientError] | None = None,
        refine_connect: Callable[[APIConnectionError], LLMClientError] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url
        self.timeouts = timeouts or Timeouts()
        self.options = HTTPOptions.from_value(options)
        self.headers = {"user-agent": _USER_AGENT, **headers}
        # `refine` may turn an error answer into any llmclient error (a 400 that says a model lacks tools is an
        # unsupported capability, not a bad request); `refine_connect` adds a provider's hint to a refused connection.
        self._refine = refine
        self._refine_connect = refine_connect
        self._urls: dict[str, httpx.URL] = {}
        self._secrets = tuple(secret for secret in secrets if secret)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._aiohttp: AiohttpBackend | None = None
        if transport is None and self.options.backend == "aiohttp":
            try:
                from llmclient._aiohttp import AiohttpBackend
            except ImportError:  # aiohttp is a dependency; a platform without its wheels still gets httpx
                pass
            else:
                self._aiohttp = AiohttpBackend(self)
        if self._aiohttp is None:
            self._httpx()  # built now, so a bad option fails where the driver is configured

    def _backend(self) -> AiohttpBackend | None:
        """The aiohttp backend, or None to send through httpx."""
        backend = self._aiohttp
        return None if backend is None or respx_routing() else backend

    def _httpx(self) -> httpx.AsyncClient:
        client = self._client
        if client is None:
            global httpx
            import httpx

            timeouts, options = self.timeouts, self.options
            limits = httpx.Limits(
                max_connections=options.max_connections,
                # httpx's own default of 20 idle connections: its pool rescans every connection it holds on each
                # queue change, so keeping 100 idle costs several times the CPU per call at 100 concurrent calls.
                max_keepalive_connections=min(20, options.max_connections or 20) if options.keepalive_expiry else 0,
                keepalive_expiry=options.keepalive_expiry,
            )
            client = self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self.headers,
                timeout=httpx.Timeout(
                    connect=timeouts.connect,
                    read=timeouts.read,
                    write=timeouts.read if timeouts.write is None else timeouts.write,
                    pool=timeouts.read if timeouts.pool is None else timeouts.pool,
                ),
                transport=self._transport,
                proxy=options.proxy,
                trust_env=options.trust_env,
                verify=options.ssl_context(),
                limits=limits,
                follow_redirects=False,
            )
        return client

    def _url(self, path: str) -> httpx.URL:
        # Joined once per path: httpx would otherwise merge and re-parse the base URL on every request.
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._httpx().base_url).join(path.lstrip("/"))
        return url

    async def post_json(
        self, path: str, body: dict[str, Any], *, model: str | None, rate_limits: dict[str, str] | None = None
    ) -> tuple[Any, str | None]:
        """POST `body` as JSON; return the decoded JSON answer and the request id. `rate_limits`, when given,
        receives the answer's `x-ratelimit-*` headers."""
        backend = self._backend()
        if backend is not None:
            response: Any = await backend.request("POST", path, _dumps(body), _JSON_HEADERS, model)
        else:
            try:
                response = await self._httpx().post(self._url(path), content=_dumps(body), headers=_JSON_HEADERS)
            except httpx.HTTPError as exc:
                raise self._translate(exc, model) from exc
        request_id = request_id_from(response.headers)
        if rate_limits is not None:
            found = ((k.lower(), v) for k, v in response.headers.items())  # aiohttp keeps the server's case
            rate_limits.update((k, v) for k, v in found if k.startswith("x-ratelimit-"))
        if response.status_code >= 400:
            raise self._error(response, response.content, model)
        return self.decode_json(response.content, model=model, request_id=request_id, status=response.status_code), (
            request_id
        )

    async def get_json(self, path: str, *, model: str | None = None) -> Any:
        """GET `path` and decode its JSON answer."""
        backend = self._backend()
        if backend is not None:
            response: Any = await backend.request("GET", path, None, _GET_HEADERS, model)
        else:
            try:
                response = await self._httpx().get(self._url(path))
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
        backend = self._backend()
        if backend is not None:
            async with backend.stream(path, _dumps(body), _STREAM_HEADERS, model) as response:
                yield request_id_from(response.headers), iter_lines(backend.chunks(response, model))
            return
        async with self._stream(path, body, _STREAM_HEADERS, model) as response:
            yield request_id_from(response.headers), self._lines(response, model)

    @asynccontextmanager
    async def stream_ndjson(
        self, path: str, body: dict[str, Any], *, model: str | None
    ) -> AsyncIterator[tuple[str | None, AsyncIterator[bytes]]]:
        """POST `body` and yield the request id and an iterator over the answer's NDJSON lines (see `iter_ndjson`)."""
        backend = self._backend()
        if backend is not None:
            async with backend.stream(path, _dumps(body), _NDJSON_HEADERS, model) as response:
                yield request_id_from(response.headers), iter_ndjson(backend.chunks(response, model))
            return
        async with self._stream(path, body, _NDJSON_HEADERS, model) as response:
            yield request_id_from(response.headers), iter_ndjson(self._bytes(response, model))

    @asynccontextmanager
    async def _stream(
        self, path: str, body: dict[str, Any], headers: Mapping[str, str], model: str | None
    ) -> AsyncIterator[httpx.Response]:
        client = self._httpx()
        request = client.build_request("POST", self._url(path), content=_dumps(body), headers=headers)
        try:
            response = await client.send(request, stream=True)
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

    def _error(self, response: Any, content: bytes, model: str | None) -> LLMClientError:
        # `response`: an httpx.Response or the aiohttp backend's answer; both have `status_code` and `headers`.
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
        if isinstance(exc, httpx.TimeoutException):
            kind: FailureKind = (
                "connect timeout"
                if isinstance(exc, httpx.ConnectTimeout)
                else "write timeout"
                if isinstance(exc, httpx.WriteTimeout)
                else "pool timeout"
                if isinstance(exc, httpx.PoolTimeout)
                else "read timeout"
            )
        elif isinstance(exc, httpx.ConnectError):
            kind = "connect"
        else:
            kind = "connection"
        return self.failure(kind, exc, model)

    def failure(self, kind: FailureKind, exc: Exception, model: str | None) -> LLMClientError:
        """The llmclient error for a request that got no answer (either backend's exception `exc`)."""
        detail = redact(str(exc) or type(exc).__name__, self._secrets)
        if exc.args and detail != str(exc):
            # The original stays chained as the cause for debugging, so it must not carry the key either.
            exc.args = (detail, *exc.args[1:])
        if kind.endswith("timeout"):
            return APITimeoutError(f"{self.provider}: {kind} ({detail})", provider=self.provider, model=model)
        if kind == "connect":
            refused = APIConnectionError(
                f"could not connect to {self.provider} at {self.base_url} ({detail})",
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
        if self._aiohttp is not None:
            await self._aiohttp.aclose()
        if self._client is not None:
            await self._client.aclose()


FailureKind = Literal["connect", "connect timeout", "read timeout", "write timeout", "pool timeout", "connection"]
_GET_HEADERS = {"accept": "application/json"}
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


async def iter_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The lines of a body as text, from chunks cut anywhere, blank lines kept (they end SSE events).

    Lines end at `\\n` (a trailing `\\r` is dropped), which never occurs inside a multi-byte UTF-8 sequence, so each
    line decodes whole; bytes that are not UTF-8 become U+FFFD. A last line without its newline is still delivered.
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
            yield (line[:-1] if line[-1:] == b"\r" else line).decode("utf-8", "replace")
    if parts:
        line = b"".join(parts)
        yield (line[:-1] if line[-1:] == b"\r" else line).decode("utf-8", "replace")


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
