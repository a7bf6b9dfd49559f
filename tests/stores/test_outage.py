"""PostgreSQL goes away while 50 calls run on its ledger and a shared budget: stopped, silent (accepting, never
answering) and killed mid-transaction, each with the budgets failing closed and failing open.

Every call ends within its own timeout, the event loop is never held (a ticker task measures it: the 50 ms target
is measured on pinned cores in bench/bench_outage.py; here the bound leaves room for a loaded machine, where the
store loop's thread and other processes compete for the CPU, and is still half of one store timeout, the least a
blocking write would cost), and once the database is back the client uploads what it spooled: the ledger holds
exactly one row per call that went out, the budget's spend is exactly their cost, and no reservation is left.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmclient import ChatResponse, Client, FakeDriver, LLMClientError
from llmclient.stores import FleetDegradedWarning, PostgresLedger, PostgresStore, SharedBudgets, StoreUnavailableError
from stores.outage import Database, Ticker

PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
STORE_TIMEOUT = 1.0  # seconds a call may wait for the database
CALL_TIMEOUT = 3.0  # each call's own deadline (admission included)
LOOSE_STALL = STORE_TIMEOUT / 2  # a statement run on the event loop would hold it for STORE_TIMEOUT or more


class Provider(FakeDriver):
    """Answers after 50 to 400 ms, by the number in the prompt: calls finish all through the outage."""

    async def chat(self, request: Any) -> Any:
        number = int(request.messages[-1].text.split()[-1])
        await asyncio.sleep(0.05 + (number % 8) * 0.05)
        return await super().chat(request)


@dataclass
class Result:
    reply: ChatResponse | None
    error: BaseException | None
    seconds: float


async def wave(client: Client, first: int, count: int) -> list[Result]:
    async def one(number: int) -> Result:
        started = time.perf_counter()
        try:
            reply = await client.chat(f"task {number}", model="fake/paid", max_tokens=5)
        except LLMClientError as exc:
            return Result(None, exc, time.perf_counter() - started)
        return Result(reply, None, time.perf_counter() - started)

    return list(await asyncio.gather(*(one(number) for number in range(first, first + count))))


async def take_away(database: Database, how: str) -> None:
    if how == "stopped":
        await asyncio.to_thread(database.command, "stop")
    elif how == "silent":
        await asyncio.to_thread(database.command, "pause")
    else:  # killed while the wave's calls reserve, wait for the provider and write their rows
        await asyncio.sleep(0.15)
        await asyncio.to_thread(database.command, "kill")


async def bring_back(database: Database, how: str) -> None:
    await asyncio.to_thread(database.command, "resume" if how == "silent" else "start")


async def until_uploaded(store: PostgresStore, seconds: float = 30.0) -> None:
    """Wait for the client to find the database again and upload its spool (by itself: nothing is flushed)."""
    deadline = time.monotonic() + seconds
    while store.down or any(store.spool_dir.glob(f"{store.key}*")):  # the spool, or a spool being uploaded
        assert time.monotonic() < deadline, "the spool was not uploaded after the database came back"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
@pytest.mark.parametrize("how", ["stopped", "silent", "killed"])
async def test_fifty_calls_through_an_outage_end_in_time_and_the_books_are_exact(
    database: Database, how: str, fail_open: bool, tmp_path: Path
) -> None:
    direct, proxied = database.create()
    url = proxied if how == "silent" else direct
    store = PostgresStore(url, timeout=STORE_TIMEOUT, spool_dir=tmp_path)
    budgets = SharedBudgets(store, always=["org"], fail_open=fail_open, lease=timedelta(minutes=10))
    budgets.define("org", "1")
    client = Client(
        providers={"fake": Provider()}, prices=PRICES, ledger=PostgresLedger(store), budget_store=budgets,
        timeout=CALL_TIMEOUT, retry=0,
    )  # fmt: skip
    with Ticker() as ticker, warnings.catch_warnings():
        warnings.simplefilter("ignore", FleetDegradedWarning)  # fail-open calls and spooled records say so
        results = await wave(client, 0, 10)  # the pool is open and warm before the outage
        assert all(result.reply for result in results)
        if how == "killed":
            outage = asyncio.ensure_future(take_away(database, how))
            results += await wave(client, 10, 50)
            await outage
        else:
            await take_away(database, how)
            results += await wave(client, 10, 50)
        await bring_back(database, how)
        await client.aclose()
        await until_uploaded(store)
        await store.aclose()
    assert ticker.longest < LOOSE_STALL, f"the event loop stalled {ticker.longest:.3f} s"

    assert max(result.seconds for result in results) < CALL_TIMEOUT + 0.5
    # What the database costs a call: at most one store timeout (the provider answers within 0.4 s).
    assert max(result.seconds for result in results) < STORE_TIMEOUT + 0.4 + 0.5
    sent = [result.reply for result in results if result.reply is not None]
    refused = [result.error for result in results if result.error is not None]
    assert all(isinstance(error, StoreUnavailableError) for error in refused), refused[:3]
    if fail_open:
        assert not refused  # every call went out, admitted or not
    elif how != "killed":
        assert len(refused) == 50  # nothing went out while the database was away

    check = PostgresStore(direct, migrate=False)
    try:
        rows = PostgresLedger(check).rows()
        status = SharedBudgets(check).status("org")
    finally:
        check.close()
    spent = sum((reply.cost.total for reply in sent if reply.cost is not None), Decimal(0))
    assert len(rows) == len(sent)  # none lost, none twice
    assert sorted(row.request_id or "" for row in rows) == sorted(reply.request_id or "" for reply in sent)
    assert status.spent == spent == sum((row.cost.total for row in rows if row.cost), Decimal(0))
    assert (status.reserved, status.calls) == (0, len(sent))  # no reservation outlived the outage
