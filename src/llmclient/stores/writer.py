"""The store's writer: what a call's synchronous `finish` owes the database, written on the store loop in batches
while the call has long returned.

A ledger row with its call's settlement, a settlement alone, the release of a reservation, a learned count
margin, a rate-limit hold's end: each is a `Write`, handed over with `Writer.put` (a thread-safe append, no waiting),
and applied with whatever else queued meanwhile in one transaction, pipelined (one round trip for the batch).

Every write can be repeated without effect: a row is keyed by its call id (`ON CONFLICT DO NOTHING`, and its
settlement happens only if the row was new), a settlement alone by its call id in `llmclient_settled`, a release
is a delete, a margin only ever grows. So a batch whose acknowledgement was lost is simply written again.

When the database is down or silent the batch goes to the spool file (JSON lines) at once, and so does every write
while the store counts as down; the first successful write, the store's probe, `flush()` or `llmclient db flush`
uploads it. Rate-limit holds are not spooled: their lease ends them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from llmclient.accounting.ledger import LedgerRecord
from llmclient.errors import LLMClientError
from llmclient.stores._loop import StoreLoop
from llmclient.stores.base import Settlement
from llmclient.types import Cost, Usage

if TYPE_CHECKING:
    import psycopg

    from llmclient.stores.postgres import PostgresStore

logger = logging.getLogger(__name__)

COLUMNS = (
    "call_id, at, provider, model, kind, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, "
    "estimated, cost_usd, cost_input_usd, cost_cached_usd, cost_output_usd, price_source, price_checked, "
    "latency_s, attempts, request_id, tags, error, counted_input_tokens, budgets, deployment, charged_usd"
)
_INSERT = f"INSERT INTO llmclient_calls ({COLUMNS}) VALUES ({', '.join(['%s'] * 25)}) ON CONFLICT (call_id) DO NOTHING"
# The row and its settlement in one statement: settled only when the row is new (a repeat changes nothing).
_INSERT_AND_SETTLE = (
    f"WITH fresh AS ({_INSERT} RETURNING call_id) SELECT llmclient_settle(%s, %s, %s::numeric, %s) FROM fresh"
)
_SETTLE_ONCE = (
    "WITH fresh AS (INSERT INTO llmclient_settled (call_id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING call_id) "
    "SELECT llmclient_settle(%s, %s, %s::numeric, %s) FROM fresh"
)
_RELEASE = "DELETE FROM llmclient_reservations WHERE id = %s"
_RELEASE_UNKNOWN = "SELECT llmclient_release(%s)"
_MARGIN = (
    "INSERT INTO llmclient_margins AS m (key, margin) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
    "SET margin = greatest(m.margin, excluded.margin), updated_at = now()"
)
_RATE_SETTLE = "SELECT llmclient_rate_settle(%s::bigint[], %s::bigint[], %s::timestamptz)"
_UPLOAD_BATCH = 200


class Write:
    """One write the database is owed; `spooled` ones wait in the spool file while it is down."""

    spooled: ClassVar[bool] = True

    def statement(self) -> tuple[str, tuple[Any, ...]]:
        """The SQL and its parameters."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The spool file's line for this write."""
        raise NotImplementedError


@dataclass(frozen=True)
class RecordWrite(Write):
    """A ledger row, and the settlement of its call's shared budgets when they are on the same database."""

    call_id: str
    record: LedgerRecord
    settlement: Settlement | None = None

    def statement(self) -> tuple[str, tuple[Any, ...]]:
        settlement, cost = self.settlement, self.record.cost
        if settlement is None:
            return _INSERT, row(self.call_id, self.record, None, None)
        charged = cost.total if cost is not None else settlement.unknown_cost
        settle = (settlement.reservation_id, list(settlement.budgets), charged, settlement.at)
        return _INSERT_AND_SETTLE, row(self.call_id, self.record, settlement.budgets, charged) + settle

    def to_json(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "record": self.record.to_dict(), "settlement": _settlement(self.settlement)}


@dataclass(frozen=True)
class SettleWrite(Write):
    """Shared budgets settled without a ledger row (the ledger lives elsewhere); once per call id."""

    call_id: str
    settlement: Settlement
    amount: Decimal | None

    def statement(self) -> tuple[str, tuple[Any, ...]]:
        s = self.settlement
        return _SETTLE_ONCE, (self.call_id, s.reservation_id, list(s.budgets), self.amount, s.at)

    def to_json(self) -> dict[str, Any]:
        amount = None if self.amount is None else str(self.amount)
        return {"settle": self.call_id, "settlement": _settlement(self.settlement), "amount": amount}


