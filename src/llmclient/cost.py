"""Prices with provenance, the cost ledger, and budgets — exact in `Decimal`, every token priced once.

```python
from decimal import Decimal
from llmclient import Client, Usage
from llmclient.cost import PriceTable

table = PriceTable.default()
entry = table.lookup("deepseek", "deepseek-chat")
cost = entry.cost(Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000, output_tokens=1_000_000))
assert cost.total == Decimal("0.28") + Decimal("0.028") + Decimal("0.42")
assert cost.price_source == "https://api-docs.deepseek.com/quick_start/pricing"
```

The formula: uncached input × input price + cached input × cached price (the input price where no cached price is
published) + output × output price; reasoning tokens are part of the output and priced with it unless the entry
prices them apart. Unknown models cost `None` — unknown is not free — and budgets refuse them unless told otherwise.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import re
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmclient.errors import BudgetExceededError
from llmclient.types import Cost, Usage

MILLION = Decimal(1_000_000)
# Providers that run on the user's own hardware: free unless the user sets a price.
LOCAL_PROVIDERS = frozenset({"transformers", "llamacpp", "ollama", "fake"})
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")


class UnknownPriceWarning(UserWarning):
    """A call's model has no known price, so its cost is None."""


@dataclass(frozen=True)
class PriceEntry:
    """The price of one model in USD per token, with where the figure came from."""

    model: str
    provider: str
    input: Decimal
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None
    reasoning: Decimal | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    mode: str = "chat"
    source: str | None = None
    checked: str | None = None

    @property
    def input_per_million(self) -> Decimal:
        """The input price in USD per million tokens, as pricing pages show it."""
        return self.input * MILLION

    @property
    def output_per_million(self) -> Decimal:
        """The output price in USD per million tokens."""
        return self.output * MILLION

    def cost(self, usage: Usage) -> Cost:
        """Price `usage`: every token exactly once, at its own rate."""
        cached_rate = self.input if self.cached_input is None else self.cached_input
        input_cost = self.input * usage.input_tokens
        cached_cost = cached_rate * usage.cached_input_tokens
        if self.reasoning is None:
            output_cost = self.output * usage.output_tokens
        else:
            visible = usage.output_tokens - usage.reasoning_tokens
            output_cost = self.output * visible + self.reasoning * usage.reasoning_tokens
        return Cost(
            input=input_cost,
            cached_input=cached_cost,
            output=output_cost,
            total=input_cost + cached_cost + output_cost,
            price_model=f"{self.provider}/{self.model}",
            price_source=self.source,
            price_checked=self.checked,
            estimated=usage.estimated,
        )

    def worst_case(self, input_tokens: int, max_output_tokens: int | None) -> Decimal | None:
        """The most a call can cost: every input token uncached and the whole output allowance used."""
        output = max_output_tokens if max_output_tokens is not None else self.max_output_tokens
        if output is None:
            # Without a bound on the output only free output is boundable (local models).
            return self.input * input_tokens if self.output == 0 and not self.reasoning else None
        return self.input * input_tokens + max(self.output, self.reasoning or Decimal(0)) * output

    @classmethod
    def from_litellm(cls, key: str, data: Mapping[str, Any], provider: str | None = None) -> PriceEntry:
        """An entry from one item of LiteLLM's `model_prices_and_context_window.json` (or ours)."""
        provider = provider or str(data.get("litellm_provider") or key.partition("/")[0])
        model = key.partition("/")[2] if key.startswith(f"{provider}/") else key
        return cls(
            model=model,
            provider=provider,
            input=_decimal(data.get("input_cost_per_token")) or Decimal(0),
            output=_decimal(data.get("output_cost_per_token")) or Decimal(0),
            cached_input=_decimal(data.get("cache_read_input_token_cost")),
            reasoning=_decimal(data.get("output_cost_per_reasoning_token")),
            max_input_tokens=_int(data.get("max_input_tokens")),
            max_output_tokens=_int(data.get("max_output_tokens")),
            mode=str(data.get("mode") or "chat"),
            source=data.get("source"),
            checked=data.get("checked"),
        )

    @classmethod
    def per_million(
        cls,
        model: str,
        provider: str,
        *,
        input: Decimal | str | int,
        output: Decimal | str | int = 0,
        cached_input: Decimal | str | int | None = None,
        source: str | None = None,
        checked: str | None = None,
        max_output_tokens: int | None = None,
    ) -> PriceEntry:
        """An entry from prices in USD per million tokens."""
        return cls(
            model=model,
            provider=provider,
            input=Decimal(str(input)) / MILLION,
            output=Decimal(str(output)) / MILLION,
            cached_input=None if cached_input is None else Decimal(str(cached_input)) / MILLION,
            source=source,
            checked=checked,
            max_output_tokens=max_output_tokens,
        )


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    # str() first: a float from LiteLLM's file becomes the decimal it was written as, not its binary expansion.
    return Decimal(str(value))


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class PriceTable:
    """Prices by `(provider, model)`: the shipped table, a LiteLLM file, and per-client overrides.

    Lookups try the exact model, then the model without a date suffix (`gpt-4o-2024-08-06` → `gpt-4o`), then
    `provider/*`-style wildcard overrides. Local providers (transformers, llama.cpp, Ollama, fake) cost 0 unless
    priced.
    """

    def __init__(self, entries: Iterable[PriceEntry] = ()) -> None:
        self._entries: dict[tuple[str, str], PriceEntry] = {}
        self._patterns: list[PriceEntry] = []
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        for entry in entries:
            self.add(entry)

    @classmethod
    def default(cls) -> PriceTable:
        """The table shipped in the package (prices.json; never fetched from the network)."""
        return cls(_shipped_entries())

    @classmethod
    def from_litellm(cls, path: str | Path) -> PriceTable:
        """A table from a LiteLLM `model_prices_and_context_window.json`, for a newer set of prices."""
        return cls(_entries_from_json(json.loads(Path(path).read_text(encoding="utf-8"))))

    def add(self, entry: PriceEntry) -> None:
        """Add or replace one entry; a `*` in the model makes it a wildcard (`"openai-compatible/*"`)."""
        with self._lock:
            if "*" in entry.model or "?" in entry.model:
                self._patterns.insert(0, entry)
            else:
                self._entries[(entry.provider, entry.model)] = entry

    def update(self, prices: Mapping[str, Any]) -> None:
        """Add entries from `{"provider/model": {...LiteLLM fields...} | PriceEntry | Decimal}`.

        A bare number is the same price per million tokens for input and output (0 marks a model free).
        """
        for key, value in prices.items():
            provider, _, model = key.partition("/")
            if isinstance(value, PriceEntry):
                self.add(value)
            elif isinstance(value, Mapping):
                self.add(PriceEntry.from_litellm(key, value, provider=provider))
            else:
                self.add(PriceEntry.per_million(model, provider, input=value, output=value, source="user"))

    def lookup(self, provider: str, model: str) -> PriceEntry | None:
        """The entry for a model, or None when its price is unknown."""
        entries = self._entries
        entry = entries.get((provider, model))
        if entry is None:
            base = _SNAPSHOT.sub("", model)
            entry = entries.get((provider, base)) if base != model else None
        if entry is None:
            for pattern in self._patterns:
                if pattern.provider == provider and fnmatch.fnmatchcase(model, pattern.model):
                    return pattern
        if entry is None and provider in LOCAL_PROVIDERS:
            return PriceEntry(model=model, provider=provider, input=Decimal(0), source="local (free unless priced)")
        return entry

    def cost(self, provider: str, model: str, usage: Usage) -> Cost | None:
        """Price `usage` for a model; None (with one warning per model) when the price is unknown."""
        entry = self.lookup(provider, model)
        if entry is None:
            key = (provider, model)
            if key not in self._warned:
                self._warned.add(key)
                warnings.warn(
                    f"no price known for {provider}/{model}; its cost is None (unknown is not free). "
                    f"Set one with Client(prices={{'{provider}/{model}': {{...}}}}).",
                    UnknownPriceWarning,
                    stacklevel=3,
                )
            return None
        return entry.cost(usage)

    def __iter__(self) -> Iterator[PriceEntry]:
        return iter(list(self._entries.values()) + self._patterns)

    def __len__(self) -> int:
        return len(self._entries) + len(self._patterns)


