"""Prices with provenance: USD per token as exact `Decimal`s, from the shipped table, a LiteLLM file or overrides.

```python
from decimal import Decimal
from llmclient import PriceTable, Usage

table = PriceTable.default()
entry = table.lookup("deepseek", "deepseek-flash")
cost = entry.cost(Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000, output_tokens=1_000_000))
assert cost.total == Decimal("0.3") + Decimal("0.006") + Decimal("1.2")
assert cost.price_source == "https://api-docs.deepseek.com/quick_start/pricing"
```

The formula: uncached input × input price + cached input × cached price + cache writes × cache write price (each
the input price where none is published) + output × output price; reasoning tokens are part of the output and priced
with it unless the entry prices them apart. A processing tier with rates of its own (OpenAI's `flex` and `priority`,
LiteLLM's `*_flex` / `*_priority` fields) prices the calls it served. Unknown models cost `None` — unknown is not
free — and budgets refuse them unless told otherwise.

An entry is also the model's card in the catalog (`llmclient models --json`): its context window and output cap,
capabilities (LiteLLM's `supports_*` fields), the request parameters it refuses (`unsupported_params`) and the
reasoning efforts it refuses, a legacy name's `alias_of` and `deprecation_date`, each dated and sourced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmclient.types import Cost, Usage

MILLION = Decimal(1_000_000)
SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")


class UnknownPriceWarning(UserWarning):
    """A call's model has no known price, so its cost is None."""


TIERS = ("flex", "priority")
"""The processing tiers with rates of their own in LiteLLM's price file (`input_cost_per_token_flex`, …)."""
_TIER_ALIASES = {"fast": "priority"}  # OpenAI: "fast" is billed, and reported, as priority


@dataclass(frozen=True)
class TierRates:
    """A processing tier's own rates, USD per token (None: the tier's input rate)."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None


@dataclass(frozen=True)
class PriceEntry:
    """The price of one model in USD per token, with where the figure came from, and the model's catalog card."""

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
    cache_write: Decimal | None = None
    tiers: Mapping[str, TierRates] = field(default_factory=dict, hash=False)
    """Rates of processing tiers that bill differently (`"flex"`, `"priority"`)."""
    capabilities: frozenset[str] = frozenset()
    """What the model supports, as LiteLLM's `supports_*` fields name it (`"reasoning"`, `"vision"`, …)."""
    unsupported_params: frozenset[str] = frozenset()
    """Request parameters the model refuses (dropped, or raised under `strict_params`)."""
    unsupported_reasoning_efforts: tuple[str, ...] = ()
    """`reasoning_effort` values the model refuses (GPT-6.2 refuses `none` and `minimal`)."""
    alias_of: str | None = None
    """For a legacy name: the model the provider serves it with (and prices it as)."""
    deprecation_date: str | None = None

    @property
    def input_per_million(self) -> Decimal:
        """The input price in USD per million tokens, as pricing pages show it."""
        return self.input * MILLION

    @property
    def output_per_million(self) -> Decimal:
        """The output price in USD per million tokens."""
        return self.output * MILLION

    def cost(self, usage: Usage, service_tier: str | None = None) -> Cost:
        """Price `usage`: every token exactly once, at its own rate (the tier's, for a tier with rates of its own)."""
        tier_name = _TIER_ALIASES.get(service_tier or "", service_tier)
        tier = self.tiers.get(tier_name) if tier_name else None
        rates = tier if tier is not None else self
        input_rate, output_rate = rates.input, rates.output
        cached_rate = input_rate if rates.cached_input is None else rates.cached_input
        write_rate = input_rate if rates.cache_write is None else rates.cache_write
        input_cost = input_rate * usage.input_tokens
        cached_cost = cached_rate * usage.cached_input_tokens
        write_cost = write_rate * usage.cache_write_tokens
        if self.reasoning is None or tier is not None:
            output_cost = output_rate * usage.output_tokens
        else:
            visible = usage.output_tokens - usage.reasoning_tokens
            output_cost = output_rate * visible + self.reasoning * usage.reasoning_tokens
        return Cost(
            input=input_cost,
            cached_input=cached_cost,
            cache_write=write_cost,
            output=output_cost,
            total=input_cost + cached_cost + write_cost + output_cost,
            price_model=f"{self.provider}/{self.model}",
            price_source=self.source,
            price_checked=self.checked,
            service_tier=tier_name if tier else None,
            estimated=usage.estimated,
        )

    def worst_case(
        self, input_tokens: int, max_output_tokens: int | None, *, service_tier: str | None = None, choices: int = 1
    ) -> Decimal | None:
        """The most a call can cost: every input token at the dearest input rate (a cache write can cost more than
        plain input) and the whole output allowance used, by each of `choices` replies, at `service_tier`'s rates."""
        tier = self.tiers.get(_TIER_ALIASES.get(service_tier or "", service_tier or ""))
        rates = tier if tier is not None else self
        input_rate = max(rates.input, rates.cache_write or Decimal(0))
        output_rate = max(rates.output, self.reasoning or Decimal(0))
        output = max_output_tokens if max_output_tokens is not None else self.max_output_tokens
        if output is None:
            # Without a bound on the output only free output is boundable (local models).
            return input_rate * input_tokens if output_rate == 0 else None
        return input_rate * input_tokens + output_rate * output * max(1, choices)

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
            cache_write=_decimal(data.get("cache_creation_input_token_cost")),
            tiers=_tiers(data),
            capabilities=frozenset(
                k.removeprefix("supports_") for k, v in data.items() if k.startswith("supports_") and v is True
            ),
            unsupported_params=frozenset(data.get("unsupported_params") or ()),
            unsupported_reasoning_efforts=tuple(data.get("unsupported_reasoning_efforts") or ()),
            alias_of=data.get("alias_of"),
            deprecation_date=data.get("deprecation_date"),
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


