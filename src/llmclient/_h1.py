"""The default HTTP backend of `HTTPClient`: llmclient's own HTTP/1.1 keep-alive pool over asyncio.

A provider call is one small POST to one origin, answered by JSON or an event stream. For that, a general client's
machinery (request and response models, cookie jars, a task and timers per request) costs more CPU than the exchange
itself (BENCHMARKS.md). Here a request is one `transport.write`, `httptools` (llhttp, Node.js's parser) parses the
answer as it arrives, and the waiting task is woken once when it is complete.

It keeps: keep-alive (`HTTPOptions.keepalive_expiry`), `max_connections` with waits bounded by `Timeouts.pool`,
connect and read timeouts (`Timeouts.read` between two reads), TLS as `HTTPOptions.verify` says, chunked,
length- and close-delimited bodies, and connections dropped (never reused) after an error, a cancellation or a
stream left early. It asks for `identity` (LLM answers are small) and still undoes gzip or deflate within the size
limits. It leaves out proxies (a proxied client sends through aiohttp), redirects (never followed) and HTTP/2.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools

from llmclient._framing import inflate, inflate_stream
from llmclient._http_options import Answer
from llmclient.errors import LLMClientError, ResponseFormatError, request_id_from

if TYPE_CHECKING:
    import ssl

    from llmclient._http import FailureKind, HTTPClient

_PAUSE_AT = 1 << 20
"""Buffered body bytes at which reading pauses until the consumer catches up (a slow stream reader)."""


class _Failed(Exception):
    """Why an exchange got no (complete) answer; turned into an llmclient error by `H1Backend._failure`."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time; the parser's callbacks fill the current answer."""

    def __init__(self, backend: H1Backend) -> None:
        self._backend = backend
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.active = False  # an exchange is in flight: bytes that arrive while idle break the connection
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.head_done = False
        self.complete = False
        self.error: _Failed | None = None
        self.keep_alive = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active:  # nothing was asked: a broken or hostile server
            self.close()
            return
        self._last_read = self._backend.loop_time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail("connection", f"the answer is not valid HTTP/1.1 ({type(exc).__name__})")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and not self.complete and self.error is None and self._reads_until_close():
            self.complete = True  # a body delimited by the end of the connection
            self._wake()
        elif not self.complete:
            self._fail("connection", "the server closed the connection" + (f" ({exc})" if exc else ""))
        self._backend.lost(self)

    # -- httptools callbacks ---------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:  # a second answer to one request: never reused
            self.keep_alive = False
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self._parser.get_status_code()
        if status < 200:  # an informational answer (103 Early Hints): the real one follows
            self.headers = {}
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        self.head_done = True
        self._wake()

    def on_body(self, data: bytes) -> None:
        if self.error is not None or self.complete:
            return
        self.body.append(data)
        self.buffered += len(data)
        if self.buffered > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:  # the end of an informational answer
            return
        if self.complete:
            self.keep_alive = False
            return
        self.complete = True
        self._wake()

    # -- the exchange ----------------------------------------------------------------------------------------

    def _reads_until_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    def _fail(self, kind: FailureKind, detail: str) -> None:
        if self.error is None and not self.complete:
            self.error = _Failed(kind, detail)
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def send(self, data: bytes, read_timeout: float | None) -> None:
        """Write one request; the answer is read into this connection's state."""
        self._reset()
        self.active = True
        assert self.transport is not None
        self.transport.write(data)
        if read_timeout is not None:
            loop = self._backend.loop
            assert loop is not None
            self._last_read = loop.time()
            self._timer = loop.call_at(self._last_read + read_timeout, self._check_read, read_timeout)

    def _check_read(self, read_timeout: float) -> None:
        self._timer = None
        if self.complete or self.error is not None:
            return
        loop = self._backend.loop
        assert loop is not None
        due = self._last_read + read_timeout
        if self._paused or due > loop.time():  # data came in since (or the reader is behind): not the server's fault
            self._timer = loop.call_at(max(due, loop.time() + 0.001), self._check_read, read_timeout)
            return
        self._fail("read timeout", f"no data for {read_timeout:g} s")
        self.close()

    async def wait(self) -> None:
        """Until something new arrived (the head, body bytes, the end or an error)."""
        if self.error is not None:
            raise self.error
        self._waiter = waiter = self._backend.loop.create_future()  # type: ignore[union-attr]
        try:
            await waiter
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        """The body bytes buffered so far (reading resumes if it had paused)."""
        body, self.body, self.buffered = self.body, deque(), 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return b"".join(body) if len(body) != 1 else body[0]

    def finished(self) -> bool:
        """Whether the exchange ended with the connection fit for the next one."""
        self.active = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return self.complete and self.keep_alive and self.error is None and not self.closed

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class H1Backend:
    """One keep-alive pool to a provider's origin for one `HTTPClient`, bound to the event loop that first uses it
    (a client reused on a new loop starts a new pool: the old loop's sockets cannot serve it)."""

    def __init__(self, owner: HTTPClient) -> None:
        self._owner = owner
        parts = urlsplit(owner.base_url)
        self._secure = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._secure else 80)
        self._prefix = parts.path.rstrip("/")
        options, timeouts = owner.options, owner.timeouts
        self._limit = options.max_connections or 0
        self._keepalive = options.keepalive_expiry
        self._connect_s = _seconds(timeouts.connect)
        self._read_s = _seconds(timeouts.read)
        self._pool_s = _seconds(timeouts.read if timeouts.pool is None else timeouts.pool)
        fixed = {"host": parts.netloc, "accept-encoding": "identity", "connection": "keep-alive"}
        if self._keepalive <= 0:
            fixed["connection"] = "close"
        self._fixed = {**fixed, **{k.lower(): v for k, v in owner.headers.items()}}
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
        self._ssl: ssl.SSLContext | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_time: Callable[[], float] = time.monotonic  # the bound loop's clock, read on every data_received
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    # -- the pool --------------------------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            for connection in self._idle:  # the old loop's: closed without it (it may be closed itself)
                _abandon(connection)
            self._idle, self._open, self._waiters = [], 0, deque()
            self.loop, self.loop_time = loop, loop.time
        return loop

    async def _acquire(self) -> _Connection:
        loop = self._bind()
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed and loop.time() - connection.idle_since < self._keepalive:
                    return connection
                self._drop(connection)
            if not self._limit or self._open < self._limit:
                break
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, self._pool_s)
            except asyncio.TimeoutError:
                raise _Failed("pool timeout", f"no free connection within {self._pool_s:g} s") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._open += 1
        try:
            return await self._connect(loop)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        secure: ssl.SSLContext | None = None
        if self._secure:
            secure = self._ssl = self._ssl or _context(self._owner.options.ssl_context())
        opening = loop.create_connection(
            lambda: _Connection(self),
            self._host,
            self._port,
            ssl=secure,
            server_hostname=self._host if secure is not None else None,
        )
        try:
            _, connection = await asyncio.wait_for(opening, self._connect_s)
        except asyncio.TimeoutError:
            raise _Failed("connect timeout", f"no connection within {self._connect_s:g} s") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise _Failed("connect", f"{type(exc).__name__}: {exc}") from None
        return connection

    def _release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and self._keepalive > 0 and self.loop is asyncio.get_running_loop():
            connection.idle_since = self.loop.time()
            self._idle.append(connection)
        else:
            self._drop(connection)
        self._wake_one()

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._open = max(0, self._open - 1)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def lost(self, connection: _Connection) -> None:
        """A connection closed by the server while idle leaves the pool at once."""
        if connection in self._idle:
            self._idle.remove(connection)
            self._open = max(0, self._open - 1)
            self._wake_one()

    # -- requests --------------------------------------------------------------------------------------------

    def _request_bytes(self, method: str, path: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        key = (method, path, tuple(headers.items()))
        head = self._heads.get(key)
        if head is None:
            merged = {**self._fixed, **{k.lower(): v for k, v in headers.items()}}
            target = self._prefix + "/" + path.lstrip("/")
            lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in merged.items())]
            head = self._heads[key] = "\r\n".join(lines) + "\r\ncontent-length: "
        size = 0 if body is None else len(body)
        start = f"{head}{size}\r\n\r\n".encode("latin-1")
        return start if not body else start + body

    async def _exchange(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> _Connection:
        """Send a request and return its connection once the answer's head has arrived."""
        data = self._request_bytes(method, path, headers, body)
        connection = await self._acquire()
        try:
            connection.send(data, self._read_s)
            while not connection.head_done:
                await connection.wait()
        except BaseException:
            self._release(connection, False)
            raise
        return connection

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], model: str | None
    ) -> Answer:
        """Send one request and read its whole answer, up to `Limits.max_response_bytes`."""
        try:
            connection = await self._exchange(method, path, body, headers)
        except _Failed as exc:
            raise self._failure(exc, model) from None
        reusable = False
        try:
            content = await self._rest(connection, model)
            reusable = connection.finished()
        finally:
            self._release(connection, reusable)
        return Answer(connection.status, connection.headers, content)

    @asynccontextmanager
    async def stream(
        self, path: str, body: bytes, headers: Mapping[str, str], model: str | None
    ) -> AsyncIterator[_Connection]:
        """POST and yield the connection once the answer's head has arrived; an error answer is read and raised."""
        try:
            connection = await self._exchange("POST", path, body, headers)
        except _Failed as exc:
            raise self._failure(exc, model) from None
        reusable = False
        try:
            if connection.status >= 300:  # an error answer, or a redirect (never followed: the key would go along)
                content = await self._rest(connection, model)
                self._owner.check_status(Answer(connection.status, connection.headers, content), content, model)
            yield connection
            reusable = connection.finished()
        finally:
            self._release(connection, reusable)

    async def _rest(self, connection: _Connection, model: str | None) -> bytes:
        """The rest of an answer whose head has arrived, decoded, up to `Limits.max_response_bytes`."""
        content = await self._raw_rest(connection, model)
        encoding = connection.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "identity":
            return content
        try:
            plain = inflate(content, encoding, self._owner.limits.max_response_bytes)
        except ValueError:
            raise self._undecodable(connection, encoding, model) from None
        if plain is None:
            raise self._owner.too_large(Answer(connection.status, connection.headers, b""), model)
        return plain

    def _undecodable(self, connection: _Connection, encoding: str, model: str | None) -> ResponseFormatError:
        return ResponseFormatError(
            f"{self._owner.provider} sent an answer encoded as {encoding[:40]!r} that could not be decoded",
            provider=self._owner.provider,
            model=model,
            status=connection.status,  # a 2xx was billed: recorded though unusable
            request_id=request_id_from(connection.headers),
        )

    async def _raw_rest(self, connection: _Connection, model: str | None) -> bytes:
        limit = self._owner.limits.max_response_bytes
        declared = connection.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._owner.too_large(Answer(connection.status, connection.headers, b""), model)
        pieces: list[bytes] = []
        size = 0
        try:
            while True:
                if connection.buffered:
                    piece = connection.take()
                    size += len(piece)
                    if size > limit:
                        raise self._owner.too_large(Answer(connection.status, connection.headers, b""), model)
                    pieces.append(piece)
                elif connection.complete:
                    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
                else:
                    await connection.wait()
        except _Failed as exc:
            raise self._failure(exc, model) from None

    async def chunks(self, connection: _Connection, model: str | None) -> AsyncIterator[bytes]:
        """The body as it arrives, in chunks cut anywhere (a gzip or deflate stream inflated a piece at a time)."""
        encoding = connection.headers.get("content-encoding", "identity").strip().lower()
        pieces = self._raw_chunks(connection, model)
        if encoding != "identity":
            pieces = inflate_stream(pieces, encoding, self._owner.limits.max_event_bytes)
        try:
            async for piece in pieces:
                yield piece
        except ValueError:
            raise self._undecodable(connection, encoding, model) from None

    async def _raw_chunks(self, connection: _Connection, model: str | None) -> AsyncIterator[bytes]:
        while True:
            if connection.buffered:
                yield connection.take()
                continue
            if connection.complete:
                return
            try:
                await connection.wait()
            except _Failed as exc:
                raise self._failure(exc, model) from None

    def _failure(self, exc: _Failed, model: str | None) -> LLMClientError:
        return self._owner.failure(exc.kind, exc, model)

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their exchange ends."""
        idle, self._idle = self._idle, []
        for connection in idle:
            if self.loop is not None and not self.loop.is_closed():
                connection.close()
            else:
                _abandon(connection)
        self._open = 0
        self.loop = None


def _seconds(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def _context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The TLS context to connect with: the one given, or for `verify=False` one that checks nothing."""
    import ssl

    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _abandon(connection: _Connection) -> None:
    """Close a connection of a loop that may be closed (its transport can no longer schedule its own closing)."""
    connection.closed = True
    transport: Any = connection.transport
    sock = getattr(transport, "_sock", None)  # asyncio's selector transports: the socket itself
    if sock is not None:
        sock.close()
        transport._sock = None  # closed here: its finaliser has nothing left to warn about
