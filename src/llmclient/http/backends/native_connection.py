"""One connection of the native HTTP/1.1 backend (`llmclient.http.backends.native`): an asyncio protocol whose
`httptools` parser fills in the answer to the one request in flight, and wakes the task waiting for it.

The protocol keeps what an exchange needs and nothing more: the status and headers (names in lower case, repeated
ones joined, at most 200 fields), the body as it arrives (reading pauses past `_PAUSE_AT` buffered bytes until the
reader catches up), whether the server allows the connection to be reused, and a read timer that fails the
exchange after `Timeouts.read` without progress. Progress is the head completed, body bytes or the end: bytes that
bring none (a header line that never ends, informational answers, chunk extensions or trailers without end) count
against `_MAX_FRAMING` and do not hold the read timer off, so neither size nor time is unbounded while a line is
still open (the parser would buffer it whole). Anything that makes the next answer on the connection uncertain
(bytes nobody asked for, a second answer, an error) marks it unfit for reuse.
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

if TYPE_CHECKING:
    from llmclient.http.backends.native import H1Backend
    from llmclient.http.failures import FailureKind

_PAUSE_AT = 1 << 20
"""Buffered body bytes at which reading pauses until the consumer catches up (a slow stream reader)."""
_MAX_FRAMING = 64 * 1024
"""The most bytes an answer may send without progress: its status line and headers, or framing between two pieces
of body (a header flood would hold the event loop, an endless line the memory)."""
_MAX_FIELDS = 200
"""The most header (and trailer) fields of one answer."""


_POLL = hasattr(select, "poll")  # select.select cannot take a descriptor past FD_SETSIZE (1024)


class Failed(Exception):
    """Why an exchange got no (complete) answer; turned into an llmclient error by `H1Backend._failure`."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one exchange at a time; the parser's callbacks fill the current answer."""

    def __init__(self, backend: H1Backend, loop: asyncio.AbstractEventLoop) -> None:
        self._backend = backend
        self.loop = loop
        self.generation = backend.generation  # `aclose()` starts a new one: older connections are not reused
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._socket: Any = None  # asyncio's socket view: its descriptor, for `quiet`
        self.closed = False
        self.active = False  # an exchange is in flight: bytes that arrive while idle break the connection
        self.idle_since = 0.0
        self._paused = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.head_done = False
        self.complete = False
        self.error: Failed | None = None
        self.keep_alive = False
        self.answered = False  # a byte of the answer arrived
        self._waiter: asyncio.Future[None] | None = None
        self._last_read = 0.0
        self._progress = False
        self._framing = 0
        self._fields = 0
        self._timer: asyncio.TimerHandle | None = None
        self._resume()

    def _resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._socket = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        if not self.active:  # nothing was asked: a broken or hostile server
            self.close()
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail("connection", f"the answer is not valid HTTP/1.1 ({type(exc).__name__})")
            self.close()
            return
        if self._progress:
            self._progress = False
            self._framing = 0
            self._last_read = self.loop.time()
        else:
            self._framing += len(data)
            if self._framing > _MAX_FRAMING and self.error is None and not self.complete:
                where = "headers" if not self.head_done else "framing between two pieces of the body"
                self._fail("connection", f"the answer's {where} run past {_MAX_FRAMING // 1024} KiB")
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None and self.head_done and not self.complete and self.error is None and self._reads_until_close():
            self.complete = True  # a body delimited by the end of the connection
            self._wake()
        elif not self.complete:
            self._fail("connection", "the server closed the connection" + (f" ({exc})" if exc else ""))
        self._backend.lost(self)

    # -- httptools callbacks ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: the connection is never reused
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        self._fields += 1
        if self._fields > _MAX_FIELDS:
            self._fail("connection", f"the answer's headers run past {_MAX_FIELDS} fields")
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
        self.head_done = self._progress = True
        self._wake()

    def on_body(self, data: bytes) -> None:
        if self.error is not None or self.complete:
            return
        self.body.append(data)
        self.buffered += len(data)
        self._progress = True
        if self.buffered > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:  # the end of an informational answer
            return
        if self.complete:
            return
        self.complete = self._progress = True
        self._wake()

    # -- the exchange ----------------------------------------------------------------------------------------

    def _reads_until_close(self) -> bool:
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        return "content-length" not in self.headers and not chunked

    def _fail(self, kind: FailureKind, detail: str) -> None:
        if self.error is None and not self.complete:
            self.error = Failed(kind, detail)
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
            self._last_read = self.loop.time()
            self._timer = self.loop.call_at(self._last_read + read_timeout, self._check_read, read_timeout)

    def _check_read(self, read_timeout: float) -> None:
        self._timer = None
        if self.complete or self.error is not None or self.closed:
            return
        now = self.loop.time()
        if self._paused:  # the reader is behind, not the server: look again a whole period later
            self._timer = self.loop.call_at(now + read_timeout, self._check_read, read_timeout)
        elif self._last_read + read_timeout > now:  # progress since the timer was set
            self._timer = self.loop.call_at(self._last_read + read_timeout, self._check_read, read_timeout)
        else:
            what = "no data" if not self.answered else "no progress" if self.head_done else "no complete head"
            self._fail("read timeout", f"{what} for {read_timeout:g} s")
            self.close()

    async def wait(self) -> None:
        """Until something new arrived (the head, body bytes, the end or an error)."""
        if self.error is not None:
            raise self.error
        self._waiter = waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        """The body bytes buffered so far (reading resumes if it had paused)."""
        body, self.body, self.buffered = self.body, deque(), 0
        self._resume()
        return b"".join(body) if len(body) != 1 else body[0]

    def finished(self) -> bool:
        """Whether the exchange ended with the connection fit for the next one: the whole answer read and taken,
        reading not paused, and no other bytes since."""
        self.active = False
        self._stop_timer()
        fit = self.complete and self.keep_alive and self.error is None and not self.buffered and not self._paused
        return fit and not self.closed and self.transport is not None and not self.transport.is_closing()

    def quiet(self) -> bool:
        """Whether this idle connection is still open with nothing to read, asked of the socket itself: when the
        event loop was busy (a blocking call between two requests), the server's close may be waiting there unseen.
        Readable while idle means closed, or bytes nobody asked for: either way, not reusable."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        fileno = -1 if self._socket is None else self._socket.fileno()
        if fileno < 0:
            return self._socket is None  # no socket to ask (a transport without one): as far as the loop knows
        if _POLL:
            poller = select.poll()
            poller.register(fileno, select.POLLIN)
            return not poller.poll(0)
        return not select.select([fileno], [], [], 0)[0]

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Close at once (no TLS goodbye: nothing more is sent or awaited on a connection being dropped)."""
        self._stop_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
