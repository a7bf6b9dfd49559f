"""The HTTP client every HTTP driver sends through: the only module that imports httpx
(`backends/aiohttp_backend.py` is the only one that imports aiohttp). Public as `llmclient.http.HTTPClient`.

`HTTPClient` sends a driver's requests over one of three backends. By default it is llmclient's own HTTP/1.1
keep-alive pool (`backends/native.py`), whose per-call CPU cost is well under aiohttp's and a fraction of httpx's;
a proxy (given or from the environment) or `HTTPOptions(backend="aiohttp")` selects aiohttp
(`backends/aiohttp_backend.py`); `transport=` (any `httpx.AsyncBaseTransport`, e.g. `httpx.MockTransport`),
`HTTPOptions(backend="httpx")`, or a started `respx` mock select httpx, so the test seams keep working. All take the
same `Timeouts` and `HTTPOptions` (proxy, environment, TLS verification, connection limits, keep-alive), and the
same `Limits`. Whatever the server or the transport does, only llmclient errors leave this module (or a
cancellation): every transport and JSON failure is translated here (with `failures.py`), once, and every error
answer goes through `llmclient.errors.error_from_response` (with the driver's own error names, `error_codes=`).

What it reads is bounded (`Limits`): a response body, and one stream line or event (split by `framing`). It
refuses API keys that could not be meant (whitespace, control or non-ASCII characters, placeholders such as
"null") and base URLs with whitespace or an invalid port, warns once per host when a key would travel over plain
http to a host outside the machine or the local network, and answers a redirect with `RedirectError` instead of
following it (the key would go along). Under DEBUG logging, httpx's and httpcore's records are scrubbed of keys.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from llmclient._sanitize import scrub_transport_logs
from llmclient.errors import (
    APIConnectionError,
    APIError,
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
from llmclient.http.failures import FailureKind, encode_body, no_answer
from llmclient.http.framing import iter_lines, iter_ndjson, iter_sse
from llmclient.http.options import (
    HTTPOptions,
    Limits,
    Timeouts,
    check_api_key,
    check_base_url,
    check_headers,
    fast_backend,
    httpx_mocked,
)

if TYPE_CHECKING:
    import httpx

    from llmclient.http.backends.aiohttp_backend import AiohttpBackend
    from llmclient.http.backends.native import H1Backend

    Transport = httpx.AsyncBaseTransport
else:
    Transport = Any  # httpx is imported when the first HTTP driver is built, keeping `import llmclient` light

_USER_AGENT = "llmclient/0.1"
Frame = TypeVar("Frame", str, bytes)  # a decoded line, or an NDJSON line as bytes

RATE_LIMIT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
"""The rate-limit headers `post_json(rate_limits=...)` collects: OpenAI's (and compatible servers') `x-ratelimit-*`
and Anthropic's `anthropic-ratelimit-*` (https://platform.claude.com/docs/en/api/rate-limits#response-headers)."""


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
        limits: The most read of one response body and of one stream line or event.
        refine: Turns an error answer into a more specific llmclient error.
        refine_connect: Adds a provider's hint to a refused connection.
        error_codes: The provider's own error names (type, code or reason in its error body) and the llmclient
            error each means, deciding before the status does (`{"overloaded_error": ServerError}`).

    ```python
    from llmclient.http import HTTPClient

    client = HTTPClient(provider="acme", base_url="https://api.acme.example/v1", headers={"x-api-key": "k-123456"})
    assert client.headers["x-api-key"] == "k-123456"
    await client.aclose()
    ```
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
        limits: Limits | None = None,
        error_codes: Mapping[str, type[APIError]] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url
        self.timeouts = timeouts or Timeouts()
        self.options = HTTPOptions.from_value(options)
        self.limits = limits or Limits()
        # `refine` may turn an error answer into any llmclient error (a 400 saying a model lacks tools: unsupported).
        self._refine = refine
        self._refine_connect = refine_connect
        self._error_codes = error_codes
        self._urls: dict[str, httpx.URL] = {}  # per path: the few a driver sends to (one per model at most)
        self._secrets = tuple(check_api_key(secret, provider=provider) for secret in secrets if secret)
        self.headers = check_headers({"user-agent": _USER_AGENT, **headers}, provider=provider)  # after the key's
        check_base_url(base_url, provider=provider, sends_key=bool(self._secrets))
        scrub_transport_logs(self._secrets)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._fast = None if transport is not None else fast_backend(self)
        if self._fast is None:
            self._httpx()  # built now, so a bad option fails where the driver is configured

    def _backend(self) -> H1Backend | AiohttpBackend | None:
        """The native or aiohttp backend, or None to send through httpx."""
        backend = self._fast
        return None if backend is None or httpx_mocked() else backend

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
                max_keepalive_connections=min(20, options.max_idle_connections, options.max_connections or 20)
                if options.keepalive_expiry
                else 0,
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
        receives the answer's rate-limit headers (`RATE_LIMIT_PREFIXES`)."""
        return await self._json("POST", path, encode_body(body), _JSON_HEADERS, model, rate_limits)

    async def get_json(self, path: str, *, model: str | None = None) -> Any:
        """GET `path` and decode its JSON answer."""
        return (await self._json("GET", path, None, _GET_HEADERS, model))[0]

    async def _json(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        model: str | None,
        rate_limits: dict[str, str] | None = None,
    ) -> tuple[Any, str | None]:
        backend = self._backend()
        response: Any
        if backend is not None:
            response = await backend.request(method, path, body, headers, model)
            content = response.content
            self.check_status(response, content, model)
        else:
            client = self._httpx()
            request = client.build_request(method, self._url(path), content=body, headers=headers)
            async with self._send(request, model) as response:
                content = await self._read(response, model)
        request_id = request_id_from(response.headers, self._secrets)
        if rate_limits is not None:
            found = ((k.lower(), v) for k, v in response.headers.items())  # aiohttp keeps the server's case
            rate_limits.update((k, self.redact(v)) for k, v in found if k.startswith(RATE_LIMIT_PREFIXES))
        return self.decode_json(content, model=model, request_id=request_id, status=response.status_code), request_id

    def stream_lines(
        self, path: str, body: dict[str, Any], *, model: str | None
    ) -> AbstractAsyncContextManager[tuple[str | None, AsyncIterator[str]]]:
        """POST `body` and yield the request id and an iterator over the answer's lines (decoded, unsplit)."""
        return self._framed(path, body, _STREAM_HEADERS, iter_lines, model)

    @asynccontextmanager
    async def stream_sse(
        self, path: str, body: dict[str, Any], *, model: str | None
    ) -> AsyncIterator[tuple[str | None, AsyncIterator[tuple[str, str]]]]:
        """POST `body` and yield the request id and an iterator over the answer's server-sent events as
        `(event, data)` (see `llmclient.http.iter_sse`), each within `limits.max_event_bytes`."""
        async with self.stream_lines(path, body, model=model) as (request_id, lines):
            events = iter_sse(lines, max_event_chars=self.limits.max_event_bytes)
            try:
                yield request_id, events
            finally:  # a reader that stops at its own end marker leaves it suspended: closed now, not by the GC
                await events.aclose()

    def stream_ndjson(
        self, path: str, body: dict[str, Any], *, model: str | None
    ) -> AbstractAsyncContextManager[tuple[str | None, AsyncIterator[bytes]]]:
        """POST `body` and yield the request id and an iterator over the answer's NDJSON lines (see `iter_ndjson`)."""
        return self._framed(path, body, _NDJSON_HEADERS, iter_ndjson, model)

    @asynccontextmanager
    async def _framed(
        self,
        path: str,
        body: dict[str, Any],
        headers: Mapping[str, str],
        frame: Callable[..., AsyncGenerator[Frame, None]],
        model: str | None,
    ) -> AsyncIterator[tuple[str | None, AsyncIterator[Frame]]]:
        """A streamed answer over either backend, split by `frame` within `limits.max_event_bytes`."""
        backend = self._backend()
        if backend is not None:
            opened: AbstractAsyncContextManager[Any] = backend.stream(path, encode_body(body), headers, model)
        else:
            request = self._httpx().build_request("POST", self._url(path), content=encode_body(body), headers=headers)
            opened = self._send(request, model)
        async with opened as response:
            pieces = self._bytes(response, model) if backend is None else backend.chunks(response, model)
            frames = frame(pieces, max_line_bytes=self.limits.max_event_bytes)
            guarded = self._guarded(frames, model)
            try:
                yield request_id_from(response.headers, self._secrets), guarded
            finally:  # outermost first: a reader stopped at its end marker (`[DONE]`) leaves them suspended, and
                # the event loop would otherwise close each in a task of its own when it is collected
                for generator in (guarded, frames, pieces):
                    await generator.aclose()

    @asynccontextmanager
    async def _send(self, request: httpx.Request, model: str | None) -> AsyncIterator[httpx.Response]:
        """Send over httpx, the body unread; an error status becomes its llmclient error, a redirect a
        `RedirectError` (never followed), and every transport failure an `APIConnectionError`. A request met on a
        kept-alive connection by a close before its answer began is sent again, as the other backends do (each try
        drops one such connection: at most as many as httpx keeps idle, then a new one)."""
        tries = min(20, self.options.max_idle_connections, self.options.max_connections or 20) + 1
        for attempt in range(tries):
            trace = request.extensions["trace"] = _Trace()
            try:
                response = await self._httpx().send(request, stream=True)
            except Exception as exc:
                if attempt + 1 < tries and trace.sent and not trace.opened and _closed_unanswered(exc):
                    continue
                failure: LLMClientError | None = self._translated(exc, model)
            else:
                failure = None
            break
        if failure is not None:  # raised outside the `except`, so a foreign exception is not chained as context
            raise failure
        try:
            if response.status_code >= 300:
                self.check_status(response, await self._read(response, model), model)
            yield response
        finally:
            with suppress(Exception):  # closing a broken connection: nothing left to tell the caller
                await response.aclose()

    def check_status(self, response: Any, content: bytes, model: str | None) -> None:
        """Raise the llmclient error of an error answer (>= 400), or `RedirectError` for a 3xx (never followed).

        `response`: an httpx.Response or the aiohttp backend's answer; both have `status_code` and `headers`.
        """
        if response.status_code >= 400:
            raise self._error(response, content, model)
        if response.status_code >= 300:
            location = response.headers.get("location") or ""
            try:
                target = urlsplit(location).hostname or ""
            except ValueError:
                target = ""
            where = f"to host {target!r}" if target else "without a usable location"
            raise RedirectError(
                f"{self.provider} answered with a redirect {where}, which is never followed (the API key would go "
                "with it); set base_url to the new address if you trust it",
                provider=self.provider,
                model=model,
                status=response.status_code,
                request_id=request_id_from(response.headers, self._secrets),
                location=self.redact(location)[:500] or None,
            )

    def too_large(self, response: Any, model: str | None) -> ResponseFormatError:
        """The error for a body over `limits.max_response_bytes` (the status is kept: a 2xx was billed)."""
        return ResponseFormatError(
            f"{self.provider} sent a response body over the {self.limits.max_response_bytes:,} byte limit "
            "(raise it with Limits(max_response_bytes=...))",
            provider=self.provider,
            model=model,
            status=response.status_code,
            request_id=request_id_from(response.headers, self._secrets),
        )

    async def _read(self, response: httpx.Response, model: str | None) -> bytes:
        """The whole body over httpx, up to `limits.max_response_bytes`."""
        limit = self.limits.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self.too_large(response, model)
        chunks, size = [], 0
        async for chunk in self._bytes(response, model):
            size += len(chunk)
            if size > limit:
                raise self.too_large(response, model)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _bytes(self, response: httpx.Response, model: str | None) -> AsyncGenerator[bytes, None]:
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

    async def _guarded(self, lines: AsyncIterator[Any], model: str | None) -> AsyncGenerator[Any, None]:
        try:
            async for line in lines:
                yield line
        except ValueError:  # the framing's line limit
            raise detached(
                StreamDecodeError(
                    f"{self.provider} sent a stream line or event over the {self.limits.max_event_bytes:,} byte "
                    "limit (raise it with Limits(max_event_bytes=...))",
                    provider=self.provider,
                    model=model,
                )
            ) from None

    def _translated(self, exc: Exception, model: str | None) -> LLMClientError:
        """The llmclient error for a failure while sending or reading over httpx; raise it outside the `except`.

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
        return self.foreign(exc, model)

    def foreign(self, exc: Exception, model: str | None) -> LLMClientError:
        """A transport's own (non-HTTP-library) exception, summarised and redacted, never chained."""
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

    def _error(self, response: Any, content: bytes, model: str | None) -> LLMClientError:
        # `response`: an httpx.Response or the aiohttp backend's answer; both have `status_code` and `headers`.
        error = error_from_response(
            response.status_code,
            content,
            response.headers,
            provider=self.provider,
            model=model,
            secrets=self._secrets,
            codes=self._error_codes,
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
        error = no_answer(kind, exc, provider=self.provider, base_url=self.base_url, model=model, secrets=self._secrets)
        if kind == "connect" and self._refine_connect and isinstance(error, APIConnectionError):
            return self._refine_connect(error)
        return error

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._fast is not None:
            await self._fast.aclose()
        if self._client is not None:
            await self._client.aclose()


class _Trace:
    """httpcore's `trace` extension, told each step of a request: whether it went over a kept-alive connection
    (its headers were sent without a connection being opened for it). Mocked transports tell it nothing."""

    def __init__(self) -> None:
        self.opened = self.sent = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.startswith("connection.connect_tcp"):
            self.opened = True
        elif event == "http11.send_request_headers.started":
            self.sent = True


def _closed_unanswered(exc: Exception) -> bool:
    """A reset while sending or reading, or a close before any byte of the answer (httpcore's words for it: it
    names no other case)."""
    closed = (
        isinstance(exc, httpx.RemoteProtocolError) and str(exc) == "Server disconnected without sending a response."
    )
    return closed or isinstance(exc, (httpx.ReadError, httpx.WriteError))


_GET_HEADERS = {"accept": "application/json"}
_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
_STREAM_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}
_NDJSON_HEADERS = {"content-type": "application/json", "accept": "application/x-ndjson"}
