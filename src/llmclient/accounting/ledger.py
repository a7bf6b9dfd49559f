"""The cost ledger: one record per logical call, exact totals kept as calls are recorded, exports, repricing, and a
SQLite file.

A ledger's memory does not grow with the number of calls. Its totals and groupings (`total()`, `usage()`,
`by_model()`, `by_provider()`, `by_deployment()`, `by_tag()`, `summary()`) are running sums over every call, exact
(Decimal). Records themselves live where the ledger keeps them: the in-memory `CostLedger` (the default) keeps the
most recent `keep` (1,000 by default) and drops older ones, counting them (`dropped`); `SQLiteLedger` appends every
record to a file that several processes may share and reads them back by query, a page at a time. `Client(ledger=...)`
takes either, a `sqlite:///` URL, or a `postgresql://` URL for the ledger a whole fleet shares
(`llmclient.stores.PostgresLedger`; the client turns URLs into ledgers, `stores.urls`).
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmclient.accounting.catalog import PriceTable
from llmclient.accounting.records import (
    CSV_COLUMNS,
    LedgerRecord,
    Summary,
    csv_row,
    record_from_columns,
    summarise,
)
from llmclient.accounting.totals import GROUPINGS, UNTAGGED, Totals, check_grouping
from llmclient.drivers import is_self_hosted
from llmclient.errors import ConfigurationError, UnknownProviderError
from llmclient.model_ids import ModelId
from llmclient.types import Cost, Usage
from llmclient.usage import usd

if TYPE_CHECKING:
    import sqlite3

DEFAULT_KEEP = 1000
"""How many of the most recent records an in-memory ledger keeps (about 3 MB of them)."""


class CostLedger:
    """Every call's usage and cost: exact totals over all of them, and the most recent records.

    Totals and groupings cover every call ever added, however many: they are kept as calls are recorded, in memory
    that does not grow with their number. Records are kept in memory too, so only the last `keep` of them: older
    ones are dropped (`dropped` counts them) and `records`, iteration, `to_json()` and `to_csv()` cover the kept
    ones. To keep every record, give the client a SQLite file or a PostgreSQL database (`Client(ledger=...)`).

    ```python
    from llmclient import Client

    async with Client() as client:
        await client.chat("Hello there", model="fake/echo", tags=["greeting"])
        record = client.ledger.records[-1]
        assert (record.provider, record.usage.input_tokens, record.attempts) == ("fake", 2, 1)
        assert client.ledger.by_tag()["greeting"].calls == 1
    ```

    Args:
        keep: How many of the most recent records to keep in memory (0: none; totals are kept all the same).
    """

    def __init__(self, *, keep: int = DEFAULT_KEEP) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be a number of records, 0 or more, not {keep!r}")
        self.keep = keep
        self._lock = threading.Lock()
        self._kept: deque[LedgerRecord] = deque()  # at most `keep`: the window, oldest first
        self._totals = Totals()
        self._dropped_until: float | None = None  # the latest time among dropped records: `since` needs it

    def add(self, record: LedgerRecord) -> None:
        """Add one record. It must not wait on I/O (it runs in every call's synchronous finish): a ledger that
        writes elsewhere hands the record over and writes it in the background (see `drain`)."""
        with self._lock:
            self._totals.add_record(record)
            self._keep(record)

    def _keep(self, record: LedgerRecord) -> None:
        """Put `record` in the window, dropping the oldest past `keep` (the caller holds the lock)."""
        kept = self._kept
        kept.append(record)
        if len(kept) > self.keep:
            dropped = kept.popleft().timestamp
            if self._dropped_until is None or dropped > self._dropped_until:
                self._dropped_until = dropped

    def add_settled(self, record: LedgerRecord, settlement: object) -> None:
        """Append one record with a shared budget's `settlement`, both written in one statement (the PostgreSQL
        ledger in the budgets' own database: `Outcome.settlement`). A ledger that cannot do that refuses, rather
        than drop the settlement."""
        raise TypeError(f"{type(self).__name__} cannot write a shared budget's settlement with its records")

    async def drain(self) -> None:
        """Wait until every record added so far is stored (at once here; `Client.aclose` awaits it)."""

    def close(self) -> None:
        """Release what the ledger holds open (nothing in memory; a SQLite ledger closes its file)."""

    # -- records -------------------------------------------------------------------------------------------------

    @property
    def records(self) -> Sequence[LedgerRecord]:
        """A snapshot of the most recent records added through this object, oldest first: at most `keep` of them.

        In memory these are all the records there are (`dropped` says how many went before them); a SQLite or
        PostgreSQL ledger holds the rest, read back by iterating the ledger.
        """
        with self._lock:
            return tuple(self._kept)

    @property
    def dropped(self) -> int:
        """How many records were dropped from memory to stay within `keep` (their figures stay in the totals)."""
        with self._lock:
            return self._totals.calls - len(self._kept)

    def count(self) -> int:
        """How many calls the ledger has recorded, dropped records included."""
        with self._lock:
            return self._current().calls

    def __len__(self) -> int:
        """How many records iterating the ledger yields: the kept ones, in memory."""
        with self._lock:
            return len(self._kept)

    def __iter__(self) -> Iterator[LedgerRecord]:
        """The records the ledger holds, oldest first: the kept ones, in memory."""
        return iter(self.records)

    def __bool__(self) -> bool:
        # A ledger is there whether or not it keeps records: `if ledger:` must neither depend on `keep` nor make
        # `len()` query a database.
        return True

    def __repr__(self) -> str:
        with self._lock:
            everything, kept = self._totals.summary_of_all(), len(self._kept)
        return f"CostLedger({_figures(everything)}, kept={kept}, keep={self.keep})"

    # -- totals --------------------------------------------------------------------------------------------------

    def _current(self) -> Totals:
        """The totals, up to date (the caller holds the lock; a SQLite ledger first reads rows new in its file)."""
        return self._totals

    def total(self) -> Decimal:
        """The summed cost in USD of every priced call (calls with an unknown price add nothing)."""
        with self._lock:
            return self._current().summary_of_all().cost

    def usage(self) -> Usage:
        """Every call's usage added up."""
        with self._lock:
            return self._current().summary_of_all().usage

    def summary(self, by: str = "model", *, since: datetime | None = None) -> dict[str, Summary]:
        """Totals grouped `by` "model", "provider", "deployment", "tag" (calls without tags under "(untagged)") or
        "day" (UTC), over every call, or over those that ended at `since` or later.

        Raises:
            ValueError: An unknown grouping; or `since` reaches back past the records an in-memory ledger kept
                (a SQLite or PostgreSQL ledger answers for any period).
        """
        check_grouping(by, GROUPINGS)
        if since is not None:
            return self._summary_since(by, since)
        with self._lock:
            return self._current().summary(by)

    def _summary_since(self, by: str, since: datetime) -> dict[str, Summary]:
        at = since.timestamp()
        with self._lock:
            if self._dropped_until is not None and self._dropped_until >= at:
                raise ValueError(
                    f"this in-memory ledger keeps its last {self.keep:,} records, and calls since {since.isoformat()} "
                    "include some it has dropped; use a SQLite or PostgreSQL ledger to summarise any period"
                )
            records = [record for record in self._kept if record.timestamp >= at]
        totals = Totals()
        for record in records:
            totals.add_record(record)
        return totals.summary(by)

    def by_model(self) -> dict[str, Summary]:
        """Totals per `provider/model`."""
        return self.summary("model")

    def by_provider(self) -> dict[str, Summary]:
        """Totals per provider."""
        return self.summary("provider")

    def by_deployment(self) -> dict[str, Summary]:
        """Totals per deployment of a model group; a call made without routing counts under its provider."""
        return self.summary("deployment")

    def by_tag(self) -> dict[str, Summary]:
        """Totals per tag (a record with several tags counts in each; untagged calls are left out)."""
        groups = self.summary("tag")
        groups.pop(UNTAGGED, None)
        return groups

    def reprice(self, model_id: str, prices: PriceTable | None = None) -> Decimal | None:
        """What the recorded usage of every call would have cost on another model; None if unpriced or not a model
        id. Exact from the totals: a price is linear in each kind of token.

        Args:
            model_id: Any id a `Client` call accepts: `"provider/model"` or `"provider:model"`.
            prices: The table to price with; the shipped one by default.
        """
        try:
            provider, model = ModelId.parse(model_id)
        except UnknownProviderError:
            return None
        entry = (prices or PriceTable.default()).lookup(provider, model, self_hosted=is_self_hosted(provider))
        if entry is None:
            return None
        return entry.cost(self.usage()).total

    # -- exports -------------------------------------------------------------------------------------------------

    def to_json(self) -> str:
        """The records the ledger holds (the kept ones in memory; every row of a SQLite or PostgreSQL ledger) as a
        JSON array."""
        return json.dumps([r.to_dict() for r in self], ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        """The records the ledger holds (as `to_json`) as CSV, one row per call, usage and cost flattened."""
        import csv

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(r) for r in self)
        return buffer.getvalue()


def _figures(everything: Summary) -> str:
    unpriced = f", unpriced_calls={everything.unpriced_calls}" if everything.unpriced_calls else ""
    return f"calls={everything.calls}, total_usd={usd(everything.cost)}{unpriced}"


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp           REAL    NOT NULL,   -- Unix time the call ended
    provider            TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    kind                TEXT    NOT NULL,   -- chat | stream | embed
    input_tokens        INTEGER NOT NULL,   -- uncached prompt tokens
    cached_input_tokens INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,   -- reasoning included
    reasoning_tokens    INTEGER NOT NULL,
    estimated           INTEGER NOT NULL,   -- 1 when any figure was counted locally
    cost_usd            TEXT,               -- exact Decimal as text; NULL when the price is unknown
    cost_input_usd      TEXT,
    cost_cached_usd     TEXT,
    cost_output_usd     TEXT,
    price_source        TEXT,
    price_checked       TEXT,
    latency_s           REAL    NOT NULL,
    attempts            INTEGER NOT NULL,
    request_id          TEXT,
    tags                TEXT    NOT NULL,   -- JSON array
    error               TEXT,
    counted_input_tokens INTEGER,
    deployment          TEXT,               -- the model group's deployment that served the call
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,  -- prompt tokens written to a cache
    cost_cache_write_usd TEXT
);
CREATE INDEX IF NOT EXISTS calls_model ON calls (provider, model);
CREATE INDEX IF NOT EXISTS calls_timestamp ON calls (timestamp);
"""
# Columns added after the first version, each added in place to a file written before it.
_ADDED_COLUMNS = (
    ("deployment", "TEXT"),
    ("cache_write_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("cost_cache_write_usd", "TEXT"),
)
_PAGE = 500
"""Rows read per query when iterating a file: memory stays bounded however large the file is."""


class SQLiteLedger(CostLedger):
    """A ledger that appends every record to a SQLite file (stdlib sqlite3, WAL mode) and reads them back by query.

    Several clients and processes may append to one file: each record is one short transaction, and writers wait
    up to 30 s for the lock. Totals and groupings cover every row in the file, those other processes wrote
    included: each read first folds in the rows added since the last one, so a read costs what is new, and memory
    holds the running totals, not the rows. Iterating the ledger (and `to_json()`, `to_csv()`, `len()`) reads the
    whole file, a page at a time; `records` are the last `keep` records added through this object.

    Args:
        path: The file (made, with its folders, when missing).
        keep: How many of this object's most recent records `records` keeps in memory.
    """

    def __init__(self, path: str | Path, *, keep: int = DEFAULT_KEEP) -> None:
        import sqlite3  # stdlib, but only ledgers that persist need it

        super().__init__(keep=keep)
        self.path = Path(path)
        if not self.path.parent.is_dir():  # a typo in the path should not quietly start a ledger somewhere else
            raise ConfigurationError(
                f"the ledger's folder {self.path.parent} does not exist; create it, or give another path"
            )
        self._connection: sqlite3.Connection | None = None
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SQLITE_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(calls)")}
        for name, declaration in _ADDED_COLUMNS:
            if name not in columns:  # a ledger written by an earlier version: nullable columns, added in place
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                    db.execute(f"ALTER TABLE calls ADD COLUMN {name} {declaration}")
        self._folded = 0  # the id of the last row folded into the totals

    @property
    def _db(self) -> sqlite3.Connection:
        """The open file: opened again on use after `close()` (a closed client's ledger can still be read)."""
        if self._connection is None:
            import sqlite3

            self._connection = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        return self._connection

    def __repr__(self) -> str:
        with self._lock:
            everything = self._current().summary_of_all()
        return f"SQLiteLedger({str(self.path)!r}, {_figures(everything)})"

    def add(self, record: LedgerRecord) -> None:
        u, c = record.usage, record.cost
        row = (
            record.timestamp, record.provider, record.model, record.kind, u.input_tokens, u.cached_input_tokens,
            u.output_tokens, u.reasoning_tokens, int(u.estimated), _text(c, "total"), _text(c, "input"),
            _text(c, "cached_input"), _text(c, "output"), c and c.price_source, c and c.price_checked,
            record.latency_s, record.attempts, record.request_id, json.dumps(list(record.tags)), record.error,
            record.counted_input_tokens, record.deployment, u.cache_write_tokens, _text(c, "cache_write"),
        )  # fmt: skip
        with self._lock:
            self._db.execute(_INSERT, row)
            self._keep(record)  # the totals take the row from the file, with other processes' rows

    def _current(self) -> Totals:
        for row in self._db.execute(_NEW_ROWS_SELECT, (self._folded,)):
            self._folded = row[0]
            _fold(self._totals, row[1:])
        return self._totals

    @property
    def dropped(self) -> int:
        """Always 0: the file keeps every record."""
        return 0

    def __len__(self) -> int:
        """How many records the file holds."""
        return self.count()

    def __iter__(self) -> Iterator[LedgerRecord]:
        """Every record in the file, oldest first, read a page at a time (rows added meanwhile are included)."""
        last = 0
        while True:
            with self._lock:
                page = self._db.execute(_PAGE_SELECT, (last,)).fetchall()
            for row in page:
                yield _record_from_row(row[1:])
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    def _summary_since(self, by: str, since: datetime) -> dict[str, Summary]:
        totals = Totals()
        with self._lock:  # folded straight from the cursor: nothing but the running sums is held
            for row in self._db.execute(_SINCE_SELECT, (since.timestamp(),)):
                _fold(totals, row)
        return totals.summary(by)

    def close(self) -> None:
        """Close the database file (`Client.aclose` does, for a ledger it opened); a later use opens it again."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()


_COLUMNS = (
    "timestamp, provider, model, kind, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, "
    "estimated, cost_usd, cost_input_usd, cost_cached_usd, cost_output_usd, price_source, price_checked, "
    "latency_s, attempts, request_id, tags, error, counted_input_tokens, deployment, cache_write_tokens, "
    "cost_cache_write_usd"
)
_INSERT = f"INSERT INTO calls ({_COLUMNS}) VALUES ({', '.join('?' * 24)})"
_TOTALS_COLUMNS = (
    "provider, model, deployment, tags, timestamp, input_tokens, cached_input_tokens, cache_write_tokens, "
    "output_tokens, reasoning_tokens, estimated, cost_usd"
)
_PAGE_SELECT = f"SELECT id, {_COLUMNS} FROM calls WHERE id > ? ORDER BY id LIMIT {_PAGE}"
_NEW_ROWS_SELECT = f"SELECT id, {_TOTALS_COLUMNS} FROM calls WHERE id > ? ORDER BY id"
_SINCE_SELECT = f"SELECT {_TOTALS_COLUMNS} FROM calls WHERE timestamp >= ?"


def _fold(totals: Totals, row: Sequence[Any]) -> None:
    provider, model, deployment, tags, timestamp, tokens_in, cached, write, output, reasoning, estimated, cost = row
    totals.add(
        provider=provider,
        model=model,
        deployment=deployment,
        tags=() if tags == "[]" else json.loads(tags),
        timestamp=timestamp,
        figures=(tokens_in, cached, write or 0, output, reasoning, bool(estimated)),
        cost=None if cost is None else Decimal(cost),
    )


def _text(cost: Cost | None, part: str) -> str | None:
    return None if cost is None else str(getattr(cost, part))


def _record_from_row(row: Sequence[Any]) -> LedgerRecord:
    (timestamp, provider, model, kind, input_tokens, cached, output, reasoning, estimated, total, cost_in,
     cost_cached, cost_out, source, checked, latency, attempts, request_id, tags, error, counted,
     deployment, write, cost_write) = row  # fmt: skip
    return record_from_columns(
        timestamp=timestamp, provider=provider, model=model, kind=kind, input_tokens=input_tokens,
        cached_input_tokens=cached, output_tokens=output, reasoning_tokens=reasoning, estimated=estimated,
        cost=(total, cost_in, cost_cached, cost_out), price_source=source, price_checked=checked, latency_s=latency,
        attempts=attempts, request_id=request_id, tags=json.loads(tags), error=error, counted_input_tokens=counted,
        deployment=deployment, cache_write_tokens=write, cache_write_cost=cost_write,
    )  # fmt: skip


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_KEEP",
    "SQLITE_SCHEMA",
    "CostLedger",
    "LedgerRecord",
    "SQLiteLedger",
    "Summary",
    "record_from_columns",
    "summarise",
]
