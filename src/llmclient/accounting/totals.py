"""A ledger's running totals: every call folded in as it is recorded, exact, in memory that does not grow with the
number of calls.

Overall and per group ("model", "provider", "deployment", "tag", "day"): calls, each kind of token, the cost of the
priced calls (Decimal: additions of exact amounts stay exact) and how many calls had no price. A group holds one
entry per key, so its size is that of the keys: the models, providers and deployments a client calls (its
configuration), the tags its callers use, and the days (UTC) the process has run. Tags are labels to add up by
(a feature, a team, a customer); an id unique to each call belongs in `request_id`, not in a tag.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from llmclient.accounting.records import LedgerRecord, Summary
from llmclient.types import Usage

GROUPINGS = ("model", "provider", "deployment", "tag", "day")
"""What `summary(by=...)` groups by (a PostgreSQL ledger adds "budget")."""
UNTAGGED = "(untagged)"
"""The tag group of calls made without tags (`summary("tag")`; `by_tag()` leaves it out)."""


class _Sum:
    """The running figures of one group."""

    __slots__ = ("cached", "calls", "cost", "estimated", "input", "output", "reasoning", "unpriced", "write")

    def __init__(self) -> None:
        self.calls = self.input = self.cached = self.write = self.output = self.reasoning = self.unpriced = 0
        self.estimated = False
        self.cost = Decimal(0)

    def add(self, figures: tuple[int, int, int, int, int, bool], cost: Decimal | None) -> None:
        tokens_in, cached, write, output, reasoning, estimated = figures
        self.calls += 1
        self.input += tokens_in
        self.cached += cached
        self.write += write
        self.output += output
        self.reasoning += reasoning
        self.estimated = self.estimated or estimated
        if cost is None:
            self.unpriced += 1
        else:
            self.cost += cost

    def summary(self) -> Summary:
        usage = Usage(
            input_tokens=self.input,
            cached_input_tokens=self.cached,
            cache_write_tokens=self.write,
            output_tokens=self.output,
            reasoning_tokens=self.reasoning,
            estimated=self.estimated,
        )
        return Summary(calls=self.calls, usage=usage, cost=self.cost, unpriced_calls=self.unpriced)


class Totals:
    """Running totals over every call added, overall (`summary_of_all`) and per group (`summary(by)`).

    Not thread-safe by itself: the ledger that owns it adds and reads under its lock.
    """

    def __init__(self) -> None:
        self._all = _Sum()
        # One entry per key of each grouping: bounded by the keys (see the module docstring), never by the calls.
        self._groups: dict[str, dict[str, _Sum]] = {by: {} for by in GROUPINGS}
        self._day = (-1, "")  # the last day number seen and its text: one strftime per day, not per call

    @property
    def calls(self) -> int:
        """How many calls were added."""
        return self._all.calls

    def add(
        self,
        *,
        provider: str,
        model: str,
        deployment: str | None,
        tags: Iterable[str],
        timestamp: float,
        figures: tuple[int, int, int, int, int, bool],
        cost: Decimal | None,
    ) -> None:
        """Fold one call in. `figures`: input, cached input, cache write, output and reasoning tokens, and whether
        any was estimated; `cost` is None for an unpriced call."""
        self._all.add(figures, cost)
        groups = self._groups
        keys = (
            ("model", f"{provider}/{model}"),
            ("provider", provider),
            ("deployment", deployment or provider),  # a call made without routing counts under its provider
            ("day", self._day_of(timestamp)),
            *(("tag", tag) for tag in (tags or (UNTAGGED,))),
        )
        for by, key in keys:
            group = groups[by].get(key)
            if group is None:
                group = groups[by][key] = _Sum()
            group.add(figures, cost)

    def add_record(self, record: LedgerRecord) -> None:
        """Fold one record in."""
        u, c = record.usage, record.cost
        figures = (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.output_tokens, u.reasoning_tokens)
        self.add(
            provider=record.provider,
            model=record.model,
            deployment=record.deployment,
            tags=record.tags,
            timestamp=record.timestamp,
            figures=(*figures, u.estimated),
            cost=None if c is None else c.total,
        )

    def summary_of_all(self) -> Summary:
        """Every call's figures together."""
        return self._all.summary()

    def summary(self, by: str) -> dict[str, Summary]:
        """The figures per key of one grouping (see `GROUPINGS`), keys in sorted order."""
        return {key: group.summary() for key, group in sorted(self._groups[by].items())}

    def _day_of(self, timestamp: float) -> str:
        number = int(timestamp // 86400)
        if number != self._day[0]:
            self._day = (number, time.strftime("%Y-%m-%d", time.gmtime(timestamp)))
        return self._day[1]


def check_grouping(by: Any, choices: Iterable[str] = GROUPINGS) -> str:
    """`by` if it is one of `choices`, else a ValueError naming them."""
    choices = tuple(choices)
    if by not in choices:
        raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(choices)}")
    return str(by)