def _entries_from_json(data: Mapping[str, Any]) -> list[PriceEntry]:
    entries = []
    for key, value in data.items():
        if key.startswith("_") or key == "sample_spec" or not isinstance(value, Mapping):
            continue
        if value.get("input_cost_per_token") is None:
            continue  # images, audio and other per-unit prices are not token prices
        entries.append(PriceEntry.from_litellm(key, value))
    return entries


_SHIPPED: list[PriceEntry] | None = None


def _shipped_entries() -> list[PriceEntry]:
    global _SHIPPED
    if _SHIPPED is None:
        from importlib import resources

        text = resources.files("llmclient").joinpath("prices.json").read_text(encoding="utf-8")
        _SHIPPED = _entries_from_json(json.loads(text))
    return _SHIPPED


# -- the ledger -------------------------------------------------------------------------------------------------


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
        """Append one record."""
        with self._lock:
            self._records.append(record)

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

    def by_tag(self) -> dict[str, Summary]:
        """Totals per tag (a record with several tags counts in each)."""
        return self._group(lambda r: r.tags)

    def reprice(self, model_id: str, prices: PriceTable | None = None) -> Decimal | None:
        """What the recorded usage would have cost on another model (`"provider/model"`); None if unpriced."""
        provider, _, model = model_id.partition("/")
        entry = (prices or PriceTable.default()).lookup(provider, model)
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
                    ";".join(r.tags), r.error or "",
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
    counted_input_tokens INTEGER
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
        self._records.extend(_record_from_row(row) for row in self._db.execute(_SELECT))

    def add(self, record: LedgerRecord) -> None:
        u, c = record.usage, record.cost
        row = (
            record.timestamp, record.provider, record.model, record.kind, u.input_tokens, u.cached_input_tokens,
            u.output_tokens, u.reasoning_tokens, int(u.estimated), _text(c, "total"), _text(c, "input"),
            _text(c, "cached_input"), _text(c, "output"), c and c.price_source, c and c.price_checked,
            record.latency_s, record.attempts, record.request_id, json.dumps(list(record.tags)), record.error,
            record.counted_input_tokens,
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
    "latency_s, attempts, request_id, tags, error, counted_input_tokens"
)
_INSERT = f"INSERT INTO calls ({_COLUMNS}) VALUES ({', '.join('?' * 21)})"
_SELECT = f"SELECT {_COLUMNS} FROM calls ORDER BY id"


