"""The ledger in PostgreSQL: one row per logical call for the whole fleet, written idempotently, never lost.

Each record gets a call id when it is added; the row is `INSERT ... ON CONFLICT (call_id) DO NOTHING`, so a write
retried after a lost connection (the first may have committed) never counts twice. When a shared budget admitted
the call, its settlement (drop the reservation, add the actual cost to the budgets) happens in the same
transaction, and only if the row was new: the budgets' spend is always the exact sum of their ledger rows.

A write that fails twice (the database is down) goes to a spool file on local disk (JSON lines, one per call)
with a `FleetDegradedWarning`; the next successful write, `flush()` or `llmclient db flush` uploads it, with the
same call ids, so a row is neither lost nor duplicated.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmclient.accounting.ledger import CostLedger, LedgerRecord, Summary, record_from_columns
from llmclient.stores.postgres import PostgresStore, Settlement, StoreUnavailableError, warn_degraded
from llmclient.types import Cost, Usage

if TYPE_CHECKING:
    import psycopg

_COLUMNS = (
    "call_id, at, provider, model, kind, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, "
    "estimated, cost_usd, cost_input_usd, cost_cached_usd, cost_output_usd, price_source, price_checked, "
    "latency_s, attempts, request_id, tags, error, counted_input_tokens, budgets, deployment"
)
_INSERT = (
    f"INSERT INTO llmclient_calls ({_COLUMNS}) VALUES ({', '.join(['%s'] * 24)}) "
    "ON CONFLICT (call_id) DO NOTHING RETURNING call_id"
)
_GROUPS = {
    "model": "SELECT provider || '/' || model AS key, {aggregates} FROM llmclient_calls {where} GROUP BY 1",
    "provider": "SELECT provider AS key, {aggregates} FROM llmclient_calls {where} GROUP BY 1",
    "tag": "SELECT coalesce(tag, '(untagged)') AS key, {aggregates} FROM llmclient_calls "
    "LEFT JOIN LATERAL unnest(tags) AS tag ON true {where} GROUP BY 1",
    "budget": "SELECT coalesce(budget, '(no shared budget)') AS key, {aggregates} FROM llmclient_calls "
    "LEFT JOIN LATERAL unnest(budgets) AS budget ON true {where} GROUP BY 1",
    "day": "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS key, {aggregates} FROM llmclient_calls "
    "{where} GROUP BY 1",
    # A call made without routing counts under its provider, as in the SQLite report.
    "deployment": "SELECT coalesce(deployment, provider) AS key, {aggregates} FROM llmclient_calls {where} GROUP BY 1",
}
_AGGREGATES = (
    "count(*), coalesce(sum(input_tokens), 0), coalesce(sum(cached_input_tokens), 0), "
    "coalesce(sum(output_tokens), 0), coalesce(sum(reasoning_tokens), 0), bool_or(estimated), "
    "coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL)"
)


def default_spool_dir() -> Path:
    """Where records wait for the database when it is down: `$XDG_STATE_HOME/llmclient/spool`."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "llmclient" / "spool"


