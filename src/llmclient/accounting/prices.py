"""Prices with provenance: USD per token as exact `Decimal`s, from the shipped table, a LiteLLM file or overrides.

```python
from decimal import Decimal
from llmclient import PriceTable, Usage

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

import fnmatch
import json
import re
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmclient.types import Cost, Usage

MILLION = Decimal(1_000_000)
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
    `provider/*`-style wildcard overrides. Models on self-hosted providers (whose driver says
    `Capabilities(self_hosted=True)`: transformers, llama.cpp, Ollama, fake, and any provider built on them) cost 0
    unless priced.
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
    def from_option(cls, prices: PriceTable | Mapping[str, Any] | None) -> PriceTable:
        """`Client(prices=...)`: a whole table as it is, else the shipped table with these overrides."""
        if isinstance(prices, PriceTable):
            return prices
        table = cls.default()
        table.update(prices or {})
        return table

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

    def lookup(self, provider: str, model: str, *, self_hosted: bool = False) -> PriceEntry | None:
        """The entry for a model, or None when its price is unknown.

        Args:
            provider: The provider name as the model id gives it.
            model: The model name.
            self_hosted: The provider runs models on the user's own hardware (its driver's
                `Capabilities.self_hosted`): an unpriced model costs 0 instead of None.
        """
        entries = self._entries
        entry = entries.get((provider, model))
        if entry is None:
            base = _SNAPSHOT.sub("", model)
            entry = entries.get((provider, base)) if base != model else None
        if entry is None:
            for pattern in self._patterns:
                if pattern.provider == provider and fnmatch.fnmatchcase(model, pattern.model):
                    return pattern
        if entry is None and self_hosted:
            return PriceEntry(model=model, provider=provider, input=Decimal(0), source="local (free unless priced)")
        return entry

    def cost(self, provider: str, model: str, usage: Usage, *, self_hosted: bool = False) -> Cost | None:
        """Price `usage` for a model; None (with one warning per model) when the price is unknown."""
        entry = self.lookup(provider, model, self_hosted=self_hosted)
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

        text = resources.files("llmclient.accounting").joinpath("prices.json").read_text(encoding="utf-8")
        _SHIPPED = _entries_from_json(json.loads(text))
    return _SHIPPED