def _tiers(data: Mapping[str, Any]) -> dict[str, TierRates]:
    tiers = {}
    for tier in TIERS:
        rate = _decimal(data.get(f"input_cost_per_token_{tier}"))
        if rate is not None:
            tiers[tier] = TierRates(
                input=rate,
                # A tier that lists no output rate of its own bills output at the standard rate, never at $0.
                output=_decimal(data.get(f"output_cost_per_token_{tier}", data.get("output_cost_per_token")))
                or Decimal(0),
                cached_input=_decimal(data.get(f"cache_read_input_token_cost_{tier}")),
                cache_write=_decimal(data.get(f"cache_creation_input_token_cost_{tier}")),
            )
    return tiers


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    # str() first: a float from LiteLLM's file becomes the decimal it was written as, not its binary expansion.
    return Decimal(str(value))


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def entries_from_json(data: Mapping[str, Any]) -> list[PriceEntry]:
    entries = []
    for key, value in data.items():
        if key.startswith("_") or key == "sample_spec" or not isinstance(value, Mapping):
            continue
        if value.get("alias_of") and value.get("input_cost_per_token") is None:
            value = {**_alias_target(data, key, value), **value}  # priced as what it aliases, dated on its own
        if value.get("input_cost_per_token") is None:
            continue  # images, audio and other per-unit prices are not token prices
        entries.append(PriceEntry.from_litellm(key, value))
    return entries


def _alias_target(data: Mapping[str, Any], key: str, value: Mapping[str, Any]) -> Mapping[str, Any]:
    """The item a legacy name's `alias_of` names, by the same provider (`deepseek/deepseek-chat` →
    `deepseek/deepseek-flash`), without its provenance (the alias keeps its own)."""
    provider = str(value.get("litellm_provider") or key.partition("/")[0])
    target = str(value["alias_of"])
    found = data.get(f"{provider}/{target}") or data.get(target)
    if not isinstance(found, Mapping):
        return {}
    dated = ("source", "checked", "deprecation_date", "alias_of")
    return {k: v for k, v in found.items() if k not in dated}


_SHIPPED: list[PriceEntry] | None = None


def shipped_entries() -> list[PriceEntry]:
    """The entries of the table shipped in the package (prices.json), read once."""
    global _SHIPPED
    if _SHIPPED is None:
        from importlib import resources

        text = resources.files("llmclient.accounting").joinpath("prices.json").read_text(encoding="utf-8")
        _SHIPPED = entries_from_json(json.loads(text))
    return _SHIPPED