class PostgresLedger(CostLedger):
    """A `CostLedger` whose records go to PostgreSQL, shared by every process and machine using the same URL.

    `records` and `len()` are this process's records (kept in memory, like `CostLedger`); `total()`,
    `by_model()`, `by_provider()`, `by_tag()` and `summary()` are the whole fleet's, computed in the database.

    Args:
        store: The database (`PostgresStore.shared(url)` for a URL).
        spool_dir: Where records wait when the database is down (default `default_spool_dir()`).
    """

    def __init__(self, store: PostgresStore, *, spool_dir: str | Path | None = None) -> None:
        super().__init__()
        self.store = store
        self.spool_path = Path(spool_dir or default_spool_dir()) / f"{store.key}.jsonl"
        self._pending = threading.local()

    def __repr__(self) -> str:
        return f"PostgresLedger({self.store!r})"

    # -- writing -----------------------------------------------------------------------------------------------

    def settle_with_next_record(self, settlement: Settlement) -> None:
        """Have the next `add` in this thread settle `settlement` in its transaction (the shared budget step
        calls this just before the pipeline's recording step adds the call's record)."""
        leftover = getattr(self._pending, "settlement", None)
        if leftover is not None:  # a previous call's record never came: settle it on its own
            self._write(None, None, leftover)
        self._pending.settlement = settlement

    def add(self, record: LedgerRecord) -> None:
        """Write one record (and the pending settlement of its call) in one transaction; spool it if the database
        cannot be reached."""
        settlement: Settlement | None = getattr(self._pending, "settlement", None)
        self._pending.settlement = None
        with self._lock:
            self._records.append(record)
        self._write(uuid.uuid4().hex, record, settlement)

    def _write(self, call_id: str | None, record: LedgerRecord | None, settlement: Settlement | None) -> None:
        try:
            self.store.run(lambda connection: write(connection, call_id, record, settlement))
        except StoreUnavailableError as exc:
            self._spool(call_id, record, settlement)
            warn_degraded(f"the ledger record was spooled to {self.spool_path} for later upload: {exc}")
            return
        if self.spool_path.exists():
            self.flush()

    def _spool(self, call_id: str | None, record: LedgerRecord | None, settlement: Settlement | None) -> None:
        entry = {
            "call_id": call_id,
            "record": None if record is None else record.to_dict(),
            "settlement": None
            if settlement is None
            else {
                "reservation_id": settlement.reservation_id,
                "budgets": list(settlement.budgets),
                "at": None if settlement.at is None else settlement.at.isoformat(),
            },
        }
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        # One short append per line (O_APPEND): processes on one machine can share the file.
        with self.spool_path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def flush(self) -> int:
        """Upload spooled records (idempotent: their call ids were fixed when spooled); returns how many."""
        return flush_spool(self.store, self.spool_path)

    # -- reading (the whole fleet) ----------------------------------------------------------------------------

    def summary(self, by: str, *, since: datetime | None = None) -> dict[str, Summary]:
        """Totals grouped `by` "model", "provider", "tag", "day" (UTC) or "budget", optionally since a time."""
        if by not in _GROUPS:
            raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(_GROUPS)}")
        where = "" if since is None else "WHERE at >= %s"
        sql = _GROUPS[by].format(aggregates=_AGGREGATES, where=where) + " ORDER BY 1"

        def query(connection: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return connection.execute(sql, () if since is None else (since,)).fetchall()

        return {row[0]: _summary(row[1:]) for row in self.store.run(query)}

    def total(self) -> Decimal:
        """The summed cost of every priced call in the shared ledger."""

        def query(connection: psycopg.Connection[Any]) -> Decimal:
            row = connection.execute("SELECT coalesce(sum(cost_usd), 0) FROM llmclient_calls").fetchone()
            return Decimal(row[0]) if row else Decimal(0)

        total: Decimal = self.store.run(query)
        return total

    def count(self) -> int:
        """How many calls the shared ledger holds."""
        row = self.store.run(lambda c: c.execute("SELECT count(*) FROM llmclient_calls").fetchone())
        return int(row[0])

    def by_model(self) -> dict[str, Summary]:
        return self.summary("model")

    def by_provider(self) -> dict[str, Summary]:
        return self.summary("provider")

    def by_tag(self) -> dict[str, Summary]:
        return self.summary("tag")

    def rows(self, *, since: datetime | None = None) -> list[LedgerRecord]:
        """Every record in the shared ledger (oldest first), e.g. to export it."""
        sql = f"SELECT {_COLUMNS} FROM llmclient_calls {'' if since is None else 'WHERE at >= %s'} ORDER BY at"
        rows = self.store.run(lambda c: c.execute(sql, () if since is None else (since,)).fetchall())
        return [_record_from_row(row) for row in rows]

    def close(self) -> None:
        """Nothing to close per ledger: the store's pool is shared (`PostgresStore.close`)."""


def write(
    connection: psycopg.Connection[Any],
    call_id: str | None,
    record: LedgerRecord | None,
    settlement: Settlement | None,
) -> None:
    """Insert the row (if new) and settle in one transaction; a repeat of the same call id changes nothing."""
    with connection.transaction():
        inserted = True
        if record is not None:
            inserted = connection.execute(_INSERT, _row(call_id, record, settlement)).fetchone() is not None
        if inserted and settlement is not None:
            cost = None if record is None or record.cost is None else record.cost.total
            connection.execute(
                "SELECT llmclient_settle(%s, %s, %s, %s)",
                (settlement.reservation_id, list(settlement.budgets), cost, settlement.at),
            )


def flush_spool(store: PostgresStore, path: Path) -> int:
    """Upload a spool file's entries; the file is renamed first, so two processes never upload the same lines."""
    if not path.exists():
        return 0
    claimed = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.uploading")
    try:
        path.rename(claimed)
    except FileNotFoundError:  # another process claimed it first
        return 0
    entries = [json.loads(line) for line in claimed.read_text(encoding="utf-8").splitlines() if line.strip()]
    done = 0
    try:
        for entry in entries:
            raw = entry["settlement"]
            settlement = None
            if raw is not None:
                at = None if raw["at"] is None else datetime.fromisoformat(raw["at"])
                settlement = Settlement(raw["reservation_id"], tuple(raw["budgets"]), at)
            record = None if entry["record"] is None else record_from_dict(entry["record"])
            call_id: str | None = entry["call_id"]

            def upload(
                c: psycopg.Connection[Any], i: str | None = call_id, r: Any = record, s: Any = settlement
            ) -> None:
                write(c, i, r, s)

            store.run(upload)
            done += 1
    finally:
        rest = entries[done:]
        if rest:  # put back what did not go up (with its call ids, so a retry stays idempotent)
            with path.open("a", encoding="utf-8") as file:
                file.writelines(json.dumps(entry, ensure_ascii=False) + "\n" for entry in rest)
        claimed.unlink(missing_ok=True)
    return done


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
    )


