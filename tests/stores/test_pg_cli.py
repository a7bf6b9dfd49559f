"""`llmclient db` and `llmclient cost --ledger postgresql://...` on the fleet's shared ledger."""

from __future__ import annotations

import asyncio
import io
import json

from llmclient import Client
from llmclient.cli import main
from llmclient.stores import PostgresLedger, PostgresStore, SharedBudgets
from llmclient.stores._schema import SCHEMA_VERSION

PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}


def _run(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out) == 0
    return out.getvalue()


async def _two_calls(url: str) -> None:
    budgets = SharedBudgets(url, always=["org"])
    budgets.define("org", "1")
    async with Client(prices=PRICES, ledger=url, budget_store=budgets) as client:
        await client.chat("a b c", model="fake/paid", max_tokens=10, tags=["nightly"])
        await client.chat("a b", model="fake/echo", tags=["nightly", "eval"])


def test_cost_reads_the_shared_ledger_grouped_by_model_tag_day_and_budget(postgres_url: str) -> None:
    assert f"schema version {SCHEMA_VERSION}" in _run("db", "migrate", "--url", postgres_url)
    asyncio.run(_two_calls(postgres_url))

    report = json.loads(_run("--ledger", postgres_url, "cost", "--by", "budget", "--format", "json"))
    assert report["total_usd"] == "0.000013"
    assert report["groups"]["org"]["calls"] == 2 and report["groups"]["org"]["cost_usd"] == "0.000013"
    by_tag = json.loads(_run("--ledger", postgres_url, "cost", "--by", "tag", "--format", "json"))["groups"]
    assert {tag: group["calls"] for tag, group in by_tag.items()} == {"eval": 1, "nightly": 2}
    table = _run("--ledger", postgres_url, "cost", "--by", "model")
    assert "fake/paid" in table and "fake/echo" in table and table.splitlines()[-1].startswith("total")
    assert len(json.loads(_run("--ledger", postgres_url, "cost", "--by", "day", "--format", "json"))["groups"]) == 1
    assert _run("--ledger", postgres_url, "cost", "--by", "call", "--format", "csv").count("\n") == 3
    assert "uploaded 0" in _run("db", "flush", "--url", postgres_url)


def test_db_needs_a_url() -> None:
    assert main(["db", "status"], out=io.StringIO()) == 1


def test_the_shared_ledger_keeps_the_deployment_that_served_a_call(postgres_url: str) -> None:
    async def routed() -> None:
        routes = {"chat": [{"model": "fake/echo", "name": "primary"}]}
        async with Client(ledger=postgres_url, routes=routes) as client:
            await client.chat("hi", model="chat")
            await client.chat("hi", model="fake/echo")  # not routed: reported under its provider

    asyncio.run(routed())
    report = json.loads(_run("--ledger", postgres_url, "cost", "--by", "deployment", "--format", "json"))
    assert {key: group["calls"] for key, group in report["groups"].items()} == {"primary": 1, "fake": 1}
    ledger = PostgresLedger(PostgresStore(postgres_url, migrate=False))
    try:
        assert sorted(str(record.deployment) for record in ledger.rows()) == ["None", "primary"]
    finally:
        ledger.store.close()
