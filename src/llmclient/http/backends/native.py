"""The default HTTP backend of `HTTPClient`: llmclient's own HTTP/1.1 keep-alive pool over asyncio.

A provider call is one small POST to one origin, answered by JSON or an event stream. For that, a general client's
machinery (request and response models, cookie jars, a task and timers per request) costs more CPU than the exchange
itself (BENCHMARKS.md). Here a request is one `transport.write`, `httptools` (llhttp, Node.js's parser) parses the
answer as it arrives, and the waiting task is woken once when it is complete.

It keeps: keep-alive (an idle connection closed at `HTTPOptions.keepalive_expiry`, at most
`max_idle_connections` of them, and its socket asked before reuse whether the server closed it meanwhile),
`max_connections` with callers served in order and waits bounded by `Timeouts.pool`, connect and read timeouts
(`Timeouts.read` without progress), TLS as `HTTPOptions.verify` says, chunked, length- and close-delimited bodies,
and connections dropped (never reused) after an error, a cancellation or a stream left early. A request that met a
kept-alive connection closed before any byte of its answer is sent once more on a new one (it cannot have started
there). It asks for `identity` (LLM answers are small) and still undoes gzip or deflate within the size limits. It
leaves out proxies (a proxied client sends through aiohttp), redirects (never followed) and HTTP/2.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmclient.errors import LLMClientError, ResponseFormatError, request_id_from
from llmclient.http.backends.native_connection import Connection, Failed
from llmclient.http.framing import inflate, inflate_stream
from llmclient.http.loop_end import on_loop_end
from llmclient.http.options import Answer
from llmclient.http.options import finite_seconds as _seconds

if TYPE_CHECKING:
    import ssl

    from llmclient.http.client import HTTPClient


class H1Backend:
    """One keep-alive pool to a provider's origin for one `HTTPClient`, bound to the event loop that first uses it
    (a client reused on a new loop starts a new pool: the old loop's sockets cannot serve it).

    Slots: `_open` counts the connections open or being opened, at most `max_connections`. A released connection
    goes straight to the first caller waiting for one, else joins `_idle` (oldest first, at most
    `max_idle_connections`, each closed `keepalive_expiry` seconds after its last answer); a freed slot passes to
    the first caller waiting. Callers are served in the order they came.
    """

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
        self._max_idle = min(options.max_idle_connections, options.max_connections or options.max_idle_connections)
        self._connect_s = _seconds(timeouts.connect)
        self._read_s = _seconds(timeouts.read)
        self._pool_s = _seconds(timeouts.read if timeouts.pool is None else timeouts.pool)
        fixed = {"host": parts.netloc, "accept-encoding": "identity", "connection": "keep-alive"}
        if self._keepalive <= 0 or self._max_idle == 0:
            fixed["connection"] = "close"
        self._fixed = {**fixed, **{k.lower(): v for k, v in owner.headers.items()}}
        # Request heads by method, path and the fixed headers of that kind of request: bounded by the few paths a
        # driver sends to (one per model at most), never by the calls.
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
        # Built now, so a bad `verify=` fails where the driver is configured (as httpx does).
        self._ssl = _context(options.ssl_context()) if self._secure else None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.generation = 0
        self._idle: list[Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._watcher: AsyncGenerator[None, None] | None = None  # closes the pool at the end of its loop

    # -- the pool --------------------------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            for connection in self._idle:  # the old loop's, if it ended without closing them: closed without it
                _abandon(connection)
            if self._sweep is not None:
                self._sweep.cancel()
            self._idle, self._open, self._waiters, self._sweep = [], 0, deque(), None
            self.loop = loop
            self._watcher = on_loop_end(partial(self._close_at_end_of, loop))
        return loop

    async def _close_at_end_of(self, loop: asyncio.AbstractEventLoop) -> None:
        """`loop` is ending (or this pool was dropped while it ran): close its idle connections on it, so that no
        socket outlives it (`http.loop_end`)."""
        if self.loop is loop:
            await self.aclose()

    async def _acquire(self) -> tuple[Connection, bool]:
        """A connection for one exchange, and whether it is a kept-alive one (it served an earlier exchange)."""
        loop = self._bind()
        if not self._waiters:  # otherwise they come first
            while self._idle:
                connection = self._idle.pop()  # the most recently used: the oldest expire first
                if self._reusable(connection, loop):
                    return connection, True
                self._discard(connection)
            if not self._limit or self._open < self._limit:
                self._open += 1
                return await self._open_in_slot(loop), False
        handed = await self._wait_for_slot(loop)
        if handed is not None:
            if self._reusable(handed, loop):
                return handed, True
            handed.close()  # its slot is this call's
        return await self._open_in_slot(loop), False

    def _reusable(self, connection: Connection, loop: asyncio.AbstractEventLoop) -> bool:
        fresh = loop.time() - connection.idle_since < self._keepalive
        return fresh and connection.generation == self.generation and connection.quiet()

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop) -> Connection | None:
        """Wait in line (`Timeouts.pool` at most) for a released connection, or None: a freed slot to open one in.
        What this call was handed but cannot take (it was cancelled meanwhile) goes to the next in line."""
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if self._pool_s is None else loop.call_later(self._pool_s, _expire, waiter)
        try:
            return await waiter
        except TimeoutError:
            raise Failed("pool timeout", f"no free connection within {self._pool_s:g} s") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self._release(handed, True)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:  # not handed anything
                with suppress(ValueError):
                    self._waiters.remove(waiter)

    async def _open_in_slot(self, loop: asyncio.AbstractEventLoop) -> Connection:
        """A new connection in a slot already counted (given back if none opens)."""
        opening = loop.create_connection(
            lambda: Connection(self, loop),
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )
        try:
            if sys.version_info >= (3, 11):  # a timeout scope: no wait_for race that could leak a fresh connection
                async with asyncio.timeout(self._connect_s):
                    _, connection = await opening
            else:
                _, connection = await asyncio.wait_for(opening, self._connect_s)
        except BaseException as exc:
            self._free_slot()
            if isinstance(exc, asyncio.TimeoutError):
                raise Failed("connect timeout", f"no connection within {self._connect_s:g} s") from None
            if isinstance(exc, (OSError, UnicodeError)):  # refused, unreachable, DNS, TLS, a name IDNA refuses
                raise Failed("connect", f"{type(exc).__name__}: {exc}") from None
            raise
        return connection

    def _release(self, connection: Connection, reusable: bool) -> None:
        """The end of an exchange: the connection goes to the first caller waiting, or idle, or is closed."""
        if connection.loop is not self.loop:  # the pool started anew on another loop meanwhile: not its slot
            _abandon(connection)
            return
        if not (reusable and connection.generation == self.generation and self._max_idle and self._keepalive > 0):
            connection.close()
            self._free_slot()
            return
        loop = connection.loop
        connection.idle_since = now = loop.time()
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(connection)
            return
        if len(self._idle) >= self._max_idle:
            self._discard(self._idle.pop(0))
        self._idle.append(connection)
        if self._sweep is None:
            self._sweep = loop.call_at(now + self._keepalive, self._expire_idle)

    def _expire_idle(self) -> None:
        """Close the connections idle for `keepalive_expiry` (a server counts them against its own limit), then
        look again when the next one is due."""
        self._sweep = None
        if self.loop is None:
            return
        now = self.loop.time()
        while self._idle and now - self._idle[0].idle_since >= self._keepalive:
            self._discard(self._idle.pop(0))
        if self._idle:
            self._sweep = self.loop.call_at(self._idle[0].idle_since + self._keepalive, self._expire_idle)

    def _discard(self, connection: Connection) -> None:
        """Close a connection taken out of `_idle` and free its slot."""
        connection.close()
        self._free_slot()

    def _free_slot(self) -> None:
        waiter = self._next_waiter()
        if waiter is None:
            self._open = max(0, self._open - 1)
        else:
            waiter.set_result(None)  # the slot passes on: `_open` is unchanged

    def _next_waiter(self) -> asyncio.Future[Connection | None] | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def lost(self, connection: Connection) -> None:
        """A connection closed by the server while idle leaves the pool at once."""
        if connection in self._idle:
            self._idle.remove(connection)
            self._free_slot()

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

    async def _exchange(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], model: str | None
    ) -> Connection:
        """Send a request and return its connection once the answer's head has arrived.

        A kept-alive connection the server closed before sending a byte of the answer (it timed the connection out
        as the request left, or closes after each answer without saying so) cannot have started on the request:
        it is sent once more, on a new connection in the same slot.
        """
        data = self._request_bytes(method, path, headers, body)
        try:
            connection, reused = await self._acquire()
            while True:
                try:
                    connection.send(data, self._read_s)
                    while not connection.head_done:
                        await connection.wait()
                    return connection
                except Failed as exc:
                    if not reused or exc.kind != "connection" or connection.answered:
                        self._release(connection, False)
                        raise
                except BaseException:
                    self._release(connection, False)
                    raise
                connection.close()
                connection, reused = await self._open_in_slot(connection.loop), False
        except Failed as exc:
            raise self._failure(exc, model) from None

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], model: str | None
    ) -> Answer:
        """Send one request and read its whole answer, up to `Limits.max_response_bytes`."""
        connection = await self._exchange(method, path, body, headers, model)
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
    ) -> AsyncIterator[Connection]:
        """POST and yield the connection once the answer's head has arrived; an error answer is read and raised."""
        connection = await self._exchange("POST", path, body, headers, model)
        reusable = False
        try:
            if connection.status >= 300:  # an error answer, or a redirect (never followed: the key would go along)
                content = await self._rest(connection, model)
                self._owner.check_status(Answer(connection.status, connection.headers, content), content, model)
            yield connection
            if not connection.complete:  # the reader stopped at its own end marker (OpenAI's `[DONE]`)
                await self._drain(connection)
            reusable = connection.finished()
        finally:
            self._release(connection, reusable)

    async def _drain(self, connection: Connection) -> None:
        """Read what follows a stream's last event, so the connection can be reused: the chunked terminator usually
        comes a moment after `[DONE]`. At most 64 KiB within 50 ms; past that the connection is closed instead."""
        loop = asyncio.get_running_loop()
        until, drained = loop.time() + 0.05, 0
        while not connection.complete and drained <= 65536 and loop.time() < until:
            drained += len(connection.take())
            try:
                await asyncio.wait_for(connection.wait(), until - loop.time())
            except (Failed, asyncio.TimeoutError):
                return
        connection.take()

    async def _rest(self, connection: Connection, model: str | None) -> bytes:
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

    def _undecodable(self, connection: Connection, encoding: str, model: str | None) -> ResponseFormatError:
        return ResponseFormatError(
            f"{self._owner.provider} sent an answer encoded as {encoding[:40]!r} that could not be decoded",
            provider=self._owner.provider,
            model=model,
            status=connection.status,  # a 2xx was billed: recorded though unusable
            request_id=request_id_from(connection.headers, self._owner._secrets),  # redacted: servers echo keys
        )

    async def _raw_rest(self, connection: Connection, model: str | None) -> bytes:
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
        except Failed as exc:
            raise self._failure(exc, model) from None

    async def chunks(self, connection: Connection, model: str | None) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, in chunks cut anywhere (a gzip or deflate stream inflated a piece at a time)."""
        encoding = connection.headers.get("content-encoding", "identity").strip().lower()
        pieces = raw = self._raw_chunks(connection, model)
        if encoding != "identity":
            pieces = inflate_stream(raw, encoding, self._owner.limits.max_event_bytes)
        try:
            async for piece in pieces:
                yield piece
        except ValueError:
            raise self._undecodable(connection, encoding, model) from None
        finally:  # closed early: so are the reads it was making (and the inflater)
            await pieces.aclose()
            await raw.aclose()

    async def _raw_chunks(self, connection: Connection, model: str | None) -> AsyncGenerator[bytes, None]:
        while True:
            if connection.buffered:
                yield connection.take()
                continue
            if connection.complete:
                return
            try:
                await connection.wait()
            except Failed as exc:
                raise self._failure(exc, model) from None

    def _failure(self, exc: Failed, model: str | None) -> LLMClientError:
        return self._owner.failure(exc.kind, exc, model)

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their exchange ends (a later call opens new ones)."""
        self.generation += 1
        idle, self._idle = self._idle, []
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        running = self.loop is not None and self.loop is asyncio.get_running_loop()
        for connection in idle:
            if running:
                self._discard(connection)
            else:  # its loop's callers cannot be woken from here; their slots are simply given back
                _abandon(connection)
                self._open = max(0, self._open - 1)
        if idle and running:
            await asyncio.sleep(0)  # the transports finish closing (their sockets, TLS ones too)


def _context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """The TLS context to connect with: the one given, or for `verify=False` one that checks nothing."""
    import ssl

    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _abandon(connection: Connection) -> None:
    """Close a connection of another event loop, which may be closed (then its transport cannot close itself): the
    socket is shut down at once, so the server sees the end; Python closes the descriptor when it collects the
    transport (and reports it, as for any transport left open when its loop closed)."""
    connection.closed = True
    transport = connection.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    if not connection.loop.is_closed():
        with suppress(RuntimeError):  # closed meanwhile
            connection.loop.call_soon_threadsafe(transport.abort)