def _row(call_id: str | None, record: LedgerRecord, settlement: Settlement | None) -> tuple[Any, ...]:
    u, c = record.usage, record.cost
    return (
        call_id, datetime.fromtimestamp(record.timestamp, tz=timezone.utc), record.provider, record.model,
        record.kind, u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens, u.estimated,
        c and c.total, c and c.input, c and c.cached_input, c and c.output, c and c.price_source,
        c and c.price_checked, record.latency_s, record.attempts, record.request_id, list(record.tags),
        record.error, record.counted_input_tokens, [] if settlement is None else list(settlement.budgets),
        record.deployment,
    )  # fmt: skip


def _record_from_row(row: Sequence[Any]) -> LedgerRecord:
    (_, at, provider, model, kind, input_tokens, cached, output, reasoning, estimated, total, cost_in, cost_cached,
     cost_out, source, checked, latency, attempts, request_id, tags, error, counted, _budgets,
     deployment) = row  # fmt: skip
    return record_from_columns(
        timestamp=at.timestamp(), provider=provider, model=model, kind=kind, input_tokens=input_tokens,
        cached_input_tokens=cached, output_tokens=output, reasoning_tokens=reasoning, estimated=estimated,
        cost=(total, cost_in, cost_cached, cost_out), price_source=source, price_checked=checked, latency_s=latency,
        attempts=attempts, request_id=request_id, tags=tags, error=error, counted_input_tokens=counted,
        deployment=deployment,
    )  # fmt: skip


def _summary(row: Sequence[Any]) -> Summary:
    calls, input_tokens, cached, output, reasoning, estimated, cost, unpriced = row
    usage = Usage(
        input_tokens=int(input_tokens),
        cached_input_tokens=int(cached),
        output_tokens=int(output),
        reasoning_tokens=int(reasoning),
        estimated=bool(estimated),
    )
    return Summary(calls=int(calls), usage=usage, cost=Decimal(cost), unpriced_calls=int(unpriced))
