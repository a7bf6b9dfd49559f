"""Budgets reserve the worst case before sending, settle to the actual cost, and fail closed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import respx

from llmclient import (
    Budget,
    BudgetExceededError,
    BudgetOvershootWarning,
    Capabilities,
    Client,
    FakeDriver,
    OutputCapRequiredError,
    ServerError,
    drivers,
)
from llmclient.lifecycle.budget_admission import CountMargins

# 1 µ$ per input word, 2 µ$ per output word (the fake driver counts words).
PAID = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}


async def test_a_call_that_does_not_fit_is_never_sent() -> None:
    driver = FakeDriver()
    client = Client(providers={"fake": driver}, prices=PAID)
    async with client.budget(usd="0.00001") as budget:
        with pytest.raises(BudgetExceededError, match="may cost up to"):
            await client.chat("a b c", model="fake/paid", max_tokens=10)  # 3 + 20 µ$ > 10 µ$
    assert driver.requests == []
    assert len(client.ledger) == 0
    assert (budget.spent, budget.reserved) == (0, 0)


async def test_an_embedding_that_does_not_fit_is_never_sent_even_without_input_limits() -> None:
    # The fake driver's embedding models have no input limit, so only the budget asks for the texts to be counted.
    driver = FakeDriver()
    client = Client(providers={"fake": driver}, prices=PAID)
    async with client.budget(usd="0.000005") as budget:
        with pytest.raises(BudgetExceededError, match="may cost up to"):
            await client.embed(["a b c d e f g h"], model="fake/paid")  # 8 µ$ > 5 µ$
    assert len(client.ledger) == 0
    assert (budget.spent, budget.reserved) == (0, 0)


async def test_reservations_settle_to_the_actual_cost() -> None:
    client = Client(prices=PAID)
    async with client.budget(usd="1") as budget:
        reply = await client.chat("a b c", model="fake/paid", max_tokens=100)
    assert reply.cost is not None
    assert budget.spent == reply.cost.total == Decimal("0.000003") + Decimal("0.000002") * 5
    assert budget.reserved == 0 and budget.calls == 1


@pytest.mark.parametrize("admitted", [1, 3, 7])
async def test_a_budget_of_n_calls_admits_at_most_n_concurrent_calls(admitted: int) -> None:
    # Each call reserves 2 µ$ input + 10 × 2 µ$ output = 22 µ$, and all are in flight at once.
    class Slow(FakeDriver):
        async def chat(self, request: Any) -> Any:
            await asyncio.sleep(0.05)
            return await super().chat(request)

    client = Client(providers={"fake": Slow()}, prices=PAID)

    async def call() -> bool:
        try:
            await client.chat("a b", model="fake/paid", max_tokens=10)
        except BudgetExceededError:
            return False
        return True

    async with client.budget(usd=Decimal("0.000022") * admitted + Decimal("0.000021")) as budget:
        results = await asyncio.gather(*(call() for _ in range(50)))
    assert sum(results) == admitted
    assert budget.calls == admitted and budget.reserved == 0


async def test_nested_budgets_both_apply_and_scopes_end() -> None:
    client = Client(prices=PAID)
    async with client.budget(usd="1") as outer:
        async with client.budget(usd="0.00003") as inner:
            await client.chat("a b", model="fake/paid", max_tokens=10)
            with pytest.raises(BudgetExceededError):
                await client.chat("a b", model="fake/paid", max_tokens=10)
        await client.chat("a b", model="fake/paid", max_tokens=10)  # only the outer applies now
    assert inner.calls == 1 and outer.calls == 2
    await client.chat("a b", model="fake/paid", max_tokens=10)  # no budget at all
    assert outer.calls == 2


async def test_budgets_belong_to_their_client() -> None:
    first, second = Client(prices=PAID), Client(prices=PAID)
    async with first.budget(usd="0"):
        await second.chat("a b", model="fake/paid", max_tokens=10)
        with pytest.raises(BudgetExceededError):
            await first.chat("a b", model="fake/paid", max_tokens=10)


async def test_unknown_prices_fail_closed_unless_allowed() -> None:
    client = Client(providers={"mystery": {"driver": "fake"}})
    async with client.budget(usd="100"):
        with pytest.raises(BudgetExceededError, match="no known price"):
            await client.chat("hi", model="mystery/m")
    assert len(client.ledger) == 0
    async with client.budget(usd="100", allow_unknown_prices=True) as budget:
        with pytest.warns(Warning, match="unknown is not free"):
            await client.chat("hi", model="mystery/m")
    assert budget.calls == 1 and budget.spent == 0


async def test_without_max_tokens_the_models_maximum_output_is_reserved() -> None:
    client = Client(providers={"openai": {"api_key": "k"}})
    # gpt-4o: 16384 output tokens × $10/M = $0.16384 worst case.
    async with respx.mock, client.budget(usd="0.1"):
        route = respx.post("https://api.openai.com/v1/chat/completions")
        with pytest.raises(BudgetExceededError):
            await client.chat("hi", model="openai/gpt-4o")
        assert not route.called


class CappedDriver(FakeDriver):
    """A paid backend whose driver sends 50 output tokens when the call gives no max_tokens, as Anthropic's does."""

    name = "capped"
    capabilities = Capabilities(embed=True, default_max_tokens=50)