def _text(cost: Cost | None, part: str) -> str | None:
    return None if cost is None else str(getattr(cost, part))


def _record_from_row(row: Sequence[Any]) -> LedgerRecord:
    (timestamp, provider, model, kind, input_tokens, cached, output, reasoning, estimated, total, cost_in,
     cost_cached, cost_out, source, checked, latency, attempts, request_id, tags, error, counted) = row  # fmt: skip
    usage = Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_tokens=reasoning,
        estimated=bool(estimated),
    )
    cost = None
    if total is not None:
        cost = Cost(
            input=Decimal(cost_in),
            cached_input=Decimal(cost_cached),
            output=Decimal(cost_out),
            total=Decimal(total),
            price_model=f"{provider}/{model}",
            price_source=source,
            price_checked=checked,
            estimated=bool(estimated),
        )
    return LedgerRecord(
        provider=provider,
        model=model,
        kind=kind,
        usage=usage,
        cost=cost,
        latency_s=latency,
        attempts=attempts,
        request_id=request_id,
        tags=tuple(json.loads(tags)),
        error=error,
        counted_input_tokens=counted,
        timestamp=timestamp,
    )


def open_ledger(spec: CostLedger | str | Path | None) -> CostLedger:
    """A ledger from `Client(ledger=...)`: an instance (shared), `"sqlite:///path.db"`, a path, or None (memory)."""
    if spec is None:
        return CostLedger()
    if isinstance(spec, CostLedger):
        return spec
    text = str(spec)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        raise ValueError(f"unsupported ledger {spec!r}; use 'sqlite:///path/to/ledger.db' or a CostLedger")
    return SQLiteLedger(text)


# -- budgets ----------------------------------------------------------------------------------------------------


class Budget:
    """A spending limit in USD. Calls reserve their worst case before they are sent and settle to the actual cost.

    Reservation is atomic across threads and tasks: with room for N calls, concurrent callers admit at most N.
    """

    _lock = threading.Lock()  # one lock for every budget, so nested budgets reserve all-or-nothing

    def __init__(self, usd: Decimal | str | int, *, allow_unknown_prices: bool = False, name: str = "budget") -> None:
        self.limit = Decimal(str(usd))
        if self.limit < 0:
            raise ValueError("a budget cannot be negative")
        self.allow_unknown_prices = allow_unknown_prices
        self.name = name
        self.spent = Decimal(0)
        self.reserved = Decimal(0)
        self.calls = 0

    def __repr__(self) -> str:
        return f"Budget({self.name}: spent {self.spent} + reserved {self.reserved} of {self.limit} USD)"

    @property
    def remaining(self) -> Decimal:
        """What is left after the spent and reserved amounts."""
        return self.limit - self.spent - self.reserved

    @classmethod
    def reserve_all(cls, budgets: Sequence[Budget], amount: Decimal | None, what: str) -> Reservation:
        """Reserve `amount` on every budget or on none; raise `BudgetExceededError` if any lacks room."""
        with cls._lock:
            for budget in budgets:
                if amount is None and not budget.allow_unknown_prices:
                    raise BudgetExceededError(
                        f"{what} has no known price, so {budget.name} cannot bound it; set a price with "
                        "Client(prices=...) or pass allow_unknown_prices=True"
                    )
                if amount is not None and amount > budget.remaining:
                    raise BudgetExceededError(
                        f"{what} may cost up to ${amount:.6f}, more than the ${budget.remaining:.6f} left in "
                        f"{budget.name} (limit ${budget.limit})"
                    )
            for budget in budgets:
                budget.reserved += amount or Decimal(0)
        return Reservation(tuple(budgets), amount or Decimal(0))


@dataclass
class Reservation:
    """Money set aside for one call on one or more budgets, released when the call settles."""

    budgets: tuple[Budget, ...]
    amount: Decimal
    settled: bool = False

    def settle(self, cost: Cost | None) -> None:
        """Replace the reservation with the actual cost (an unknown cost counts as the reservation)."""
        if self.settled:
            return
        with Budget._lock:
            self.settled = True
            actual = self.amount if cost is None else cost.total
            for budget in self.budgets:
                budget.reserved -= self.amount
                budget.spent += actual
                budget.calls += 1

    def release(self) -> None:
        """Give the reservation back unspent (the call failed before anything was billed)."""
        if self.settled:
            return
        with Budget._lock:
            self.settled = True
            for budget in self.budgets:
                budget.reserved -= self.amount

    def fits(self, cost_so_far: Decimal) -> bool:
        """Whether a running cost (e.g. a stream in progress) is still within the reservation."""
        return cost_so_far <= self.amount
