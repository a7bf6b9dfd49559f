"""Shared budgets held like in-process ones: count margins learned by the fleet, streams stopped past their
reservation, embedding jobs reserving their input, leases renewed while a call runs, unknown costs kept."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmclient import (
    APITimeoutError,
    BudgetExceededError,
    Client,
    FakeDriver,
    RetryPolicy,
    ServerError,
    TokenCount,
    Usage,
)
from llmclient.stores import PostgresStore, SharedBudgets, SharedMargins

PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
PROMPT = "w " * 100  # 100 words: the fake tokenizer's count


class Underestimated(FakeDriver):
    """A provider whose tokenizer we lack: our count is an estimate, and it bills `factor` times the count."""

    def __init__(self, factor: float, *, wait: asyncio.Event | None = None) -> None:
        super().__init__()
        self.factor, self.wait = factor, wait
        self.entered = asyncio.Event()  # set once a call is admitted and with the provider

    async def count_tokens(self, model: str, messages: Any, tools: Any) -> TokenCount:
        counted = await super().count_tokens(model, messages, tools)
        return TokenCount(tokens=counted.tokens, exact=False, tokenizer="estimate")

    async def chat(self, request: Any) -> Any:
        self.entered.set()
        if self.wait is not None:
            await self.wait.wait()
        reply = await super().chat(request)
        reply.usage = Usage(input_tokens=math.ceil(reply.usage.input_tokens * self.factor), output_tokens=2)
        return reply


def shared(url: str, **options: Any) -> SharedBudgets:
    budgets = SharedBudgets(PostgresStore(url), always=["org"], **options)
    budgets.define("org", "1")
    return budgets


async def reserved_while_in_flight(url: str, driver: Underestimated, release: asyncio.Event) -> Decimal:
    """What one call's admission reserved on a fresh client (a new process's view): read while it waits."""
    budgets = shared(url)
    client = Client(providers={"fake": driver}, prices=PRICES, budget_store=budgets)
    call = asyncio.ensure_future(client.chat(PROMPT, model="fake/paid", max_tokens=10))
    await driver.entered.wait()
    reserved = budgets.status("org").reserved
    release.set()
    await call
    await client.aclose()
    return reserved


async def test_a_margin_learned_by_one_process_is_where_a_new_one_starts(postgres_url: str) -> None:
    first_wait = asyncio.Event()
    before = await reserved_while_in_flight(postgres_url, Underestimated(1.0, wait=first_wait), first_wait)
    assert before == Decimal(125 + 20) / 1_000_000  # the floor: 100 counted + 25 %, and 10 output tokens

    budgets = shared(postgres_url)
    learner = Client(providers={"fake": Underestimated(2.0)}, prices=PRICES, budget_store=budgets)
    await learner.chat(PROMPT, model="fake/paid", max_tokens=10)  # billed 200 for a count of 100
    await learner.aclose()
    [(key, margin)] = budgets.store.fetch("SELECT key, margin FROM llmclient_margins")
    assert key == "fake/paid" and margin == pytest.approx(1.1)  # the shortfall, + 10 %

    second_wait = asyncio.Event()
    after = await reserved_while_in_flight(postgres_url, Underestimated(1.0, wait=second_wait), second_wait)
    assert after == Decimal(210 + 20) / 1_000_000  # a fresh process reserves for the learned shortfall at once
    assert isinstance(SharedMargins(budgets.store), SharedMargins)


async def test_a_stream_past_its_shared_reservation_is_stopped(postgres_url: str) -> None:
    # The fake stream ignores max_tokens: its text outgrows what was reserved for 2 output tokens.
    budgets = shared(postgres_url)
    client = Client(prices=PRICES, budget_store=budgets)
    received = []

    async def consume() -> None:
        async for chunk in client.stream("a b c d e f g h", model="fake/paid", max_tokens=2):
            received.append(chunk.delta)

    with pytest.raises(BudgetExceededError, match="passed its reserved"):
        await consume()
    await client.aclose()
    assert len(received) == 2  # the in-process check, now fed by the shared reservation alone
    status = budgets.status("org")
    assert status.reserved == 0 and status.spent == client.ledger.records[0].cost.total  # type: ignore[union-attr]


async def test_an_embedding_job_reserves_its_input_on_shared_budgets(postgres_url: str) -> None:
    budgets = SharedBudgets(PostgresStore(postgres_url), always=["org"])
    budgets.define("org", "0.000005")  # 5 input tokens at 1 µ$
    driver = FakeDriver()
    prices = {"fake/embedder": {"input_cost_per_token": "0.000001"}}
    client = Client(providers={"fake": driver}, prices=prices, budget_store=budgets)
    with pytest.raises(BudgetExceededError, match="shared budget 'org'"):  # it reserved 0 before, so it went out
        await client.embed(["one two three", "four five six"], model="fake/embedder")
    assert driver.requests == []
    reply = await client.embed(["one two"], model="fake/embedder")
    await client.aclose()
    assert budgets.status("org").spent == reply.cost.total == Decimal("0.000002")  # type: ignore[union-attr]


async def test_a_call_longer_than_its_lease_keeps_its_reservation(postgres_url: str) -> None:
    lease = timedelta(milliseconds=600)
    budgets = shared(postgres_url, lease=lease)
    release = asyncio.Event()
    client = Client(providers={"fake": Underestimated(1.0, wait=release)}, prices=PRICES, budget_store=budgets)
    call = asyncio.ensure_future(client.chat(PROMPT, model="fake/paid", max_tokens=10))
    await asyncio.sleep(2.5 * lease.total_seconds())  # two leases later
    held = budgets.status("org").reserved
    release.set()
    await call
    await client.aclose()
    assert held == Decimal(145) / 1_000_000  # renewed: still the call's worst case
    assert budgets.status("org").reserved == 0


async def test_an_unknown_cost_is_charged_its_shared_reservation(postgres_url: str) -> None:
    budgets = shared(postgres_url)
    replies = [APITimeoutError("read timed out"), ServerError("x", status=500, retryable=True)]
    retry = RetryPolicy(max_retries=1, initial_backoff=0, jitter=False)
    client = Client(
        providers={"fake": FakeDriver(replies=replies)}, prices=PRICES, ledger=postgres_url, budget_store=budgets,
        retry=retry,
    )  # fmt: skip
    with pytest.raises(ServerError):
        await client.chat("one two three", model="fake/paid", max_tokens=10)
    await client.aclose()
    status = budgets.status("org")
    assert (status.spent, status.reserved, status.calls) == (Decimal(3 + 20) / 1_000_000, 0, 1)
    [(cost, charged)] = budgets.store.fetch("SELECT cost_usd, charged_usd FROM llmclient_calls")
    assert cost is None and charged == status.spent  # the row says what the budget was charged