class CeilingDriver(FakeDriver):
    """A paid backend whose every model stops at 40 output tokens."""

    name = "ceiling"
    capabilities = Capabilities(embed=True, max_output_tokens=40)


@pytest.mark.parametrize(("driver", "reserved"), [(CappedDriver, 50), (CeilingDriver, 40)])
async def test_a_drivers_declared_output_bounds_the_reservation(
    driver: type[FakeDriver], reserved: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No max_tokens and no maximum output in the price: the driver's declaration bounds the worst case.
    prices = {f"{driver.name}/m": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
    monkeypatch.setitem(drivers._REGISTERED, driver.name, driver)  # registered for this test only
    client = Client(providers={driver.name: {}}, prices=prices)
    worst = Decimal("0.000001") * 2 + Decimal("0.000002") * reserved
    async with client.budget(usd=str(worst - Decimal("0.000001"))):
        with pytest.raises(BudgetExceededError, match="may cost up to"):
            await client.chat("a b", model=f"{driver.name}/m")
    async with client.budget(usd=str(worst)) as budget:
        reply = await client.chat("a b", model=f"{driver.name}/m")
    assert budget.spent == reply.cost.total  # type: ignore[union-attr]


async def test_the_catalogs_maximum_output_bounds_the_reservation_before_a_drivers_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The model's own maximum (10) is known, so the driver's ceiling for every model (40) does not apply.
    prices = {"ceiling/m": {"input_cost_per_token": "1e-6", "output_cost_per_token": "2e-6", "max_output_tokens": 10}}
    monkeypatch.setitem(drivers._REGISTERED, CeilingDriver.name, CeilingDriver)
    client = Client(providers={"ceiling": {}}, prices=prices)
    async with client.budget(usd=str(Decimal("0.000001") * 2 + Decimal("0.000002") * 10)) as budget:
        reply = await client.chat("a b", model="ceiling/m")
    assert budget.spent == reply.cost.total  # type: ignore[union-attr]


async def test_failed_calls_release_their_reservation() -> None:
    client = Client(providers={"fake": FakeDriver(replies=[ServerError("down", status=500)])}, prices=PAID, retry=0)
    async with client.budget(usd="1") as budget:
        with pytest.raises(ServerError):
            await client.chat("a", model="fake/paid", max_tokens=5)
    assert (budget.spent, budget.reserved, budget.calls) == (0, 0, 0)


async def test_a_stream_that_overruns_its_reservation_stops() -> None:
    # The fake stream ignores max_tokens, so its text can outgrow what was reserved for 2 output tokens.
    client = Client(prices=PAID)
    received: list[str] = []

    async def consume() -> None:
        async for chunk in client.stream("a b c d e f g h", model="fake/paid", max_tokens=2):
            received.append(chunk.delta)

    async with client.budget(usd="1") as budget:
        # The chunk that crossed the line was generated, so billed: its excess is the budget's overshoot.
        with pytest.raises(BudgetExceededError, match="passed its reserved"), pytest.warns(BudgetOvershootWarning):
            await consume()
    assert len(received) == 2  # stopped at the chunk that crossed the line
    record = client.ledger.records[0]
    assert record.error == "BudgetExceededError" and record.usage.estimated
    assert budget.reserved == 0 and budget.spent == record.cost.total  # type: ignore[union-attr]
    assert budget.overshoot == budget.spent - (Decimal("0.000008") + Decimal("0.000004"))


async def test_a_client_wide_budget() -> None:
    client = Client(prices=PAID, budget_usd="0.00004")  # each call reserves 22 µ$ and spends 12 µ$
    await client.chat("a b", model="fake/paid", max_tokens=10)
    await client.chat("a b", model="fake/paid", max_tokens=10)
    with pytest.raises(BudgetExceededError):
        await client.chat("a b", model="fake/paid", max_tokens=10)


def test_budget_also_works_as_a_plain_with_block() -> None:
    client = Client(prices=PAID)
    with client.budget(usd="0") as budget, pytest.raises(BudgetExceededError):
        asyncio.run(client.chat("a", model="fake/paid", max_tokens=1))
    assert budget.limit == 0
    with pytest.raises(ValueError, match="negative"):
        client.budget(usd="-1")


def test_a_float_limit_is_the_decimal_it_was_written_as() -> None:
    # Budget(0.1) is 0.1 USD, not 0.1000000000000000055511151231257827: a limit must be exact to the last digit.
    assert Budget(0.1).limit == Decimal("0.1")  # type: ignore[arg-type]
    assert Budget(0.1).remaining == Decimal("0.1")  # type: ignore[arg-type]


async def test_a_client_wide_budget_fails_closed_on_unknown_prices() -> None:
    # Client(budget_usd=...) takes no allow_unknown_prices: an unpriced model can never pass it.
    driver = FakeDriver(self_hosted=False)
    client = Client(providers={"mystery": driver}, budget_usd="100")
    with pytest.raises(BudgetExceededError, match="no known price"):
        await client.chat("hi", model="mystery/m", max_tokens=5)
    assert driver.requests == [] and len(client.ledger) == 0


def test_a_reservation_settles_or_releases_once() -> None:
    budget = Budget("1")
    settled = Budget.reserve_all([budget], Decimal("0.3"), "fake/paid")
    settled.settle(None)  # an unknown cost counts as the reservation
    settled.settle(None)
    settled.release()
    assert (budget.spent, budget.reserved, budget.calls) == (Decimal("0.3"), 0, 1)
    released = Budget.reserve_all([budget], Decimal("0.2"), "fake/paid")
    released.release()
    released.release()
    released.settle(None)
    assert (budget.spent, budget.reserved, budget.calls) == (Decimal("0.3"), 0, 1)


def test_a_reservation_holds_the_budgets_it_was_made_on() -> None:
    first, later = Budget("1"), Budget("1")
    budgets = [first]
    reservation = Budget.reserve_all(budgets, Decimal("0.1"), "fake/paid")
    budgets.append(later)  # the caller's list changing afterwards does not move the reservation
    reservation.settle(None)
    assert (first.spent, later.spent, later.reserved) == (Decimal("0.1"), 0, 0)


def test_estimated_counts_reserve_a_learned_margin() -> None:
    margins = CountMargins()
    assert margins.margin("m") == 0.25 and margins.reserved_tokens("m", 100) == 125
    margins.learn("m", 100, 110)  # 10% short: within the floor, nothing changes
    margins.learn("m", 100, 100)
    margins.learn("m", 100, 50)
    margins.learn("m", 0, 50)  # nothing counted: nothing to learn from (and no division by zero)
    assert margins.margin("m") == 0.25
    margins.learn("m", 100, 150)  # 50% short: the margin becomes that plus 10%
    assert margins.margin("m") == pytest.approx(0.55) and margins.reserved_tokens("m", 100) == 155
    margins.learn("m", 100, 120)  # a smaller shortfall later does not shrink it
    assert margins.margin("m") == pytest.approx(0.55) and margins.margin("other") == 0.25
    margins.learn("m", 10, 1000)  # absurd reported usage is capped at 300%
    assert margins.margin("m") == 3.0 and CountMargins(cap=5.0).cap == 5.0
    margins.learn("one", 1, 2)  # one token counted is a count like any other
    assert margins.margin("one") == pytest.approx(1.1)


async def test_without_max_tokens_a_model_without_a_maximum_output_is_refused() -> None:
    driver = FakeDriver(self_hosted=False)
    prices = {"mystery/m": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
    client = Client(providers={"mystery": driver}, prices=prices)
    async with client.budget(usd="1"):
        with pytest.raises(OutputCapRequiredError, match="no known maximum output, so a budget cannot") as raised:
            await client.chat("hi", model="mystery/m")
        assert not isinstance(raised.value, BudgetExceededError)  # nothing was exceeded: an argument is missing
        await client.chat("hi", model="mystery/m", max_tokens=5)
    assert len(driver.requests) == 1


async def test_a_stream_that_spends_exactly_its_reservation_runs_to_its_end() -> None:
    # An empty prompt counts 0 tokens and "You said:" is the 2 output tokens reserved: not a cent over.
    client = Client(prices=PAID)
    async with client.budget(usd="1") as budget:
        text = "".join([chunk.delta async for chunk in client.stream("", model="fake/paid", max_tokens=2)])
    assert text == "You said: " and client.ledger.records[-1].counted_input_tokens == 0
    assert budget.spent == Decimal("0.000004") and budget.overshoot == 0
