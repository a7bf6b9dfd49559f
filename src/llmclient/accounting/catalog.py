"""The model catalog: `PriceTable` (the shipped table, the user's copy refreshed from a LiteLLM-format price file,
and per-client overrides), and the update that refreshes the copy.

`llmclient prices update --from FILE_OR_URL` (or `update_prices`) reads a file in the shape of LiteLLM's
`model_prices_and_context_window.json`, checks every entry before anything is written (a bad file is refused whole,
the old table kept), and writes it with its provenance to `$XDG_CACHE_HOME/llmclient/prices.json`
(`~/.cache/llmclient/prices.json`) in one atomic rename. `PriceTable.default()` then reads the shipped table with
the user's copy over it: a model in both takes the copy's prices, windows and capabilities and keeps the shipped
parameter rules where the copy has none (LiteLLM's files have none). Nothing is fetched at import or call time:
only the update command reads a URL.

```python
import json, tempfile
from pathlib import Path
from llmclient.accounting.catalog import update_prices
from llmclient import PriceTable

with tempfile.TemporaryDirectory() as folder:
    source = Path(folder) / "litellm.json"
    source.write_text(json.dumps({"gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2e-06}}))
    result = update_prices(str(source), path=Path(folder) / "prices.json")
    assert result.entries == 1
```
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import json
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmclient.accounting.prices import (
    SNAPSHOT_SUFFIX,
    TIERS,
    PriceEntry,
    UnknownPriceWarning,
    entries_from_json,
    shipped_entries,
)
from llmclient.errors import ConfigurationError, PriceFileError, did_you_mean
from llmclient.types import Cost, Usage

MAX_PRICE_FILE_BYTES = 64 * 1024 * 1024
"""The largest price file read (LiteLLM's is about 1.6 MB)."""
_RATES = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
)
_CHECKED_RATES = _RATES + tuple(f"{rate}_{tier}" for rate in _RATES for tier in TIERS)
_WINDOWS = ("max_input_tokens", "max_output_tokens", "max_tokens")
_TEXTS = ("litellm_provider", "mode", "source", "checked", "alias_of", "deprecation_date", "deprecation_source", "note")
_RULES = ("unsupported_params", "unsupported_reasoning_efforts")
# The other fields of LiteLLM's documented entry (its `sample_spec`): accepted, and no token price is read from them.
_LITELLM_OTHER = (
    "input_cost_per_audio_token",
    "code_interpreter_cost_per_session",
    "computer_use_input_cost_per_1k_tokens",
    "computer_use_output_cost_per_1k_tokens",
    "file_search_cost_per_1k_calls",
    "file_search_cost_per_gb_per_day",
    "search_context_cost_per_query",
    "supported_regions",
    "vector_store_cost_per_gb_per_day",
    "output_vector_size",
)
PRICE_FIELDS = frozenset(_CHECKED_RATES + _WINDOWS + _TEXTS + _RULES + _LITELLM_OTHER)
"""The fields a price entry given to `Client(prices=...)` or the configuration file may have (and `supports_*`)."""


class PriceCatalogWarning(UserWarning):
    """The user's refreshed price table could not be read; the shipped one is used."""


def cache_path() -> Path:
    """Where `llmclient prices update` keeps the refreshed table: `$XDG_CACHE_HOME/llmclient/prices.json`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmclient" / "prices.json"


@dataclass(frozen=True)
class UpdateResult:
    """What `update_prices` wrote: where, how many token-priced entries, from where, and the source's digest."""

    path: Path
    entries: int
    source: str
    sha256: str
    fetched: str


def update_prices(source: str, *, path: Path | None = None) -> UpdateResult:
    """Refresh the user's price table from a LiteLLM-format file or URL, atomically.

    Raises:
        PriceFileError: The file is not a price table LiteLLM's format describes (nothing is written).
        OSError: It could not be read, or the table could not be written.
    """
    raw = _read_source(source)
    digest = hashlib.sha256(raw).hexdigest()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PriceFileError(f"{source} is not JSON: {str(exc)[:200]}") from None
    items = validated_items(data, source)
    fetched = datetime.datetime.now(tz=datetime.timezone.utc).isoformat(timespec="seconds")
    checked = fetched[:10]
    table: dict[str, Any] = {
        "_llmclient": {"source": source, "fetched": fetched, "sha256": digest, "entries": len(items)},
    }
    for key, item in items.items():
        table[key] = {**item, "source": item.get("source") or source, "checked": item.get("checked") or checked}
    target = path or cache_path()
    _write_atomically(target, json.dumps(table, indent=1, sort_keys=True).encode())
    return UpdateResult(path=target, entries=len(items), source=source, sha256=digest, fetched=fetched)


