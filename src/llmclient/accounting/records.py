"""What the ledger keeps per call (`LedgerRecord`) and per group of calls (`Summary`), as every ledger kind shares
them: in memory, in a SQLite file or in PostgreSQL (`record_from_columns` reads a stored row back)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from llmclient.types import Cost, Usage
from llmclient.usage import usd


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

    def __repr__(self) -> str:
        u = self.usage
        return (
            f"Summary(calls={self.calls}, input_tokens={u.prompt_tokens}, output_tokens={u.output_tokens}, "
            f"cost_usd={usd(self.cost)}, unpriced_calls={self.unpriced_calls})"
        )


def summarise(records: Iterable[LedgerRecord]) -> Summary:
    """Calls, usage and cost of some records."""
    calls = unpriced = 0
    usage, cost = Usage(), Decimal(0)
    for record in records:
        calls += 1
        usage += record.usage
        if record.cost is None:
            unpriced += 1
        else:
            cost += record.cost.total
    return Summary(calls=calls, usage=usage, cost=cost, unpriced_calls=unpriced)


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


def csv_row(r: LedgerRecord) -> list[Any]:
    """One record as a CSV row of `CSV_COLUMNS` (usage and cost flattened, the cost in plain decimal)."""
    u, c = r.usage, r.cost
    return [
        f"{r.timestamp:.6f}", r.provider, r.model, r.kind, u.input_tokens, u.cached_input_tokens, u.output_tokens,
        u.reasoning_tokens, u.estimated, "" if c is None else usd(c.total), "" if c is None else c.price_source,
        f"{r.latency_s:.6f}", r.attempts, r.request_id or "", ";".join(r.tags), r.error or "", r.deployment or "",
    ]  # fmt: skip


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
    cache_write_tokens: int = 0,
    cache_write_cost: Any = None,
) -> LedgerRecord:
    """A record from a stored row's columns (SQLite's or PostgreSQL's): `cost` is (total, input, cached input,
    output) as Decimals or their text, all None when the price was unknown."""
    priced = _stored_cost(cost, cache_write_cost, f"{provider}/{model}", price_source, price_checked, bool(estimated))
    usage = Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens,
        cache_write_tokens=cache_write_tokens or 0,
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


def _stored_cost(
    cost: tuple[Any, Any, Any, Any],
    cache_write_cost: Any,
    price_model: str,
    price_source: str | None,
    price_checked: Any,
    estimated: bool,
) -> Cost | None:
    """A stored row's cost: None when its price was unknown (the total column is empty)."""
    total, cost_in, cost_cached, cost_out = cost
    if total is None:
        return None
    return Cost(
        input=Decimal(cost_in),
        cached_input=Decimal(cost_cached),
        cache_write=Decimal(cache_write_cost or 0),
        output=Decimal(cost_out),
        total=Decimal(total),
        price_model=price_model,
        price_source=price_source,
        price_checked=None if price_checked is None else str(price_checked),
        estimated=estimated,
    )