@dataclass(frozen=True)
class ReleaseWrite(Write):
    """A reservation given back unspent; `unknown`: one whose reserve may or may not have been made (its answer
    was lost, or never came), released for good, so that a reserve arriving late makes nothing."""

    reservation_id: str
    unknown: bool = False

    def statement(self) -> tuple[str, tuple[Any, ...]]:
        return (_RELEASE_UNKNOWN if self.unknown else _RELEASE), (self.reservation_id,)

    def to_json(self) -> dict[str, Any]:
        return {"release": self.reservation_id, "unknown": self.unknown}


@dataclass(frozen=True)
class MarginWrite(Write):
    """A count margin learned from a shortfall (`llmclient_margins`), for every process to start from."""

    key: str
    margin: float

    def statement(self) -> tuple[str, tuple[Any, ...]]:
        return _MARGIN, (self.key, self.margin)

    def to_json(self) -> dict[str, Any]:
        return {"margin": self.key, "value": self.margin}


@dataclass(frozen=True)
class RateSettleWrite(Write):
    """A rate-limit hold ended with its actual tokens (None keeps its reservation); batched into one statement."""

    spooled: ClassVar[bool] = False
    hold: int
    tokens: int | None


class Writer:
    """A store's queue of writes and the task on the store loop that applies them (see the module docstring)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self._inbox: list[Write] = []  # handed over, not yet taken in by the store loop
        self._inbox_lock = threading.Lock()
        self._called = False  # whether the store loop has been asked to take the inbox in
        self._queue: list[Write] = []
        self._pending = 0  # queued or being written; touched on the store loop only
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def put(self, write: Write) -> None:
        """Hand `write` over (from any thread; returns at once). Writes handed over together wake the store loop
        once: every wake-up is a thread switch, which on a busy core the caller's loop would wait for."""
        with self._inbox_lock:
            self._inbox.append(write)
            if self._called:
                return
            self._called = True
        StoreLoop.get().call_soon(self._take_in)

    def wake(self) -> None:
        """Look at the spool again (the database answered)."""
        StoreLoop.get().call_soon(self._take_in)

    def _take_in(self) -> None:
        """On the store loop: move the inbox to the queue and wake the writing task."""
        with self._inbox_lock:
            writes, self._inbox, self._called = self._inbox, [], False
        if self._task is None or self._task.done():
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._wake is not None and self._idle is not None
        if writes:
            self._queue += writes
            self._pending += len(writes)
            self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._write(batch)
                finally:
                    self._pending -= len(batch)
            if self._pending == 0:
                self._idle.set()
            if not self.store.down and self.store.spool_path.exists():
                await self.upload()

    async def _write(self, batch: list[Write]) -> None:
        if self.store.down:
            self._spool(batch, self.store.unavailable())
            return
        try:
            apply = partial(_apply, batch=batch, at=self.store.now())
            await asyncio.wait_for(self.store._execute(apply, retries=1), self.store.timeout)
        except asyncio.TimeoutError:
            self.store.failed()
            self._spool(batch, self.store._silent())
        except LLMClientError as exc:  # unavailable, or refused (privileges, schema): kept until it can be written
            self._spool(batch, exc)
        except Exception as exc:  # never let the writer die: what it holds is the ledger
            logger.exception("the llmclient writer failed on %d writes; spooled", len(batch))
            self._spool(batch, exc)

    def _spool(self, batch: list[Write], error: BaseException) -> None:
        kept = [write for write in batch if write.spooled]
        if kept:
            path = self.store.spool_path
            path.parent.mkdir(parents=True, exist_ok=True)
            # One short append per line (O_APPEND): processes on one machine can share the file.
            with path.open("a", encoding="utf-8") as file:
                file.writelines(json.dumps(write.to_json(), ensure_ascii=False) + "\n" for write in kept)
        if not self._warned:
            self._warned = True
            logger.warning(
                "%d writes for PostgreSQL at %s spooled to %s (uploaded when it answers; rate-limit holds end with "
                "their lease): %s",
                len(kept), self.store.where, self.store.spool_path, error,
            )  # fmt: skip

    def stop(self) -> None:
        """End the writer's task once drained (the store is closing; a later `put` starts it again)."""
        if self._task is not None and not self._queue:
            self._task.cancel()
            self._task = None

    async def drained(self, timeout: float | None) -> None:
        """Wait until everything handed over so far is written or spooled (at most `timeout` seconds; what is
        still queued then is spooled, so nothing handed over is lost)."""
        self._take_in()
        assert self._idle is not None
        if self._pending == 0:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            batch, self._queue = self._queue, []
            self._pending -= len(batch)
            self._spool(batch, self.store._silent())

    async def upload(self) -> int:
        """Upload the spool (idempotent: its writes were keyed when spooled); returns how many went up."""
        path = self.store.spool_path
        if not path.exists():
            return 0
        claimed = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.uploading")
        try:
            path.rename(claimed)
        except FileNotFoundError:  # another process claimed it first
            return 0
        lines = [line for line in claimed.read_text(encoding="utf-8").splitlines() if line.strip()]
        done = 0
        try:
            while done < len(lines):
                chunk = [from_json(json.loads(line)) for line in lines[done : done + _UPLOAD_BATCH]]
                await self.store._execute(partial(_apply, batch=chunk, at=self.store.now()), retries=1)
                done += len(chunk)
        except LLMClientError as exc:
            logger.warning("the spool for PostgreSQL at %s is kept for later: %s", self.store.where, exc)
        finally:
            if done < len(lines):  # put back what did not go up (with its keys, so a retry stays idempotent)
                with path.open("a", encoding="utf-8") as file:
                    file.writelines(line + "\n" for line in lines[done:])
            claimed.unlink(missing_ok=True)
        if done == len(lines):
            self._warned = False
        return done


