"""What a call used and what it cost: token usage normalised across providers, its price, and token counts.

Re-exported by `llmclient.types`; this module imports nothing else from llmclient.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    # defer_build: validators are built on first use, not at import (see llmclient.types).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Usage(_Frozen):
    """Tokens used by one call, normalised across providers.

    The prompt is split three ways, each priced at its own rate: `input_tokens` were neither read from nor written
    to a prompt cache, `cached_input_tokens` were read from one, and `cache_write_tokens` were written to one
    (Anthropic's cache creation, OpenAI's `cache_write_tokens`). Their sum is the whole prompt (`prompt_tokens`).
    `reasoning_tokens` are part of `output_tokens`. `estimated` is true when any figure was counted locally instead
    of reported by the provider.
    """

    input_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    estimated: bool = False

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Input and output always; the other figures when they say something.
        for name, value in self:
            if name in ("input_tokens", "output_tokens") or value:
                yield name, value

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token: uncached, read from the cache and written to it."""
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        """Prompt plus output tokens."""
        return self.prompt_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            estimated=self.estimated or other.estimated,
        )


MAX_REPORTED_TOKENS = 100_000_000
"""The most tokens one figure of one call's reported usage may hold; past it, usage is counted locally instead.
No model's context window comes near it, and a server that reports `prompt_tokens: 1e30` must not price it."""


def reported_tokens(value: Any) -> int | None:
    """A token count from a provider's usage: a missing one is 0; a non-negative integer (or integral float) up to
    `MAX_REPORTED_TOKENS` is itself; anything else (negative, fractional, a string, a bool, huge) is None."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if 0 <= value <= MAX_REPORTED_TOKENS else None


class Cost(_Frozen):
    """What a call cost, in `currency`, split by token kind, with the price entry that was used.

    `service_tier` names the processing tier whose own rates priced the call (OpenAI's `"flex"` or `"priority"`),
    None for the standard rates.
    """

    input: Decimal = Decimal(0)
    cached_input: Decimal = Decimal(0)
    cache_write: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    currency: str = "USD"
    price_model: str | None = None
    price_source: str | None = None
    price_checked: str | None = None
    service_tier: str | None = None
    estimated: bool = False


class TokenCount(_Frozen):
    """The number of tokens some input takes, whether the count is exact, and the tokenizer that made it."""

    tokens: int = Field(ge=0)
    exact: bool
    tokenizer: str

    def __int__(self) -> int:
        return self.tokens


__all__ = ["MAX_REPORTED_TOKENS", "Cost", "TokenCount", "Usage", "reported_tokens"]
