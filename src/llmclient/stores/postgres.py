"""The PostgreSQL connection every shared store uses: one async pool per URL and process, the schema, timeouts,
and one answer when the database is down.

All I/O is psycopg's async API on the store loop (`stores._loop`): a caller's loop awaits a future for at most
`timeout` seconds, and a record is handed to the writer (`stores.writer`) without waiting at all. After a failure
the store counts as down: calls fail at once with `StoreUnavailableError` (nothing sent), the writer spools, and a
probe on the store loop looks for the database again (every quarter second at first, backing off to 5 s), uploading
the spool when it answers.

Every statement is sent with parameters (`%s`), never formatted into SQL; the only identifiers built into SQL are
table names, which `identifier` checks first. The URL's password, in any form libpq reads, appears in no message,
repr, log record or span (`_sanitize.redact`, given the passwords this URL and `PGPASSWORD` hold).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import os
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from llmclient._sanitize import redact, scrub_logs, split_location
from llmclient.errors import ConfigurationError, LLMClientError
from llmclient.stores._loop import StoreLoop
from llmclient.stores._schema import ADVISORY_LOCK_KEY, MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE
from llmclient.stores.base import (
    FleetDegradedWarning,
    StoreUnavailableError,
    load_psycopg,
    secrets_of,
    translate,
)

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

    from llmclient.stores.writer import Writer

T = TypeVar("T")
Clock = Callable[[], datetime]
"""Where time comes from: None in a store means the database server's clock (one clock for the whole fleet)."""
Work = Callable[["psycopg.AsyncConnection[Any]"], Awaitable[T]]
"""What runs on a connection: an async function of it (autocommit; open a transaction for several statements)."""


_BACKOFF = (0.25, 5.0)  # the first and longest pause before probing a database that failed again


