"""The PostgreSQL connection every shared store uses: one pool per URL and process, the schema, and error mapping.

psycopg 3 rather than asyncpg: the pipeline's `finish` and `release` hooks are synchronous (they run inside a
stream's last chunk and in `finally` blocks), while admission is async. psycopg gives both a blocking and an async
API over the same driver, a maintained pool (`psycopg_pool`) that checks connections before lending them, and
server-side parameter binding; asyncpg is async only, so settling from a synchronous hook would need a second
event loop. Admission runs the blocking call in a worker thread, so the event loop never waits on the database.

Every statement is sent with parameters (`%s`), never formatted into SQL; the only identifiers built into SQL are
table names, which `identifier` checks first.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from llmclient.errors import ConfigurationError, LLMClientError, MissingExtraError
from llmclient.stores._schema import ADVISORY_LOCK_KEY, MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

Clock = Callable[[], datetime]
"""Where time comes from: None in a store means the database server's clock (one clock for the whole fleet)."""


class StoreUnavailableError(LLMClientError):
    """The shared store (PostgreSQL) could not be reached or failed mid-operation; nothing was sent."""

    retryable = True


class FleetDegradedWarning(UserWarning):
    """A call went ahead without the shared store (fail-open), or a record was spooled to disk for later upload."""


@dataclass(frozen=True)
class Settlement:
    """What settling one call on shared budgets needs: the reservation to drop and the budgets to charge."""

    reservation_id: str | None
    budgets: tuple[str, ...]
    at: datetime | None = None


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def identifier(name: str) -> str:
    """A table name safe to place in SQL: lower-case letters, digits and underscores only."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid table name: use lower-case letters, digits and underscores")
    return name


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401  (fail here, not on first call, when the pool is missing)
    except ImportError as exc:
        raise MissingExtraError(
            "the PostgreSQL store needs psycopg 3 and its pool: pip install 'llmclient[postgres]'"
        ) from exc
    return psycopg


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def translate(exc: BaseException, url: str) -> LLMClientError:
    """A psycopg error as the package's own: a `ConfigurationError` for what the user must fix, else unavailable."""
    psycopg = _psycopg()
    where = redact(url)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ConfigurationError(
            f"the database user may not do this on {where}: {exc.diag.message_primary}; the client needs USAGE and "
            "CREATE on the schema to migrate, then SELECT, INSERT, UPDATE, DELETE on the llmclient_* tables and "
            "EXECUTE on the llmclient_* functions (see docs/fleet.md, Permissions)"
        )
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        return ConfigurationError(
            f"the llmclient schema is missing on {where} ({exc.diag.message_primary}); run `llmclient db migrate "
            "--url ...` as a user allowed to create tables, or let the client migrate on first use"
        )
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc)
        # libpq reports failures while connecting as text only (no SQLSTATE reaches the client before login).
        for hint, what in (
            ("password authentication failed", "the password is wrong"),
            ("no password supplied", "the URL has no password"),
            ("does not exist", "the database or role in the URL does not exist"),
            ("no pg_hba.conf entry", "the server does not accept this user from this host (pg_hba.conf)"),
            ("invalid dsn", "the URL is not a valid PostgreSQL URL"),
        ):
            if hint in text:
                return ConfigurationError(f"cannot use {where}: {what} ({text.splitlines()[0]})")
        return StoreUnavailableError(f"PostgreSQL at {where} is unavailable: {text.splitlines()[0] if text else exc}")
    if isinstance(exc, psycopg.ProgrammingError) and "conninfo" in str(exc).lower():
        return ConfigurationError(f"{where} is not a valid PostgreSQL URL: {exc}")
    return StoreUnavailableError(f"PostgreSQL at {where} failed: {type(exc).__name__}: {exc}")