def _read_source(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        import urllib.request  # only this command fetches anything, and only when given a URL

        with urllib.request.urlopen(source, timeout=60) as answer:
            raw: bytes = answer.read(MAX_PRICE_FILE_BYTES + 1)
    else:
        with Path(source).expanduser().open("rb") as file:
            raw = file.read(MAX_PRICE_FILE_BYTES + 1)
    if len(raw) > MAX_PRICE_FILE_BYTES:
        raise PriceFileError(f"{source} is larger than {MAX_PRICE_FILE_BYTES} bytes; refused")
    return raw


def validated_items(data: Any, source: str) -> dict[str, dict[str, Any]]:
    """The token-priced items of a LiteLLM-format table, each checked; the first problem refuses the whole file."""
    if not isinstance(data, dict):
        raise PriceFileError(f"{source} is not a JSON object of models")
    items: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key.startswith("_") or key == "sample_spec":
            continue  # LiteLLM's field descriptions, and our own provenance
        if not isinstance(value, dict):
            raise PriceFileError(f"{source}: {key!r} is not an object")
        problem = _problem(value)
        if problem:
            raise PriceFileError(f"{source}: {key!r} {problem}; nothing was changed")
        if value.get("input_cost_per_token") is not None or value.get("alias_of"):
            items[key] = value
    if not items:
        raise PriceFileError(f"{source} holds no token prices (input_cost_per_token); nothing was changed")
    return items


def _problem(item: Mapping[str, Any]) -> str | None:
    for name in _CHECKED_RATES:
        value = item.get(name)
        if value is not None and not _is_rate(value):
            return f"has {name} {value!r}, not a price per token (a number >= 0)"
    for name in _WINDOWS:
        value = item.get(name)
        if value is not None and not (_is_number(value) and float(value).is_integer() and value >= 0):
            return f"has {name} {value!r}, not a token count"
    for name in _TEXTS:
        if item.get(name) is not None and not isinstance(item[name], str):
            return f"has {name} {item[name]!r}, not a string"
    for name in _RULES:
        value = item.get(name)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return f"has {name} {value!r}, not a list of names"
    for name, value in item.items():
        if name.startswith("supports_") and value is not None and not isinstance(value, bool):
            return f"has {name} {value!r}, not true or false"
    return None


def checked_entry(key: str, item: Mapping[str, Any]) -> Mapping[str, Any]:
    """A price entry given by a user (`Client(prices=...)`, the configuration file), checked field by field.

    Raises:
        ConfigurationError: An unknown field (with the closest known one), or a value that is not what the field
            holds.
    """
    for name in item:
        if name not in PRICE_FIELDS and not str(name).startswith("supports_"):
            raise ConfigurationError(
                f"price for {key!r}: unknown field {name!r}{did_you_mean(str(name), PRICE_FIELDS)}; the fields are "
                "LiteLLM's (input_cost_per_token, output_cost_per_token, cache_read_input_token_cost, "
                "max_output_tokens, ...), prices in USD per token"
            )
    problem = _problem(item)
    if problem:
        raise ConfigurationError(f"price for {key!r} {problem}")
    return item


def _per_million(key: str, value: Any) -> Decimal:
    """A bare price (USD per million tokens, in and out), or a `ConfigurationError` saying what it should be."""
    try:
        rate = Decimal(str(value)) if not isinstance(value, bool) else None
    except (ArithmeticError, ValueError):
        rate = None
    if rate is None or not rate.is_finite() or rate < 0:
        raise ConfigurationError(
            f"price for {key!r}: {value!r} is not a price; give USD per million tokens (a number >= 0) or a table "
            "of LiteLLM fields"
        )
    return rate


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_rate(value: Any) -> bool:
    if isinstance(value, str):  # our own files write rates as decimal strings
        try:
            value = float(value)
        except ValueError:
            return False
    return _is_number(value) and value >= 0


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".prices-", suffix=".tmp", delete=False) as file:
        temporary = Path(file.name)
        try:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    try:
        os.replace(temporary, target)  # readers see the old table or the new one, never half of one
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


_USER: tuple[tuple[str, int, int], list[PriceEntry]] | None = None


def user_entries(path: Path | None = None) -> list[PriceEntry]:
    """The entries of the user's refreshed table (none when there is none), read again only when it changes."""
    global _USER
    target = path or cache_path()
    try:
        status = target.stat()
    except OSError:
        return []
    key = (str(target), status.st_mtime_ns, status.st_size)
    if _USER is not None and _USER[0] == key:
        return _USER[1]
    try:
        entries = entries_from_json(validated_items(json.loads(target.read_text(encoding="utf-8")), str(target)))
    except (OSError, ValueError, PriceFileError) as exc:
        warnings.warn(f"ignoring the price table at {target}: {exc}", PriceCatalogWarning, stacklevel=3)
        entries = []
    _USER = (key, entries)
    return entries


def current_entries(shipped: Iterable[PriceEntry]) -> list[PriceEntry]:
    """The shipped entries with the user's refreshed ones over them (see the module doc)."""
    merged = {(entry.provider, entry.model): entry for entry in shipped}
    for entry in user_entries():
        known = merged.get((entry.provider, entry.model))
        if known is not None:
            entry = replace(
                entry,
                unsupported_params=entry.unsupported_params or known.unsupported_params,
                unsupported_reasoning_efforts=entry.unsupported_reasoning_efforts
                or known.unsupported_reasoning_efforts,
                alias_of=entry.alias_of or known.alias_of,
                deprecation_date=entry.deprecation_date or known.deprecation_date,
            )
        merged[(entry.provider, entry.model)] = entry
    return list(merged.values())