class PostgresStore:
    """One PostgreSQL database shared by every process: connections, schema and clock for ledger and budgets.

    Args:
        url: `postgresql://user:password@host:5432/db` (any libpq URL, or a keyword/value string; add
            `?sslmode=require` for managed servers).
        pool_size: The most connections this process opens (admission and recording each hold one briefly).
        timeout: The longest a call waits for the database, in seconds (a connection, a statement, its answer);
            past it the store counts as down and calls fail at once until it answers again.
        clock: Where "now" comes from for windows and leases; None (the default) uses the server's clock, so
            machines with skewed clocks still agree. Tests pass a controllable one.
        migrate: Create or upgrade the schema on first use (under an advisory lock; safe from many processes).
        spool_dir: Where records wait while the database is down (default `default_spool_dir()`).
    """

    _shared: ClassVar[dict[str, PostgresStore]] = {}  # one store per URL, for the process: as many as URLs
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()
    _open: ClassVar[set[PostgresStore]] = set()  # stores with a pool, closed at exit after their writes

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        timeout: float = 5.0,
        clock: Clock | None = None,
        migrate: bool = True,
        spool_dir: str | Path | None = None,
    ) -> None:
        self.secrets = secrets_of(url)
        try:
            scheme, _ = split_location(url, ("postgresql",))
        except ValueError as exc:
            raise ConfigurationError(f"not a PostgreSQL URL: {exc}") from None
        if scheme is None:
            raise ConfigurationError(
                "not a PostgreSQL URL: it must start with postgresql:// (or be host=... dbname=...)"
            )
        psycopg = load_psycopg()
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"{self._redact(url)} is not a valid PostgreSQL URL: {self._redact(str(exc))}"
            ) from None
        scrub_logs(("psycopg", "psycopg.pool"), self.secrets)
        self.url = url
        self.where = self._redact(url)
        """The URL without its password, for messages."""
        self.pool_size = pool_size
        self.timeout = timeout
        self.clock = clock
        self._migrate = migrate
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool_dir()
        self.schema_checked = False
        self._pool: psycopg_pool.AsyncConnectionPool[Any] | None = None
        self._opening: asyncio.Lock | None = None  # made on the store loop, the only place it is used
        self._state = threading.Lock()
        self._failures = 0
        self._down_until = 0.0
        self._probing = False
        self._writer: Writer | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"PostgresStore({self.where})"

    def _redact(self, text: str) -> str:
        return redact(text, self.secrets)

    @classmethod
    def shared(cls, url: str) -> PostgresStore:
        """The one store for `url` in this process, so a ledger and budgets on the same URL share a pool."""
        with cls._shared_lock:
            store = cls._shared.get(url)
            if store is None:
                store = cls._shared[url] = cls(url)
            return store

    @property
    def key(self) -> str:
        """A short stable name for this database (no password), e.g. for spool files."""
        return hashlib.sha256(self.where.encode()).hexdigest()[:16]

    @property
    def spool_path(self) -> Path:
        """The file where this database's writes wait while it is down (JSON lines)."""
        return self.spool_dir / f"{self.key}.jsonl"

    @property
    def writer(self) -> Writer:
        """The store's writer: records, settlements and releases handed over without waiting (`stores.writer`)."""
        if self._pid != os.getpid():  # a forked child starts a writer (and pool) of its own
            self._pid, self._pool, self._opening, self._writer = os.getpid(), None, None, None
        if self._writer is None:
            from llmclient.stores.writer import Writer

            with self._state:
                if self._writer is None:
                    self._writer = Writer(self)
            with self._shared_lock:
                self._open.add(self)  # so that exit writes what it holds
        return self._writer

    def now(self) -> datetime | None:
        """The store's clock, or None for the server's."""
        return None if self.clock is None else self.clock()

    # -- availability ------------------------------------------------------------------------------------------

    @property
    def down(self) -> bool:
        """Whether the last attempt failed and the database has not answered the probe since (calls fail at once)."""
        return self._probing

    def failed(self) -> None:
        """The database failed or fell silent: count it down, drop the pool (its connections are suspect, and it
        would back off reconnecting for longer than the outage), and have the store loop probe for its return."""
        self._count_failure()
        with self._state:
            start, self._probing = not self._probing, True
        if start:
            loop = StoreLoop.get()
            loop.call_soon(self._drop_pool)
            loop.submit(self._probe())

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:  # closed in the background: its connections in use are closed when given back
            asyncio.get_running_loop().create_task(pool.close(timeout=1.0))

    async def _probe(self) -> None:
        """On the store loop: wait out the pause, then try a connection of its own (not the pool's), until the
        database answers; then let the writer upload what it spooled meanwhile."""
        try:
            while True:
                await asyncio.sleep(max(0.0, self._down_until - time.monotonic()))
                try:
                    await asyncio.wait_for(self._ping(), self.timeout)
                except (StoreUnavailableError, asyncio.TimeoutError):  # refused, or silent
                    self._count_failure()
                    continue
                except LLMClientError:  # it answered, if only to refuse: calls will say why
                    pass
                with self._state:
                    self._failures, self._down_until = 0, 0.0
                break
        finally:
            with self._state:
                self._probing = False
        if self._writer is not None:
            self._writer.wake()

    def _count_failure(self) -> None:
        with self._state:
            self._failures += 1
            pause = min(_BACKOFF[1], _BACKOFF[0] * 2 ** (self._failures - 1))
            self._down_until = time.monotonic() + pause

    async def _ping(self) -> None:
        connection = await self._connect()
        try:
            await connection.execute("SELECT 1")
        finally:
            await connection.close()

    def unavailable(self) -> StoreUnavailableError:
        """The error of a call made while the store is down."""
        return StoreUnavailableError(
            f"PostgreSQL at {self.where} is unavailable (it failed or did not answer within {self.timeout} s; "
            "retrying in the background)"
        )

    # -- running work ------------------------------------------------------------------------------------------

    async def call(self, work: Work[T], *, retries: int = 1, deadline: float | None = None) -> T:
        """Run `work` on a pooled connection, from any event loop, in at most `timeout` seconds (`deadline`: more,
        for bulk work); again on a fresh connection if the first was lost (`retries`: `work` must be idempotent
        then). While the store is down this raises `StoreUnavailableError` at once."""
        if self.down:
            raise self.unavailable()
        loop, limit = StoreLoop.get(), deadline or self.timeout
        if loop.in_loop():
            return await self._bounded(work, retries, limit)
        try:
            return await loop.wait(self._execute(work, retries), limit)
        except asyncio.TimeoutError:
            self.failed()
            raise self._silent(limit) from None

    def run(self, work: Work[T], *, retries: int = 1, drain: bool = False, deadline: float | None = None) -> T:
        """`call` for code that is not async (reports, the command line, `SharedBudgets.define`): it blocks the
        calling thread, never the store's loop, for at most `timeout` seconds (or `deadline`). `drain`: after this
        process's queued writes (a report then shows what this process recorded)."""
        if self.down:
            raise self.unavailable()
        limit = deadline or self.timeout
        try:
            return StoreLoop.get().run(self._execute(work, retries, drain=drain), limit)
        except TimeoutError:
            self.failed()
            raise self._silent(limit) from None

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query, after this process's queued writes (blocking, as `run`)."""
        return self.run(partial(_rows, sql=sql, params=params), drain=True)

    async def afetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`fetch` from async code."""
        return await self.call(partial(_rows, sql=sql, params=params))

    async def drain(self) -> None:
        """Wait until the writes this process handed over are written (or spooled: at most about `timeout`)."""
        if self._writer is not None:
            await StoreLoop.get().wait(self._writer.drained(self.timeout), None)

    def drain_blocking(self) -> None:
        """`drain` for code that is not async."""
        if self._writer is not None:
            StoreLoop.get().run(self._writer.drained(self.timeout), None)

    def upload(self) -> int:
        """Upload this database's spool now (`llmclient db flush`); returns how many writes went up."""
        return StoreLoop.get().run(self.writer.upload(), None)

    async def _bounded(self, work: Work[T], retries: int, limit: float) -> T:
        try:
            return await asyncio.wait_for(self._execute(work, retries), limit)
        except asyncio.TimeoutError:
            self.failed()
            raise self._silent(limit) from None

    def _silent(self, limit: float | None = None) -> StoreUnavailableError:
        return StoreUnavailableError(f"PostgreSQL at {self.where} did not answer within {limit or self.timeout} s")

    async def _execute(self, work: Work[T], retries: int, *, drain: bool = False) -> T:
        """On the store loop: the schema checked once, then `work` on a pooled connection, errors translated."""
        psycopg = load_psycopg()
        from psycopg_pool import PoolTimeout

        if self._pid != os.getpid():  # a forked child: the parent's pool and writer belong to the parent's loop
            self._pid, self._pool, self._opening, self._writer = os.getpid(), None, None, None
        if drain:  # what this process handed to any writer for this database, first
            with self._shared_lock:
                writers = [store._writer for store in self._open if store.url == self.url and store._writer]
            for writer in writers:
                await writer.drained(self.timeout)
        try:
            await self._ensure_schema()
        except StoreUnavailableError:
            self.failed()
            raise
        for attempt in range(retries + 1):
            try:
                pool = await self._get_pool()
                async with pool.connection(timeout=self.timeout) as connection:
                    return await work(connection)
            except PoolTimeout:
                error: LLMClientError = StoreUnavailableError(
                    f"no connection to PostgreSQL at {self.where} within {self.timeout} s"
                )
            except psycopg.Error as exc:
                error = translate(exc, self.where, self.secrets)
            if not isinstance(error, StoreUnavailableError):
                raise error
            if attempt == retries:
                self.failed()
                raise error
        raise AssertionError("unreachable")

    async def _get_pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        if self._pool is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    from psycopg_pool import AsyncConnectionPool

                    pool: psycopg_pool.AsyncConnectionPool[Any] = AsyncConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        timeout=self.timeout,
                        kwargs={"autocommit": True, "connect_timeout": max(2, round(self.timeout))},
                        # A connection the server dropped (restart, failover) is replaced before it is lent.
                        check=AsyncConnectionPool.check_connection,
                        open=False,
                        name=f"llmclient-{self.key}",
                    )
                    await pool.open(wait=False)
                    self._pool = pool
                    with self._shared_lock:
                        self._open.add(self)
        return self._pool

    # -- schema ------------------------------------------------------------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        pg = load_psycopg()
        try:
            connection: psycopg.AsyncConnection[Any] = await pg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(2, round(self.timeout))
            )
            return connection
        except pg.Error as exc:
            raise translate(exc, self.where, self.secrets) from None

    async def _migrate_schema(self) -> int:
        psycopg = load_psycopg()
        connection = await self._connect()
        try:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                await connection.execute(VERSION_TABLE)
                row = await (
                    await connection.execute("SELECT coalesce(max(version), 0) FROM llmclient_schema")
                ).fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise ConfigurationError(
                        f"{self.where} has llmclient schema version {current}, newer than this package's "
                        f"{SCHEMA_VERSION}; upgrade llmclient"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    await connection.execute(MIGRATIONS[version - 1])
                    await connection.execute("INSERT INTO llmclient_schema (version) VALUES (%s)", (version,))
            return SCHEMA_VERSION
        except psycopg.Error as exc:
            raise translate(exc, self.where, self.secrets) from None
        finally:
            await connection.close()

    async def _version(self) -> int:
        psycopg = load_psycopg()
        connection = await self._connect()
        try:
            row = await (await connection.execute("SELECT to_regclass('llmclient_schema') IS NOT NULL")).fetchone()
            if not row or not row[0]:
                return 0
            found = await (
                await connection.execute("SELECT coalesce(max(version), 0) FROM llmclient_schema")
            ).fetchone()
            return int(found[0]) if found else 0
        except psycopg.Error as exc:
            raise translate(exc, self.where, self.secrets) from None
        finally:
            await connection.close()

    def migrate(self) -> int:
        """Apply the migrations this database lacks (one process at a time); returns the schema version."""
        return StoreLoop.get().run(self._migrate_schema(), None)

    def version(self) -> int:
        """The schema version in the database (0 when it has none)."""
        return StoreLoop.get().run(self._version(), None)

    async def _ensure_schema(self) -> None:
        if self.schema_checked:
            return
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self.schema_checked:
                return
            if self._migrate:
                await self._migrate_schema()
            elif (found := await self._version()) != SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.where} has llmclient schema version {found}, this package needs {SCHEMA_VERSION}; "
                    "run `llmclient db migrate --url ...`"
                )
            self.schema_checked = True

    def ensure_schema(self) -> None:
        """Migrate (or check the version) once per process, before the first statement."""
        StoreLoop.get().run(self._ensure_schema(), None)

    # -- closing -----------------------------------------------------------------------------------------------

    async def _close(self, drain_s: float | None) -> None:
        if self._writer is not None:
            await self._writer.drained(drain_s)
            self._writer.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=1.0)
        with self._shared_lock:
            self._open.discard(self)

    def close(self, *, drain_s: float | None = None) -> None:
        """Write what the writer holds (within `drain_s`, default the store's timeout; the rest is spooled), then
        close this process's connections (a later call opens new ones)."""
        StoreLoop.get().run(self._close(self.timeout if drain_s is None else drain_s), None)

    async def aclose(self) -> None:
        """`close` from async code."""
        await StoreLoop.get().wait(self._close(self.timeout), None)

    @classmethod
    def close_all(cls, url: str | None = None) -> None:
        """Close every store's connections in this process (those on `url` only, if given), after writing what
        their writers hold; also run at exit."""
        with cls._shared_lock:
            stores = [store for store in cls._open if url is None or store.url == url]
        for store in stores:
            with contextlib.suppress(Exception):  # at exit, one store's trouble must not keep the others open
                store.close()


async def _rows(connection: psycopg.AsyncConnection[Any], sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    cursor = await connection.execute(sql, params)
    return await cursor.fetchall()


def default_spool_dir() -> Path:
    """Where records wait for the database when it is down: `$XDG_STATE_HOME/llmclient/spool`."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llmclient" / "spool"


atexit.register(PostgresStore.close_all)


def warn_degraded(message: str) -> None:
    """One `FleetDegradedWarning` pointing at the user's call."""
    warnings.warn(message, FleetDegradedWarning, stacklevel=4)
