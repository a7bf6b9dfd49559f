"""The cost ledger: one record per logical call, with totals, groupings, exports, repricing and a SQLite file.

The in-memory `CostLedger` is the default; `SQLiteLedger` also appends every record to a file that several
processes may share. `Client(ledger=...)` takes either, a `sqlite:///` URL, or a `postgresql://` URL for the ledger
a whole fleet shares (`llmclient.stores.PostgresLedger`; the client turns URLs into ledgers, `stores.urls`).
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmclient.accounting.catalog import PriceTable
from llmclient.drivers import is_self_hosted
from llmclient.errors import UnknownProviderError
from llmclient.model_ids import ModelId
from llmclient.types import Cost, Usage


@dataclass(frozen=True)
class LedgerRecord:
    """What one logical call used and cost.

    `cost` is None when the model has no known price (unknown is not free). `attempts` counts the requests sent,
    retries included; usage is recorded once, from the attempt that was billed. `counted_input_tokens` is the
    local pre-call count, so `input_drift` shows how far the estimate was from what the provider reported.
    """

    provider: str
    model: str
    kind: str
    usage: Usage
    cost: Cost | None
    latency_s: float
    attempts: int = 1
    request_id: str | None = None
    tags: tuple[str, ...] = ()
    error: str | None = None
    counted_input_tokens: int | None = None
    timestamp: float = field(default_factory=time.time)
    deployment: str | None = None
    """For a model group's call: the deployment that served (or last failed) it."""

    @property
    def input_drift(self) -> int | None:
        """Reported prompt tokens minus the pre-call count (None when either is missing or both are local)."""
        if self.counted_input_tokens is None or self.usage.estimated:
            return None
        return self.usage.prompt_tokens - self.counted_input_tokens

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (Decimals as strings)."""
        data = asdict(self)
        data["usage"] = self.usage.model_dump()
        data["cost"] = None if self.cost is None else self.cost.model_dump(mode="json")
        data["tags"] = list(self.tags)
        data["input_drift"] = self.input_drift
        return data


@dataclass(frozen=True)
class Summary:
    """Calls, tokens and cost of a group of records. `cost` leaves out records without a price."""

    calls: int
    usage: Usage
    cost: Decimal
    unpriced_calls: int


class CostLedger:
    """A thread-safe, append-only record of every call, with totals, groupings, exports and repricing.

    ```python
    from llmclient import Client

    async with Client() as client:
        await client.chat("Hello there", model="fake/echo", tags=["greeting"])
        record = client.ledger.records[-1]
        assert (record.provider, record.usage.input_tokens, record.attempts) == ("fake", 2, 1)
        assert client.ledger.by_tag()["greeting"].calls == 1
    ```
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[LedgerRecord] = []

    def add(self, record: LedgerRecord) -> None:
        """Append one record. It must not wait on I/O (it runs in every call's synchronous finish): a ledger that
        writes elsewhere hands the record over and writes it in the background (see `drain`)."""
        with self._lock:
            self._records.append(record)

    def add_settled(self, record: LedgerRecord, settlement: object) -> None:
        """Append one record with a shared budget's `settlement`, both written in one statement (the PostgreSQL
        ledger in the budgets' own database: `Outcome.settlement`). A ledger that cannot do that refuses, rather
        than drop the settlement."""
        raise TypeError(f"{type(self).__name__} cannot write a shared budget's settlement with its records")

    async def drain(self) -> None:
        """Wait until every record added so far is stored (at once here; `Client.aclose` awaits it)."""

    @property
    def records(self) -> Sequence[LedgerRecord]:
        """A snapshot of every record, oldest first."""
        with self._lock:
            return tuple(self._records)

    def total(self) -> Decimal:
        """The summed cost in USD of every priced record (records with an unknown price add nothing)."""
        return sum((r.cost.total for r in self.records if r.cost is not None), Decimal(0))

    def usage(self) -> Usage:
        """Every record's usage added up."""
        return sum((r.usage for r in self.records), Usage())

    def _group(self, key: Any) -> dict[str, Summary]:
        groups: dict[str, list[LedgerRecord]] = {}
        for record in self.records:
            for name in key(record):
                groups.setdefault(name, []).append(record)
        return {name: summarise(records) for name, records in groups.items()}

    def by_model(self) -> dict[str, Summary]:
        """Totals per `provider/model`."""
        return self._group(lambda r: (f"{r.provider}/{r.model}",))

    def by_provider(self) -> dict[str, Summary]:
        """Totals per provider."""
        return self._group(lambda r: (r.provider,))

    def by_deployment(self) -> dict[str, Summary]:
        """Totals per deployment of a model group; a call made without routing counts under its provider."""
        return self._group(lambda r: (r.deployment or r.provider,))

    def by_tag(self) -> dict[str, Summary]:
        """Totals per tag (a record with several tags counts in each)."""
        return self._group(lambda r: r.tags)

    def reprice(self, model_id: str, prices: PriceTable | None = None) -> Decimal | None:
        """What the recorded usage would have cost on another model; None if unpriced or not a model id.

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
        return sum((entry.cost(r.usage).total for r in self.records), Decimal(0))

    def to_json(self) -> str:
        """Every record as a JSON array."""
        return json.dumps([r.to_dict() for r in self.records], ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        """Every record as CSV, one row per call, usage and cost flattened."""
        buffer = io.StringIO()
        import csv

        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for r in self.records:
            u, c = r.usage, r.cost
            writer.writerow(
                [
                    f"{r.timestamp:.6f}", r.provider, r.model, r.kind, u.input_tokens, u.cached_input_tokens,
                    u.output_tokens, u.reasoning_tokens, u.estimated, "" if c is None else c.total,
                    "" if c is None else c.price_source, f"{r.latency_s:.6f}", r.attempts, r.request_id or "",
                    ";".join(r.tags), r.error or "", r.deployment or "",
                ]
            )  # fmt: skip
        return buffer.getvalue()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


CSV_COLUMNS = (
    "timestamp",
    "provider",
    "model",
    "kind",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "estimated",
    "cost_usd",
    "price_source",
    "latency_s",
    "attempts",
    "request_id",
    "tags",
    "error",
    "deployment",
)


def summarise(records: Sequence[LedgerRecord]) -> Summary:
    """Calls, usage and cost of some records."""
    return Summary(
        calls=len(records),
        usage=sum((r.usage for r in records), Usage()),
        cost=sum((r.cost.total for r in records if r.cost is not None), Decimal(0)),
        unpriced_calls=sum(1 for r in records if r.cost is None),
    )


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
    deployment          TEXT                -- the model group's deployment that served the call
);
CREATE INDEX IF NOT EXISTS calls_model ON calls (provider, model);
CREATE INDEX IF NOT EXISTS calls_timestamp ON calls (timestamp);
"""