async def _apply(connection: psycopg.AsyncConnection[Any], batch: list[Write], at: datetime | None) -> None:
    """Every write of `batch` in one transaction, pipelined: one round trip however many there are (`at`: when
    rate-limit holds ended, None for the server's clock)."""
    holds = [write for write in batch if isinstance(write, RateSettleWrite)]
    async with connection.pipeline(), connection.transaction():
        for write in batch:
            if not isinstance(write, RateSettleWrite):
                await connection.execute(*write.statement())
        if holds:
            ids, tokens = [write.hold for write in holds], [write.tokens for write in holds]
            await connection.execute(_RATE_SETTLE, (ids, tokens, at))


def row(
    call_id: str, record: LedgerRecord, budgets: tuple[str, ...] | None, charged: Decimal | None
) -> tuple[Any, ...]:
    """The `llmclient_calls` row of a record (`budgets`: the shared budgets charged, and how much)."""
    u, c = record.usage, record.cost
    return (
        call_id, datetime.fromtimestamp(record.timestamp, tz=timezone.utc), record.provider, record.model,
        record.kind, u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens, u.estimated,
        c and c.total, c and c.input, c and c.cached_input, c and c.output, c and c.price_source,
        c and c.price_checked, record.latency_s, record.attempts, record.request_id, list(record.tags),
        record.error, record.counted_input_tokens, list(budgets or ()), record.deployment, charged,
    )  # fmt: skip


def _settlement(settlement: Settlement | None) -> dict[str, Any] | None:
    if settlement is None:
        return None
    return {
        "reservation_id": settlement.reservation_id,
        "budgets": list(settlement.budgets),
        "at": None if settlement.at is None else settlement.at.isoformat(),
        "unknown_cost": None if settlement.unknown_cost is None else str(settlement.unknown_cost),
    }


def _settlement_from(data: dict[str, Any] | None) -> Settlement | None:
    if data is None:
        return None
    at, unknown = data.get("at"), data.get("unknown_cost")
    return Settlement(
        data["reservation_id"],
        tuple(data["budgets"]),
        None if at is None else datetime.fromisoformat(at),
        None if unknown is None else Decimal(unknown),
    )


def from_json(data: dict[str, Any]) -> Write:
    """The write a spool line holds (lines written before this version hold a record and/or a settlement)."""
    if "release" in data:
        return ReleaseWrite(data["release"], bool(data.get("unknown")))
    if "margin" in data:
        return MarginWrite(data["margin"], float(data["value"]))
    if "settle" in data:
        amount = data["amount"]
        settlement = _settlement_from(data["settlement"])
        assert settlement is not None
        return SettleWrite(data["settle"], settlement, None if amount is None else Decimal(amount))
    settlement = _settlement_from(data["settlement"])
    if data["record"] is None:  # an old line: a settlement alone, with no key of its own
        assert settlement is not None
        return SettleWrite(data["call_id"] or uuid.uuid4().hex, settlement, None)
    return RecordWrite(data["call_id"], record_from_dict(data["record"]), settlement)


def record_from_dict(data: dict[str, Any]) -> LedgerRecord:
    """The inverse of `LedgerRecord.to_dict`."""
    cost = data["cost"]
    return LedgerRecord(
        provider=data["provider"],
        model=data["model"],
        kind=data["kind"],
        usage=Usage.model_validate(data["usage"]),
        cost=None if cost is None else Cost.model_validate(cost),
        latency_s=data["latency_s"],
        attempts=data["attempts"],
        request_id=data["request_id"],
        tags=tuple(data["tags"]),
        error=data["error"],
        counted_input_tokens=data["counted_input_tokens"],
        timestamp=data["timestamp"],
        deployment=data.get("deployment"),
    )