def catalog_card(entry: PriceEntry) -> dict[str, Any]:
    """One model's catalog entry as JSON (`llmclient models --json`): prices per million tokens as strings."""

    def per_million(rate: Any) -> str | None:
        return None if rate is None else format((rate * 1_000_000).normalize(), "f")

    return {
        "model": f"{entry.provider}/{entry.model}",
        "mode": entry.mode,
        "input_per_million": per_million(entry.input),
        "cached_input_per_million": per_million(entry.cached_input),
        "cache_write_per_million": per_million(entry.cache_write),
        "output_per_million": per_million(entry.output),
        "tiers": {
            name: {"input_per_million": per_million(rates.input), "output_per_million": per_million(rates.output)}
            for name, rates in sorted(entry.tiers.items())
        },
        "max_input_tokens": entry.max_input_tokens,
        "max_output_tokens": entry.max_output_tokens,
        "capabilities": sorted(entry.capabilities),
        "unsupported_params": sorted(entry.unsupported_params),
        "unsupported_reasoning_efforts": list(entry.unsupported_reasoning_efforts),
        "alias_of": entry.alias_of,
        "deprecation_date": entry.deprecation_date,
        "source": entry.source,
        "checked": entry.checked,
    }


__all__ = [
    "PriceCatalogWarning",
    "UpdateResult",
    "cache_path",
    "catalog_card",
    "current_entries",
    "update_prices",
    "user_entries",
    "validated_items",
]


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
        self._warned: set[tuple[str, str]] = set()  # the unpriced models warned about: one per model called
        self._lock = threading.Lock()
        for entry in entries:
            self.add(entry)

    @classmethod
    def default(cls) -> PriceTable:
        """The table shipped in the package (prices.json), refreshed by the user's copy where `llmclient prices
        update` wrote one (see this module's doc); never fetched from the network."""
        return cls(current_entries(shipped_entries()))

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
        return cls(entries_from_json(json.loads(Path(path).read_text(encoding="utf-8"))))

    def add(self, entry: PriceEntry) -> None:
        """Add or replace one entry; a `*` in the model makes it a wildcard (`"openai-compatible/*"`)."""
        with self._lock:
            if "*" in entry.model or "?" in entry.model:
                self._patterns.insert(0, entry)
            else:
                self._entries[(entry.provider, entry.model)] = entry

    def update(self, prices: Mapping[str, Any]) -> None:
        """Add entries from `{"provider/model": {...LiteLLM fields...} | PriceEntry | Decimal}`.

        A bare number is the same price per million tokens for input and output (0 marks a model free). Each entry
        is checked first: a key that is not `provider/model`, a field LiteLLM's format does not have (a misspelt
        `input_cost_per_tokn` would price that side at $0) or a value that is not a price is a `ConfigurationError`
        naming the key, with the closest field name.
        """
        for key, value in prices.items():
            if isinstance(value, PriceEntry):
                self.add(value)
                continue
            provider, _, model = str(key).partition("/")
            if not provider or not model:
                raise ConfigurationError(f"price key {key!r}: write 'provider/model' (or 'provider/*')")
            if isinstance(value, Mapping):
                self.add(PriceEntry.from_litellm(key, checked_entry(key, value), provider=provider))
            else:
                rate = _per_million(key, value)
                self.add(PriceEntry.per_million(model, provider, input=rate, output=rate, source="user"))

    def lookup(self, provider: str, model: str, *, self_hosted: bool = False) -> PriceEntry | None:
        """The entry for a model, or None when its price is unknown (looked up on each call, nothing cached: no
        memory grows with the models or calls priced).

        Args:
            provider: The provider name as the model id gives it.
            model: The model name.
            self_hosted: The provider runs models on the user's own hardware (its driver's
                `Capabilities.self_hosted`): an unpriced model costs 0 instead of None.
        """
        entries = self._entries
        entry = entries.get((provider, model))
        if entry is None:
            base = SNAPSHOT_SUFFIX.sub("", model)
            entry = entries.get((provider, base)) if base != model else None
        if entry is None:
            for pattern in self._patterns:
                if pattern.provider == provider and fnmatch.fnmatchcase(model, pattern.model):
                    return pattern
        if entry is None and self_hosted:
            return PriceEntry(model=model, provider=provider, input=Decimal(0), source="local (free unless priced)")
        return entry

    def cost(
        self, provider: str, model: str, usage: Usage, *, self_hosted: bool = False, service_tier: str | None = None
    ) -> Cost | None:
        """Price `usage` for a model (at `service_tier`'s rates where the entry has them); None (with one warning
        per model) when the price is unknown."""
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
        return entry.cost(usage, service_tier)

    def __iter__(self) -> Iterator[PriceEntry]:
        return iter(list(self._entries.values()) + self._patterns)

    def __len__(self) -> int:
        return len(self._entries) + len(self._patterns)