class SQLiteLedger(CostLedger):
    """A ledger that also appends every record to a SQLite file (stdlib sqlite3, WAL mode).

    Several clients and processes may append to one file: each record is one short transaction, and writers wait
    up to 30 s for the lock. Records already in the file are loaded at start, so totals span runs.
    """

    def __init__(self, path: str | Path) -> None:
        import sqlite3  # stdlib, but only ledgers that persist need it

        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SQLITE_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
        if "deployment" not in columns:  # a ledger written before routing: one nullable column, added in place
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                self._db.execute("ALTER TABLE calls ADD COLUMN deployment TEXT")
        self._records.extend(_record_from_row(row) for row in self._db.execute(_SELECT))

    def add(self, record: LedgerRecord) -> None:
        u, c = record.usage, record.cost
        row = (
            record.timestamp, record.provider, record.model, record.kind, u.input_tokens, u.cached_input_tokens,
            u.output_tokens, u.reasoning_tokens, int(u.estimated), _text(c, "total"), _text(c, "input"),
            _text(c, "cached_input"), _text(c, "output"), c and c.price_source, c and c.price_checked,
            record.latency_s, record.attempts, record.request_id, json.dumps(list(record.tags)), record.error,
            record.counted_input_tokens, record.deployment,
        )  # fmt: skip
        with self._lock:
            self._db.execute(_INSERT, row)
            self._records.append(record)

    def close(self) -> None:
        """Close the database file."""
        import sqlite3

        with self._lock, contextlib.suppress(sqlite3.ProgrammingError):
            self._db.close()


_COLUMNS = (
    "timestamp, provider, model, kind, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, "
    "estimated, cost_usd, cost_input_usd, cost_cached_usd, cost_output_usd, price_source, price_checked, "
    "latency_s, attempts, request_id, tags, error, counted_input_tokens, deployment"
)
_INSERT = f"INSERT INTO calls ({_COLUMNS}) VALUES ({', '.join('?' * 22)})"
_SELECT = f"SELECT {_COLUMNS} FROM calls ORDER BY id"


def _text(cost: Cost | None, part: str) -> str | None:
    return None if cost is None else str(getattr(cost, part))


def _record_from_row(row: Sequence[Any]) -> LedgerRecord:
    (timestamp, provider, model, kind, input_tokens, cached, output, reasoning, estimated, total, cost_in,
     cost_cached, cost_out, source, checked, latency, attempts, request_id, tags, error, counted,
     deployment) = row  # fmt: skip
    return record_from_columns(
        timestamp=timestamp, provider=provider, model=model, kind=kind, input_tokens=input_tokens,
        cached_input_tokens=cached, output_tokens=output, reasoning_tokens=reasoning, estimated=estimated,
        cost=(total, cost_in, cost_cached, cost_out), price_source=source, price_checked=checked, latency_s=latency,
        attempts=attempts, request_id=request_id, tags=json.loads(tags), error=error, counted_input_tokens=counted,
        deployment=deployment,
    )  # fmt: skip


def record_from_columns(
    *,
    timestamp: float,
    provider: str,
    model: str,
    kind: str,
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    reasoning_tokens: int,
    estimated: Any,
    cost: tuple[Any, Any, Any, Any],
    price_source: str | None,
    price_checked: Any,
    latency_s: float,
    attempts: int,
    request_id: str | None,
    tags: Sequence[str],
    error: str | None,
    counted_input_tokens: int | None,
    deployment: str | None,
) -> LedgerRecord:
    """A record from a stored row's columns (SQLite's or PostgreSQL's): `cost` is (total, input, cached input,
    output) as Decimals or their text, all None when the price was unknown."""
    total, cost_in, cost_cached, cost_out = cost
    priced = None
    if total is not None:
        priced = Cost(
            input=Decimal(cost_in),
            cached_input=Decimal(cost_cached),
            output=Decimal(cost_out),
            total=Decimal(total),
            price_model=f"{provider}/{model}",
            price_source=price_source,
            price_checked=None if price_checked is None else str(price_checked),
            estimated=bool(estimated),
        )
    usage = Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens,
        estimated=bool(estimated),
    )
    return LedgerRecord(
        provider=provider,
        model=model,
        kind=kind,
        usage=usage,
        cost=priced,
        latency_s=latency_s,
        attempts=attempts,
        request_id=request_id,
        tags=tuple(tags),
        error=error,
        counted_input_tokens=counted_input_tokens,
        timestamp=timestamp,
        deployment=deployment,
    )
