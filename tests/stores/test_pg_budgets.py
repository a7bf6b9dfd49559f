"""Shared budgets on a real PostgreSQL: windows, rollover under load, nesting, tags, and what is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from llmclient import BudgetExceededError, Client, ConfigurationError, FakeDriver, ServerError
from llmclient.stores import FleetDegradedWarning, PostgresLedger, PostgresStore, SharedBudgets, Window, charge_to

PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
BERLIN = ZoneInfo("Europe/Berlin")
LEASE = timedelta(minutes=1)
DOWN = "postgresql://nobody@/nowhere?host=/nonexistent-socket-dir"


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


def test_defining_reading_listing_and_deleting_budgets(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url)
    assert budgets.lease == timedelta(minutes=15)  # docs/fleet.md: longer than any call should last
    budgets.define("org", 0.1)  # type: ignore[arg-type]  # a float limit is the decimal written
    budgets.define("free", 0)  # zero is a limit (nothing may be spent), not an error
    budgets.define("team", "5", window=Window.month(time_zone="Europe/Berlin"))
    with pytest.raises(ValueError, match="negative"):
        budgets.define("debt", "-0.01")
    assert budgets.names() == ["free", "org", "team"]
    org, team = budgets.status("org"), budgets.status("team")
    assert (org.limit, org.window, team.window) == (Decimal("0.1"), None, Window("month", False, "Europe/Berlin"))
    budgets.reserve("r1", ["org"], [], Decimal("0.02"), lease=LEASE)
    budgets.settle_reservation("r1", ["org"], Decimal("0.03"))
    budgets.reserve("r2", ["org"], [], Decimal("0.04"), lease=LEASE)
    org = budgets.status("org")
    assert (org.spent, org.reserved, org.remaining, org.calls) == (Decimal("0.03"), Decimal("0.04"), Decimal("0.03"), 1)
    assert type(org.calls) is int  # not the Decimal PostgreSQL's sum() gives
    budgets.release("r2")
    assert budgets.status("org").reserved == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        org.spent = Decimal(0)  # type: ignore[misc]
    assert budgets.delete("team") is True and budgets.delete("team") is False
    with pytest.raises(KeyError):
        budgets.status("team")


def test_windows_are_calendar_windows_in_utc_unless_told() -> None:
    assert Window("day") == Window.day() == Window("day", rolling=False, time_zone="UTC")
    assert Window.month(rolling=True).rolling is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        Window.day().rolling = True  # type: ignore[misc]
    names = ["org"]
    budgets = SharedBudgets(PostgresStore(DOWN), always=names)
    names.append("team")  # the budgets a client charges are fixed when it is made
    assert budgets.always == ("org",)


async def test_a_call_no_shared_budget_applies_to_never_touches_the_database() -> None:
    # Neither `always`, nor charge_to, nor a tag: the call goes through even with the database down.
    down = SharedBudgets(PostgresStore(DOWN, timeout=1))
    driver = FakeDriver(replies=["w1 w2", ServerError("down", status=500)])
    client = Client(providers={"fake": driver}, prices=PRICES, budget_store=down, retry=0)
    reply = await client.chat("a b c", model="fake/paid", max_tokens=10)
    assert reply.cost is not None and len(client.ledger) == 1
    with pytest.raises(ServerError):  # a failed call has nothing to release either
        await client.chat("a b c", model="fake/paid", max_tokens=10)


async def test_with_the_ledger_elsewhere_a_call_settles_on_its_own_and_a_failed_one_releases(
    postgres_url: str,
) -> None:
    budgets = SharedBudgets(postgres_url, always=["org"])
    budgets.store.migrate()
    budgets.define("org", "1")
    driver = FakeDriver(replies=["w1 w2", ServerError("down", status=500)])
    client = Client(providers={"fake": driver}, prices=PRICES, budget_store=budgets, retry=0)  # ledger in memory
    reply = await client.chat("a b c", model="fake/paid", max_tokens=10)
    with pytest.raises(ServerError):
        await client.chat("a b c", model="fake/paid", max_tokens=10)
    status = budgets.status("org")  # the failed call's reservation is gone at once, not when its lease ends
    assert (status.spent, status.reserved, status.calls) == (reply.cost.total, 0, 1)  # type: ignore[union-attr]


async def test_fail_open_warns_at_admission() -> None:
    down = PostgresStore(DOWN, timeout=1)
    client = Client(prices=PRICES, budget_store=SharedBudgets(down, always=["org"], fail_open=True))
    with pytest.warns(FleetDegradedWarning) as warned:
        reply = await client.chat("a b c", model="fake/paid", max_tokens=10)
    messages = [str(warning.message) for warning in warned]
    assert any("sent without admission (fail_open)" in message for message in messages), messages
    # Admitted without a reservation, the call has nothing to settle: the record goes to the writer, which spools it.
    assert reply.cost is not None and len(client.ledger) == 1