class PostgresStore:
    """One PostgreSQL database shared by every process: connections, schema and clock for ledger and budgets.

    Args:
        url: `postgresql://user:password@host:5432/db` (any libpq URL; `?sslmode=require` for managed servers).
        pool_size: The most connections this process opens (admission and recording each hold one briefly).
        timeout: Seconds to wait for a connection before the store counts as unavailable.
        clock: Where "now" comes from for windows and leases; None (the default) uses the server's clock, so
            machines with skewed clocks still agree. Tests pass a controllable one.
        migrate: Create or upgrade the schema on first use (under an advisory lock; safe from many processes).
    """

    _shared: ClassVar[dict[str, PostgresStore]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()
    # Stores with an open pool, held until closed: a pool left to the garbage collector may be collected on one of
    # its own worker threads, which cannot join itself.
    _open: ClassVar[set[PostgresStore]] = set()

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        timeout: float = 5.0,
        clock: Clock | None = None,
        migrate: bool = True,
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(f"{redact(url)} is not a PostgreSQL URL; it must start with postgresql://")
        psycopg = _psycopg()
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"{redact(url)} is not a valid PostgreSQL URL: {exc}") from exc
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self.clock = clock
        self._migrate = migrate
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self.schema_checked = False

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)})"

    @classmethod
    def shared(cls, url: str) -> PostgresStore:
        """The one store for `url` in this process, so a ledger and budgets on the same URL share a pool."""
        with cls._shared_lock:
            store = cls._shared.get(url)
            if store is None or store._closed:
                store = cls._shared[url] = cls(url)
            return store

    @property
    def _closed(self) -> bool:
        return self._pool is not None and self._pool.closed

    @property
    def key(self) -> str:
        """A short stable name for this database (no password), e.g. for spool files."""
        return hashlib.sha256(redact(self.url).encode()).hexdigest()[:16]

    def now(self) -> datetime | None:
        """The store's clock, or None for the server's."""
        return None if self.clock is None else self.clock()

    # -- schema ------------------------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply the migrations this database lacks (one process at a time); returns the schema version."""
        psycopg = _psycopg()
        try:
            with psycopg.connect(self.url, connect_timeout=max(1, round(self.timeout))) as connection:
                with connection.transaction():
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                    connection.execute(VERSION_TABLE)
                    row = connection.execute("SELECT coalesce(max(version), 0) FROM llmclient_schema").fetchone()
                    current = int(row[0]) if row else 0
                    if current > SCHEMA_VERSION:
                        raise ConfigurationError(
                            f"{redact(self.url)} has llmclient schema version {current}, newer than this package's "
                            f"{SCHEMA_VERSION}; upgrade llmclient"
                        )
                    for version in range(current + 1, SCHEMA_VERSION + 1):
                        connection.execute(MIGRATIONS[version - 1])
                        connection.execute("INSERT INTO llmclient_schema (version) VALUES (%s)", (version,))
                return SCHEMA_VERSION
        except psycopg.Error as exc:
            raise translate(exc, self.url) from exc

    def version(self) -> int:
        """The schema version in the database (0 when it has none)."""
        psycopg = _psycopg()
        try:
            with psycopg.connect(self.url, connect_timeout=max(1, round(self.timeout))) as connection:
                row = connection.execute("SELECT to_regclass('llmclient_schema') IS NOT NULL").fetchone()
                if not row or not row[0]:
                    return 0
                found = connection.execute("SELECT coalesce(max(version), 0) FROM llmclient_schema").fetchone()
                return int(found[0]) if found else 0
        except psycopg.Error as exc:
            raise translate(exc, self.url) from exc

    def ensure_schema(self) -> None:
        """Migrate (or check the version) once per process, before the first statement."""
        if self.schema_checked:
            return
        with self._lock:
            if self.schema_checked:
                return
            if self._migrate:
                self.migrate()
            elif (found := self.version()) != SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{redact(self.url)} has llmclient schema version {found}, this package needs {SCHEMA_VERSION}; "
                    "run `llmclient db migrate --url ...`"
                )
            self.schema_checked = True

    # -- connections -------------------------------------------------------------------------------------------

    def _get_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        timeout=self.timeout,
                        kwargs={"autocommit": True, "connect_timeout": max(1, round(self.timeout))},
                        # A connection the server dropped (restart, failover) is replaced before it is lent.
                        check=ConnectionPool.check_connection,
                        open=True,
                        name=f"llmclient-{self.key}",
                    )
                    with self._shared_lock:
                        self._open.add(self)
        return self._pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection, with psycopg's errors turned into the package's own."""
        psycopg = _psycopg()
        from psycopg_pool import PoolTimeout

        self.ensure_schema()
        try:
            with self._get_pool().connection() as connection:
                yield connection
        except PoolTimeout as exc:
            raise StoreUnavailableError(
                f"no connection to PostgreSQL at {redact(self.url)} within {self.timeout} s"
            ) from exc
        except psycopg.Error as exc:
            raise translate(exc, self.url) from exc

    def run(self, work: Callable[[psycopg.Connection[Any]], Any], *, retries: int = 1) -> Any:
        """Run `work` on a connection, again on a fresh one if the connection was lost (`work` must be idempotent)."""
        for attempt in range(retries + 1):
            try:
                with self.connection() as connection:
                    return work(connection)
            except StoreUnavailableError:
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close this process's connections (a later call opens new ones)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
        with self._shared_lock:
            self._open.discard(self)

    @classmethod
    def close_all(cls, url: str | None = None) -> None:
        """Close every store's connections in this process (those on `url` only, if given); also run at exit."""
        with cls._shared_lock:
            stores = [store for store in cls._open if url is None or store.url == url]
        for store in stores:
            store.close()


atexit.register(PostgresStore.close_all)


def warn_degraded(message: str) -> None:
    """One `FleetDegradedWarning` pointing at the user's call."""
    warnings.warn(message, FleetDegradedWarning, stacklevel=4)
