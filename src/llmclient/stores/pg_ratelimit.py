"""Rate limits shared by every process and machine: `MemoryRateLimitStore`'s windows in PostgreSQL.

Admission is one database statement (`llmclient_rate_acquire`, migration 2): it locks the deployment's row, so
admissions to one deployment take turns across the fleet, drops the holds that left the window and either inserts
a hold or answers how long until one would fit. The window's semantics are the in-memory store's: a request holds
one request and its worst case in tokens from admission until `per` seconds after it ended, its tokens corrected
to the reported usage when it ends. Time is the database server's clock, so machines with skewed clocks agree.

`settle` and `refund` run in the pipeline's synchronous finish: they hand the hold's end to the store's writer
(`stores.writer`), which applies whatever has queued in one statement. Until it lands the request still holds its
worst case and its window starts later than it ended, so a late write only ever errs towards the limit. The writer
is drained at exit; a process killed before that, or a database down meanwhile, leaves holds that end with their
lease (`lease`, then `per` more seconds).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from llmclient.routing.ratelimit import Admission, RateLimit, RateLimitHint
from llmclient.stores.base import StoreUnavailableError
from llmclient.stores.postgres import PostgresStore, warn_degraded
from llmclient.stores.writer import RateSettleWrite

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

# Typed parameters: psycopg sends small ints as smallint and None as unknown, which overload resolution must not see.
_ACQUIRE = (
    "SELECT hold, wait FROM llmclient_rate_acquire("
    "%s::text, %s::bigint, %s::bigint, %s::float8, %s::bigint, %s::float8, %s::timestamptz)"
)
_LEARN = "SELECT llmclient_rate_learn(%s::text, %s::bigint, %s::float8, %s::bigint, %s::float8, %s::timestamptz)"


class PostgresRateLimitStore:
    """A `RateLimitStore` in a PostgreSQL database: every process using it shares each deployment's window.

    Deployments are keyed by name (`Deployment(name=...)`, else `"<group>@<index>"`): processes share a window
    when they name a deployment alike, and each applies the limits it was configured with.

    Args:
        store: The database, or its URL (`postgresql://...`).
        lease: Seconds an admitted request holds its place if its process dies before settling (it then leaves
            the window `per` seconds later); make it longer than a call can last.
        fail_open: When the database is down at admission, admit without a limit (with a `FleetDegradedWarning`)
            instead of raising `StoreUnavailableError` with nothing sent.
    """

    _shared: ClassVar[dict[str, PostgresRateLimitStore]] = {}  # one per URL, for the process
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, store: PostgresStore | str, *, lease: float = 900.0, fail_open: bool = False) -> None:
        self.store = store if isinstance(store, PostgresStore) else PostgresStore.shared(store)
        self.lease = lease
        self.fail_open = fail_open

    def __repr__(self) -> str:
        return f"PostgresRateLimitStore({self.store!r})"

    @classmethod
    def shared(cls, url: str) -> PostgresRateLimitStore:
        """The one store for `url` in this process (what `ModelGroup(store=url)` and `Router(store=url)` use)."""
        with cls._shared_lock:
            found = cls._shared.get(url)
            if found is None:
                found = cls._shared[url] = cls(PostgresStore.shared(url))
            return found

    async def try_acquire(self, key: str, limit: RateLimit, tokens: int) -> Admission | float:
        params = (key, limit.rpm, limit.tpm, limit.per, tokens, self.lease, self.store.now())
        try:
            row = await self.store.call(partial(_one, sql=_ACQUIRE, params=params), retries=0)
        except StoreUnavailableError as exc:
            if not self.fail_open:
                raise
            warn_degraded(f"shared rate limits unavailable; {key} admitted without its limit (fail_open): {exc}")
            return Admission(key, tokens, 0)
        hold, wait = row
        return float(wait) if hold is None else Admission(key, tokens, int(hold))

    def settle(self, admission: Admission, tokens: int | None) -> None:
        if admission.id == 0:  # admitted without the store (fail_open)
            return
        self.store.writer.put(RateSettleWrite(admission.id, tokens))

    def refund(self, admission: Admission) -> None:
        self.settle(admission, 0)

    async def learn(self, key: str, headers: Mapping[str, str]) -> None:
        hint = RateLimitHint.from_headers(headers)
        if hint.requests is None and hint.tokens is None:
            return
        params = (key, hint.requests, hint.requests_reset, hint.tokens, hint.tokens_reset, self.store.now())
        try:
            await self.store.call(partial(_one, sql=_LEARN, params=params))
        except StoreUnavailableError as exc:  # the configured limits still hold; the hint is lost
            logger.warning("could not record %s's rate-limit headers: %s", key, exc)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued settle is written (or given up: their lease ends them); True once done."""
        self.store.drain_blocking()
        return True

    @classmethod
    def flush_all(cls, timeout: float = 5.0) -> None:
        """Write every store's queued settles (their pools close at exit after their writers drain anyway)."""
        with cls._shared_lock:
            stores = list(cls._shared.values())
        for store in stores:
            store.flush(timeout)


async def _one(connection: psycopg.AsyncConnection[Any], sql: str, params: tuple[Any, ...]) -> Any:
    return await (await connection.execute(sql, params)).fetchone()
