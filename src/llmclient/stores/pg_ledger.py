"""The ledger in PostgreSQL: one row per logical call for the whole fleet, written idempotently, never lost.

`add` (the pipeline's synchronous recording step) gives the record a call id and hands it to the store's writer
(`stores.writer`) without waiting: the call has returned before its row is written. When a shared budget admitted
the call, its settlement (drop the reservation, add the charge to the budgets) comes with the record
(`add_settled`, from the call's `Outcome.settlement`), rides in the row's statement and happens only if the row
was new: a budget's spend is always the sum of its rows' charges.

While the database is down the writer spools to a local file (`PostgresStore.spool_path`) and uploads it, with
the same call ids, when the database answers again: a row is neither lost nor duplicated. Reading the fleet's
totals first waits for this process's writes, so a process reads what it has recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmclient.accounting.ledger import DEFAULT_KEEP, CostLedger, LedgerRecord, Summary, record_from_columns
from llmclient.accounting.totals import check_grouping
from llmclient.stores.base import Settlement
from llmclient.stores.postgres import PostgresStore, warn_degraded
from llmclient.stores.writer import COLUMNS, RecordWrite
from llmclient.types import Usage

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
_PAGE = 1000
"""Rows read per query when iterating the ledger: memory stays bounded however large the table is."""
_USAGE = (
    "SELECT count(*), coalesce(sum(input_tokens), 0), coalesce(sum(cached_input_tokens), 0), "
    "coalesce(sum(output_tokens), 0), coalesce(sum(reasoning_tokens), 0), coalesce(bool_or(estimated), false) "
    "FROM llmclient_calls"
)
_AGGREGATES = (
    "count(*), coalesce(sum(input_tokens), 0), coalesce(sum(cached_input_tokens), 0), "
    "coalesce(sum(output_tokens), 0), coalesce(sum(reasoning_tokens), 0), bool_or(estimated), "
    "coalesce(sum(cost_usd), 0), count(*) FILTER (WHERE cost_usd IS NULL)"
)


class PostgresLedger(CostLedger):
    """A `CostLedger` whose records go to PostgreSQL, shared by every process and machine using the same URL.

    `total()`, `usage()`, `count()`, `by_model()`, `by_provider()`, `by_deployment()`, `by_tag()` and `summary()`
    are the whole fleet's, computed in the database; iterating the ledger (and `len()`, `rows()`, `to_json()`,
    `to_csv()`) reads the fleet's records from it, a page at a time. Each blocks the calling thread for at most
    the store's timeout. `records` are the last `keep` records this object added (kept in memory).

    Args:
        store: The database (`PostgresStore.shared(url)` for a URL); its `spool_dir` is where records wait while
            it is down.
        keep: How many of this object's most recent records `records` keeps in memory.
    """

    def __init__(self, store: PostgresStore, *, keep: int = DEFAULT_KEEP) -> None:
        super().__init__(keep=keep)
        self.store = store

    @property
    def spool_path(self) -> Path:
        """Where records wait while the database is down (`PostgresStore.spool_path`)."""
        return self.store.spool_path

    # -- writing -----------------------------------------------------------------------------------------------

    def add(self, record: LedgerRecord) -> None:
        """Hand one record to the store's writer; returns at once."""
        self._put(record, None)

    def add_settled(self, record: LedgerRecord, settlement: object) -> None:
        """Hand one record and its call's shared-budget settlement to the store's writer, to be written in one
        statement (the settlement happens only if the row is new); returns at once."""
        if not isinstance(settlement, Settlement):
            raise TypeError(f"expected a stores.base.Settlement, not {type(settlement).__name__}")
        self._put(record, settlement)

    def _put(self, record: LedgerRecord, settlement: Settlement | None) -> None:
        with self._lock:
            self._keep(record)  # the totals are the database's
        self.store.writer.put(RecordWrite(uuid.uuid4().hex, record, settlement))
        if self.store.down:
            warn_degraded(f"PostgreSQL at {self.store.where} is unavailable; the ledger record is spooled to "
                          f"{self.spool_path} and uploaded when it answers")  # fmt: skip

    async def drain(self) -> None:
        """Wait until every record added so far is written (or spooled, when the database is down)."""
        await self.store.drain()

    def flush(self) -> int:
        """Upload spooled records (idempotent: their call ids were fixed when spooled); returns how many."""
        return self.store.upload()

    # -- reading (the whole fleet) ----------------------------------------------------------------------------

    def summary(self, by: str = "model", *, since: datetime | None = None) -> dict[str, Summary]:
        """Totals grouped `by` "model", "provider", "tag", "day" (UTC) or "budget", optionally since a time."""
        check_grouping(by, _GROUPS)
        where = "" if since is None else "WHERE at >= %s"
        sql = _GROUPS[by].format(aggregates=_AGGREGATES, where=where) + " ORDER BY 1"
        rows = self.store.fetch(sql, () if since is None else (since,))
        return {row[0]: _summary(row[1:]) for row in rows}

    def total(self) -> Decimal:
        """The summed cost of every priced call in the shared ledger."""
        [(total,)] = self.store.fetch("SELECT coalesce(sum(cost_usd), 0) FROM llmclient_calls")
        return Decimal(total)

    def count(self) -> int:
        """How many calls the shared ledger holds."""
        [(count,)] = self.store.fetch("SELECT count(*) FROM llmclient_calls")
        return int(count)

    def by_model(self) -> dict[str, Summary]:
        return self.summary("model")

    def by_provider(self) -> dict[str, Summary]:
        return self.summary("provider")

    def by_deployment(self) -> dict[str, Summary]:
        return self.summary("deployment")

    def by_tag(self) -> dict[str, Summary]:
        return self.summary("tag")

    def usage(self) -> Usage:
        """Every call's usage in the shared ledger added up."""
        [(_, input_tokens, cached, output, reasoning, estimated)] = self.store.fetch(_USAGE)
        return Usage(
            input_tokens=int(input_tokens),
            cached_input_tokens=int(cached),
            output_tokens=int(output),
            reasoning_tokens=int(reasoning),
            estimated=bool(estimated),
        )

    @property
    def dropped(self) -> int:
        """Always 0: the database keeps every record."""
        return 0

    def __len__(self) -> int:
        """How many calls the shared ledger holds (`count()`)."""
        return self.count()

    def __iter__(self) -> Iterator[LedgerRecord]:
        """Every record in the shared ledger, oldest first, read a page at a time."""
        return self._pages(None)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.store!r})"  # no figures: a repr must not wait on the database

    def rows(self, *, since: datetime | None = None) -> list[LedgerRecord]:
        """The records in the shared ledger (oldest first), all of them or those since a time, as one list: to
        export a large ledger a page at a time, iterate it instead."""
        return list(self._pages(since))

    def _pages(self, since: datetime | None) -> Iterator[LedgerRecord]:
        after: tuple[Any, ...] | None = None  # (at, call_id) of the last row read: keyset paging, no OFFSET
        while True:
            where = [] if since is None else ["at >= %s"]
            params: list[Any] = [] if since is None else [since]
            if after is not None:
                where.append("(at, call_id) > (%s, %s)")
                params += after
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            sql = f"SELECT {COLUMNS} FROM llmclient_calls {clause} ORDER BY at, call_id LIMIT {_PAGE}"
            page = self.store.fetch(sql, params)
            yield from (_record_from_row(row) for row in page)
            if len(page) < _PAGE:
                return
            after = (page[-1][1], page[-1][0])

    def close(self) -> None:
        """Nothing to close per ledger: the store's pool is shared (`PostgresStore.close`)."""


def _record_from_row(row: Sequence[Any]) -> LedgerRecord:
    (_, at, provider, model, kind, input_tokens, cached, output, reasoning, estimated, total, cost_in, cost_cached,
     cost_out, source, checked, latency, attempts, request_id, tags, error, counted, _budgets,
     deployment, _charged) = row  # fmt: skip
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
