"""The aiohttp backend of `HTTPClient` (behind a proxy, or `HTTPOptions(backend="aiohttp")`), the only module that
imports aiohttp.

Per call, aiohttp's client spends about a third of the CPU time of httpx's (its HTTP parser and multidicts are
compiled; httpx builds a Request and a Response object model in pure Python on top of httpcore). `HTTPClient` keeps
the shared logic (request ids, error answers, JSON decoding, SSE and NDJSON framing); this module only sends, reads
and turns aiohttp's exceptions into llmclient errors through `HTTPClient.failure`.

aiohttp reuses a kept-alive connection as long as its event loop has not seen it close, and sends a POST only
once. A server that closes right after an answer, or times out an idle connection while the loop is busy, then
fails the next call though the request never started there. So a request met on a kept-alive connection (aiohttp's
tracing says which) by a close before its answer began is sent again, as the native backend does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from llmclient.errors import LLMClientError
from llmclient.http.loop_end import on_loop_end
from llmclient.http.options import Answer
from llmclient.http.options import finite_seconds as _seconds

if TYPE_CHECKING:
    from llmclient.http.client import HTTPClient
    from llmclient.http.failures import FailureKind


class AiohttpBackend:
    """One aiohttp session for one `HTTPClient`, created on the first request (aiohttp binds it to that loop)."""

    def __init__(self, owner: HTTPClient) -> None:
        self._owner = owner
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: AsyncGenerator[None, None] | None = None  # closes the session at the end of its loop
        self._urls: dict[str, URL] = {}  # per path: the few a driver sends to (one per model at most)
        options = owner.options
        self._proxy = options.proxy_for(owner.base_url)  # the environment is read once, as httpx does
        # Each try that meets a closed kept-alive connection drops it: past the most that can be idle, a new one.
        self._tries = (options.max_connections or options.max_idle_connections) + 1
        timeouts = owner.timeouts
        read = _seconds(timeouts.read)
        pool = _seconds(timeouts.read if timeouts.pool is None else timeouts.pool)
        connect = _seconds(timeouts.connect)
        self._timeout = aiohttp.ClientTimeout(
            total=None,  # the call's deadline is the pipeline's, around retries and the whole stream
            # aiohttp's `connect` covers waiting for a free connection and opening one (so `pool` bounds both);
            # `sock_connect` bounds the opening alone.
            connect=pool,
            sock_connect=connect,
            sock_read=read,
        )

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and self._loop is loop:
            return session
        # First use, or a client reused on a new event loop (a second asyncio.run): the old loop's connections
        # cannot serve this one, so a new session starts (the old one's sockets belong to the old loop).
        options = self._owner.options
        keep_alive = options.keepalive_expiry > 0
        # TLS set-up (certifi's bundle: about 10 ms) only for https, or an https proxy.
        secure = self._owner.base_url.startswith("https:") or (self._proxy or "").startswith("https:")
        connector = aiohttp.TCPConnector(
            limit=options.max_connections or 0,
            force_close=not keep_alive,
            # aiohttp closes idle connections at its sweeps, one such period apart: at half the expiry, none stays
            # idle longer than the expiry (a server counts idle connections against its own limit).
            keepalive_timeout=options.keepalive_expiry / 2 if keep_alive else None,
            ssl=options.ssl_context() if secure else True,
        )
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_reuseconn.append(_reused)
        self._session = session = aiohttp.ClientSession(
            connector=connector,
            headers=self._owner.headers,
            timeout=self._timeout,
            # The proxy was resolved above; trust_env here would re-read the environment and ~/.netrc every request.
            trust_env=False,
            trace_configs=[tracing],
        )
        self._loop = loop
        self._watcher = on_loop_end(partial(self._close_at_end_of, loop))
        return session

    async def _close_at_end_of(self, loop: asyncio.AbstractEventLoop) -> None:
        """`loop` is ending: close its session there, so that no socket outlives it (`http.loop_end`)."""
        if self._loop is loop:
            await self.aclose()

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._owner.base_url.rstrip("/") + "/" + path.lstrip("/"))
        return url

    async def _send(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], model: str | None
    ) -> aiohttp.ClientResponse:
        """Send a request and return the response once its head has arrived; sent again while it meets kept-alive
        connections closed before answering."""
        session = self._open()
        for _ in range(self._tries):
            sent = SimpleNamespace(reused=False)
            try:
                return await session.request(
                    method,
                    self._url(path),
                    data=body,
                    headers=headers,
                    proxy=self._proxy,
                    allow_redirects=False,
                    trace_request_ctx=sent,
                )
            except aiohttp.ClientError as exc:
                if not (sent.reused and _closed_unanswered(exc)):
                    raise self._failure(exc, model) from exc
                last = exc
        raise self._failure(last, model) from last

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], model: str | None
    ) -> Answer:
        """Send one request and read its whole answer, up to `Limits.max_response_bytes`."""
        failure: LLMClientError | None = None
        try:
            async with await self._send(method, path, body, headers, model) as response:
                content = await self._read(response, model)
        except aiohttp.ClientError as exc:
            raise self._failure(exc, model) from exc
        except LLMClientError:
            raise
        except Exception as exc:  # anything else may hold the key or a body: summarised, never chained
            failure = self._owner.foreign(exc, model)
        if failure is not None:
            raise failure
        return Answer(response.status, response.headers, content)

    async def _read(self, response: aiohttp.ClientResponse, model: str | None) -> bytes:
        limit = self._owner.limits.max_response_bytes
        answer = Answer(response.status, response.headers, b"")
        if response.content_length is not None and response.content_length > limit:
            raise self._owner.too_large(answer, model)
        chunks, size = [], 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise self._owner.too_large(answer, model)
            chunks.append(chunk)
        return b"".join(chunks)

    @asynccontextmanager
    async def stream(
        self, path: str, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST and yield the response once its head has arrived; an error answer is read and raised instead."""
        response = await self._send("POST", path, body, headers, model)
        try:
            if response.status >= 300:  # an error answer, or a redirect (never followed: the key would go along)
                try:
                    content = await self._read(response, model)
                except aiohttp.ClientError as exc:
                    raise self._failure(exc, model) from exc
                self._owner.check_status(Answer(response.status, response.headers, content), content, model)
            yield response
        finally:
            response.release()

    async def chunks(self, response: aiohttp.ClientResponse, model: str | None) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, in chunks cut anywhere."""
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise self._failure(exc, model) from exc

    def _failure(self, exc: aiohttp.ClientError, model: str | None) -> LLMClientError:
        kind: FailureKind
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            kind = "connect timeout"
        elif isinstance(exc, aiohttp.ServerTimeoutError):
            kind = "read timeout"
        elif isinstance(exc, aiohttp.ClientConnectorError):
            kind = "connect"
        else:
            kind = "connection"
        return self._owner.failure(kind, exc, model)

    async def aclose(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _reused(session: aiohttp.ClientSession, context: SimpleNamespace, params: Any) -> None:
    context.trace_request_ctx.reused = True  # the request goes over a kept-alive connection


def _closed_unanswered(exc: aiohttp.ClientError) -> bool:
    """Whether the connection closed before the answer began (a reset while writing the request, or the server
    gone before the status line), not a timeout or a refused connection."""
    closed = (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError, aiohttp.ClientOSError)
    refused = (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError)
    return isinstance(exc, closed) and not isinstance(exc, refused)
