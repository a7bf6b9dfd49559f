"""Shared budgets on a real PostgreSQL: windows, rollover under load, nesting, tags, and what is refused."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from llmclient import BudgetExceededError, Client, ConfigurationError, FakeDriver
from llmclient.stores import PostgresLedger, PostgresStore, SharedBudgets, Window, charge_to

PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
BERLIN = ZoneInfo("Europe/Berlin")
LEASE = timedelta(minutes=1)


class Clock:
    """A controllable clock: `now` is set by the test, or advances by `step` on every reading."""

    def __init__(self, start: datetime, step: timedelta = timedelta(0)) -> None:
        self.now, self.step = start, step
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            now, self.now = self.now, self.now + self.step
            return now


def _budgets(url: str, clock: Clock, **options: Any) -> SharedBudgets:
    store = PostgresStore(url, clock=clock)
    store.migrate()
    return SharedBudgets(store, **options)


def test_a_calendar_month_in_a_time_zone_starts_again_at_local_midnight(postgres_url: str) -> None:
    clock = Clock(datetime(2026, 1, 31, 23, 30, tzinfo=BERLIN))  # 22:30 UTC: still January in Berlin
    budgets = _budgets(postgres_url, clock)
    budgets.define("team", "2", window=Window.month(time_zone="Europe/Berlin"))
    for number in range(2):
        budgets.reserve(f"r{number}", ["team"], [], Decimal(1), lease=LEASE)
        budgets.settle_reservation(f"r{number}", ("team",), Decimal(1))
    with pytest.raises(BudgetExceededError, match="shared budget 'team'"):
        budgets.reserve("r2", ["team"], [], Decimal("0.01"), lease=LEASE)
    clock.now = datetime(2026, 2, 1, 0, 0, 1, tzinfo=BERLIN)  # 23:00:01 UTC on the 31st: February in Berlin
    assert budgets.reserve("r3", ["team"], [], Decimal(2), lease=LEASE) == ("team",)


def test_a_rolling_day_counts_the_last_24_hours(postgres_url: str) -> None:
    clock = Clock(datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc))
    budgets = _budgets(postgres_url, clock)
    budgets.define("key:ci", "1", window=Window.day(rolling=True))
    budgets.reserve("a", ["key:ci"], [], Decimal(1), lease=LEASE)
    budgets.settle_reservation("a", ("key:ci",), Decimal(1))
    clock.now += timedelta(hours=23)  # a calendar day would have restarted at midnight
    with pytest.raises(BudgetExceededError):
        budgets.reserve("b", ["key:ci"], [], Decimal("0.5"), lease=LEASE)
    clock.now += timedelta(hours=2, minutes=1)
    assert budgets.reserve("c", ["key:ci"], [], Decimal(1), lease=LEASE) == ("key:ci",)


async def test_rollover_under_concurrent_load_keeps_every_cent(postgres_url: str) -> None:
    # The clock moves 0.25 s per reading from 23:59:55 in Berlin: the calls cross local midnight while in flight.
    clock = Clock(datetime(2026, 5, 31, 23, 59, 55, tzinfo=BERLIN), step=timedelta(milliseconds=250))
    budgets = _budgets(postgres_url, clock, always=["org"])
    budgets.define("org", "1", window=Window.day(time_zone="Europe/Berlin"))

    class Slow(FakeDriver):
        async def chat(self, request: Any) -> Any:
            await asyncio.sleep(0.01)
            return await super().chat(request)

    client = Client(providers={"fake": Slow()}, prices=PRICES, ledger=postgres_url, budget_store=budgets)
    # Eight waves of five concurrent calls: the first waves settle before midnight, the later ones after, however
    # the event loop orders reservations and settlements within a wave.
    replies = []
    for _ in range(8):
        replies += await asyncio.gather(*(client.chat("a b c", model="fake/paid", max_tokens=10) for _ in range(5)))
    total = sum((reply.cost.total for reply in replies if reply.cost), Decimal(0))

    rows = budgets.store.fetch("SELECT bucket, spent, calls FROM llmclient_budget_spend ORDER BY bucket")
    assert [bucket.astimezone(BERLIN).date().isoformat() for bucket, _, _ in rows] == ["2026-05-31", "2026-06-01"]
    assert sum(spent for _, spent, _ in rows) == total == PostgresLedger(budgets.store).total()
    assert sum(calls for _, _, calls in rows) == 40
    status = budgets.status("org")  # the new day's window only
    assert status.spent == rows[-1][1] and status.reserved == 0


async def test_nested_budgets_all_apply_and_refuse_all_or_nothing(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url, always=["org"])
    budgets.store.migrate()
    budgets.define("org", "1")
    budgets.define("team:search", "0.00003")  # room for one 23 µ$ call
    budgets.define("tag:batch", "1")
    driver = FakeDriver()
    async with Client(providers={"fake": driver}, prices=PRICES, ledger=postgres_url, budget_store=budgets) as client:
        with charge_to("team:search"):
            await client.chat("a b c", model="fake/paid", max_tokens=10, tags=["batch", "untracked"])
            with pytest.raises(BudgetExceededError, match="team:search"):
                await client.chat("a b c", model="fake/paid", max_tokens=10, tags=["batch"])
        await client.chat("a b c", model="fake/paid", max_tokens=10)  # outside the team's block: org only
        with charge_to("team:nope"), pytest.raises(ConfigurationError, match="team:nope"):
            await client.chat("a b c", model="fake/paid", max_tokens=10)
    assert len(driver.requests) == 2
    spent = {name: budgets.status(name).spent for name in ("org", "team:search", "tag:batch")}
    # The echo reply has 5 words: each call costs 3 + 10 = 13 µ$ of its 23 µ$ worst case.
    assert spent == {"org": Decimal("0.000026"), "team:search": Decimal("0.000013"), "tag:batch": Decimal("0.000013")}
    assert all(budgets.status(name).reserved == 0 for name in spent)
    by_budget = PostgresLedger(budgets.store).summary("budget")
    assert {name: s.calls for name, s in by_budget.items()} == {"org": 2, "tag:batch": 1, "team:search": 1}


async def test_unknown_prices_fail_closed_unless_allowed(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url, always=["org"])
    budgets.store.migrate()
    budgets.define("org", "1")
    client = Client(providers={"fake": FakeDriver(self_hosted=False)}, ledger=postgres_url, budget_store=budgets)
    with pytest.raises(BudgetExceededError, match="no known price"):  # refused before any price warning
        await client.chat("hi", model="fake/unpriced")
    budgets.define("org", "1", allow_unknown_prices=True)
    with pytest.warns(UserWarning, match="price"):
        await client.chat("hi", model="fake/unpriced")
    assert budgets.status("org").calls == 1


def test_a_budget_with_an_unknown_time_zone_is_refused(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url)
    with pytest.raises(ConfigurationError, match="Mars/Olympus"):
        budgets.define("x", "1", window=Window.day(time_zone="Mars/Olympus"))
