"""HTTP plumbing: the only module that imports httpx.

It builds the `httpx.AsyncClient` for a driver, offers the transport seam (`transport=` takes any
`httpx.AsyncBaseTransport`, e.g. `httpx.MockTransport`), reads SSE events and NDJSON lines,
and translates every httpx and JSON failure into the llmclient error tree in one place: whatever the server or the
transport does, only llmclient errors leave this module (or a cancellation).

What it accepts is bounded (`Limits`): a response body and one stream line or event. It refuses API keys that
could not be meant (whitespace, control or non-ASCII characters, placeholders such as "null") and base URLs with
whitespace or an invalid port, and warns once per host when a key would travel over plain http to a host outside
the machine or the local network. Under DEBUG logging, httpx's and httpcore's log records are scrubbed of every
key in use (a server that echoes the key in a header would otherwise have it logged).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmclient._sanitize import api_key_problem, base_url_problem, is_public_host, scrub_transport_logs
from llmclient.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    LLMClientError,
    RedirectError,
    ResponseFormatError,
    StreamDecodeError,
    detached,
    error_from_response,
    loads,
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


@dataclass(frozen=True)
class Limits:
    """The most llmclient reads from a provider, so a hostile or broken server cannot exhaust memory.

    Raise them per provider: `Client(providers={"openai": {"limits": Limits(max_response_bytes=256 * 2**20)}})`.

    Args:
        max_response_bytes: One response body (a chat completion, a batch of embeddings, an error page). Past it:
            `ResponseFormatError` (recorded in the ledger when the status was 2xx: the call was billed).
        max_event_bytes: One line or server-sent event of a stream. Past it: `StreamDecodeError`.
    """

    max_response_bytes: int = 64 * 2**20
    max_event_bytes: int = 8 * 2**20


class InsecureURLWarning(UserWarning):
    """An API key would be sent over plain http to a host outside this machine and its local network."""


_WARNED_HOSTS: set[str] = set()


def check_api_key(secret: str, *, provider: str) -> str:
    """`secret` if it can be an API key, else `ConfigurationError` (which never shows the value)."""
    problem = api_key_problem(secret)
    if problem:
        raise ConfigurationError(f"the API key for {provider} {problem}; check what sets it", provider=provider)
    return secret


def check_base_url(url: str, *, provider: str, sends_key: bool) -> None:
    """Refuse a base URL with whitespace or an invalid port (`ConfigurationError`); warn once per host when a key
    would go over plain http to a public host."""
    problem = base_url_problem(url)
    if problem:
        raise ConfigurationError(f"base_url for {provider} {problem}", provider=provider)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" and sends_key and is_public_host(host) and host not in _WARNED_HOSTS:
        _WARNED_HOSTS.add(host)
        warnings.warn(
            f"the {provider} API key goes over plain http to {host}; use https:// unless the network is trusted",
            InsecureURLWarning,
            stacklevel=4,
        )


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
        limits: Limits | None = None,
    ) -> None:
        global httpx
        import httpx

        timeouts = timeouts or Timeouts()
        self.provider = provider
        self.limits = limits or Limits()
        # `refine` may turn an error answer into any llmclient error (a 400 that says a model lacks tools is an
        # unsupported capability, not a bad request); `refine_connect` adds a provider's hint to a refused connection.
        self._refine = refine
        self._refine_connect = refine_connect
        self._urls: dict[str, httpx.URL] = {}
        self._secrets = tuple(check_api_key(secret, provider=provider) for secret in secrets if secret)
        check_base_url(base_url, provider=provider, sends_key=bool(self._secrets))
        scrub_transport_logs(self._secrets)
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

    async def post_json(self, path: str, body: dict[str, Any], *, model: str | None) -> tuple[Any, str | None]:
        """POST `body` as JSON; return the decoded JSON answer and the request id."""
        request = self._client.build_request("POST", self._url(path), content=_dumps(body), headers=_JSON_HEADERS)
        return await self._json(request, model)

    async def get_json(self, path: str, *, model: str | None = None) -> Any:
        """GET `path` and decode its JSON answer."""
        return (await self._json(self._client.build_request("GET", self._url(path)), model))[0]

    async def _json(self, request: httpx.Request, model: str | None) -> tuple[Any, str | None]:
        async with self._send(request, model) as response:
            content = await self._read(response, model)
        request_id = request_id_from(response.headers)
        return self.decode_json(content, model=model, request_id=request_id, status=response.status_code), request_id

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
            lines = iter_ndjson(self._bytes(response, model), max_line_bytes=self.limits.max_event_bytes)
            yield request_id_from(response.headers), self._guarded(lines, model)

    def _stream(
        self, path: str, body: dict[str, Any], headers: Mapping[str, str], model: str | None
    ) -> Any:  # an async context manager of the response
        request = self._client.build_request("POST", self._url(path), content=_dumps(body), headers=headers)
        return self._send(request, model)

    @asynccontextmanager
    async def _send(self, request: httpx.Request, model: str | None) -> AsyncIterator[httpx.Response]:
        """Send `request` (the body unread); an error status becomes its llmclient error, a redirect a
        `RedirectError` (never followed), and every transport failure an `APIConnectionError`."""
        try:
            response = await self._client.send(request, stream=True)
        except Exception as exc:
            failure: LLMClientError | None = self._translated(exc, model)
        else:
            failure = None
        if failure is not None:  # raised outside the `except`, so a foreign exception is not chained as context
            raise failure
        try:
            if response.status_code >= 300:
                content = await self._read(response, model)
                if response.status_code >= 400:
                    raise self._error(response, content, model)
                raise self._redirect(response, model)
            yield response
        finally:
            with suppress(Exception):  # closing a broken connection: nothing left to tell the caller
                await response.aclose()

    async def _read(self, response: httpx.Response, model: str | None) -> bytes:
        """The whole body, up to `limits.max_response_bytes` (else `ResponseFormatError`, status kept)."""
        limit = self.limits.max_response_bytes
        declared = response.headers.get("content-length", "")
        chunks: list[bytes] = []
        size = int(declared) if declared.isdigit() else 0
        failure: LLMClientError | None = None
        try:
            if size <= limit:
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        break
                    chunks.append(chunk)
        except Exception as exc:
            failure = self._translated(exc, model)
        if failure is not None:
            raise failure
        if size > limit:
            raise ResponseFormatError(
                f"{self.provider} sent a response body over the {limit:,} byte limit "
                "(raise it with Limits(max_response_bytes=...))",
                provider=self.provider,
                model=model,
                status=response.status_code,
                request_id=request_id_from(response.headers),
            )
        return b"".join(chunks)

    def _redirect(self, response: httpx.Response, model: str | None) -> RedirectError:
        location = response.headers.get("location") or ""
        try:
            target = urlsplit(location).hostname or ""
        except ValueError:
            target = ""
        where = f"to host {target!r}" if target else "without a usable location"
        return RedirectError(
            f"{self.provider} answered with a redirect {where}, which is never followed (the API key would go "
            "with it); set base_url to the new address if you trust it",
            provider=self.provider,
            model=model,
            status=response.status_code,
            request_id=request_id_from(response.headers),
            location=self.redact(location)[:500] or None,
        )

    async def _lines(self, response: httpx.Response, model: str | None) -> AsyncIterator[str]:
        from httpx._decoders import LineDecoder  # httpx's own splitting, as `aiter_lines` does, bounded here

        decoder, pending, limit = LineDecoder(), 0, self.limits.max_event_bytes
        texts = response.aiter_text()
        while True:
            try:
                text = await texts.__anext__()
            except StopAsyncIteration:
                break
            except Exception as exc:
                failure: LLMClientError | None = self._translated(exc, model)
            else:
                failure = None
            if failure is not None:  # raised outside the `except`: a foreign exception is not kept as context
                raise failure
            lines = decoder.decode(text)
            pending = pending + len(text) if not lines else sum(map(len, decoder.buffer))
            if pending > limit or any(len(line) > limit for line in lines):
                raise self._too_long(model)
            for line in lines:
                yield line
        for line in decoder.flush():
            yield line

    async def _bytes(self, response: httpx.Response, model: str | None) -> AsyncIterator[bytes]:
        chunks = response.aiter_bytes()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                failure: LLMClientError | None = self._translated(exc, model)
            else:
                failure = None
            if failure is not None:  # raised outside the `except`: a foreign exception is not kept as context
                raise failure
            yield chunk

    async def _guarded(self, lines: AsyncIterator[bytes], model: str | None) -> AsyncIterator[bytes]:
        try:
            async for line in lines:
                yield line
        except ValueError:  # `iter_ndjson`'s line limit
            raise detached(self._too_long(model)) from None

    def _too_long(self, model: str | None) -> StreamDecodeError:
        return StreamDecodeError(
            f"{self.provider} sent a stream line or event over the {self.limits.max_event_bytes:,} byte limit "
            "(raise it with Limits(max_event_bytes=...))",
            provider=self.provider,
            model=model,
        )

    def _translated(self, exc: Exception, model: str | None) -> LLMClientError:
        """The llmclient error for a failure while sending or reading; raise it outside the `except` block.

        An httpx error is chained as the cause (its text redacted). A custom transport's own exception, or any
        other, may hold the key or a body in its text, arguments or attributes: it is summarised, redacted, and
        not chained at all.
        """
        if isinstance(exc, LLMClientError):
            return exc
        if isinstance(exc, httpx.HTTPError):
            error = self._translate(exc, model)
            error.__cause__ = exc
            return error
        detail = self.redact(str(exc))[:200]
        return detached(
            APIConnectionError(
                f"{self.provider}: the transport failed ({type(exc).__name__}: {detail})",
                provider=self.provider,
                model=model,
                retryable=False,
            )
        )

    def redact(self, text: str) -> str:
        """`text` without this client's API key or anything shaped like one."""
        return redact(text, self._secrets)

    def decode_json(
        self, content: bytes, *, model: str | None, request_id: str | None = None, status: int | None = None
    ) -> Any:
        """Decode a JSON body, or raise `ResponseFormatError` with a bounded, redacted excerpt.

        The decoder's own exception is not chained: a `JSONDecodeError` holds the whole body.
        """
        try:
            return loads(content)
        except ValueError as exc:
            excerpt = redact(content[:200].decode("utf-8", errors="replace"), self._secrets)
            what = "an empty body" if not content.strip() else f"a body that is not JSON ({exc}): {excerpt!r}"
            error = ResponseFormatError(
                f"{self.provider} returned {what}",
                provider=self.provider,
                model=model,
                request_id=request_id,
                status=status,
            )
        raise detached(error)

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
            # A connect or pool timeout: the request never left. Otherwise the provider may have received it.
            unsent = isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            return APITimeoutError(
                f"{self.provider}: {kind} timeout ({detail})",
                provider=self.provider,
                model=model,
                request_sent=False if unsent else None,
            )
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
    """The request body as JSON; what cannot be sent (a lone surrogate, a value JSON has no form for, a cycle or
    nesting too deep) is `InvalidRequestError`, before anything is sent."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError as exc:
        problem = f"text that is not valid Unicode (a lone surrogate at position {exc.start})"
    except (TypeError, ValueError, RecursionError) as exc:
        problem = f"a value JSON cannot carry ({type(exc).__name__})"
    # Not chained: the encoder's exception holds the whole request, prompt included.
    raise detached(InvalidRequestError(f"the request holds {problem}; fix the input before sending"))


async def iter_sse(lines: AsyncIterator[str], *, max_event_chars: int | None = None) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events from decoded lines, as `(event, data)`; comments and keep-alive lines are skipped.

    Follows the WHATWG event-stream rules that matter for LLM APIs: `data:` lines of one event join with
    newlines, a blank line ends an event, `:` starts a comment, and an event cut off by the end of the stream is
    still delivered. An event whose data grows past `max_event_chars` (the default limit when None) raises
    `StreamDecodeError`.
    """
    limit = Limits.max_event_bytes if max_event_chars is None else max_event_chars
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


async def iter_ndjson(chunks: AsyncIterator[bytes], *, max_line_bytes: int | None = None) -> AsyncIterator[bytes]:
    """The lines of an NDJSON body as bytes, from chunks cut anywhere; blank lines are skipped.

    Lines are split at `\\n` only, a byte that never occurs inside a multi-byte UTF-8 sequence, so a chunk that ends
    mid-line or mid-character is safe and each line decodes whole (`json.loads` takes bytes; a trailing `\\r` is
    whitespace to it). A last line without its newline is still delivered. Work is linear in the body size however
    small the chunks are. A line longer than `max_line_bytes` (the default limit when None) raises `ValueError`.
    """
    limit = Limits.max_event_bytes if max_line_bytes is None else max_line_bytes
    parts: list[bytes] = []
    pending = 0
    async for chunk in chunks:
        if b"\n" not in chunk:
            if chunk:
                parts.append(chunk)
                pending += len(chunk)
                if pending > limit:
                    raise ValueError(f"an NDJSON line over the {limit:,} byte limit")
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
            raise ValueError(f"an NDJSON line over the {limit:,} byte limit")
        for line in lines:
            if line.strip():
                yield line
    if parts:
        line = b"".join(parts)
        if line.strip():
            yield line
