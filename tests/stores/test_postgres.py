"""The store's failure behaviour on a real server: migrations, bad settings, the database down or lost mid-call."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from llmclient import Client, ConfigurationError, FakeDriver
from llmclient.stores import FleetDegradedWarning, PostgresLedger, PostgresStore, SharedBudgets, StoreUnavailableError
from llmclient.stores._schema import SCHEMA_VERSION
from llmclient.stores.base import Settlement
from llmclient.stores.writer import RecordWrite

PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
DOWN = "postgresql://nobody@/nowhere?host=/nonexistent-socket-dir"


def test_many_first_uses_at_once_migrate_exactly_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        versions = list(pool.map(lambda store: store.migrate(), stores))
    assert versions == [SCHEMA_VERSION] * 6
    applied = stores[0].fetch("SELECT version FROM llmclient_schema")
    assert applied == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def test_bad_settings_are_configuration_errors_naming_what_is_wrong(postgres_url: str, postgres_server: Any) -> None:
    with pytest.raises(ConfigurationError, match="the scheme 'mysql' is not supported"):
        PostgresStore("mysql://root@localhost/db")
    with pytest.raises(ConfigurationError, match="does not exist"):
        PostgresStore(postgres_server.get_uri(database="no_such_database")).migrate()
    with pytest.raises(ConfigurationError, match=r"schema version 0.*llmclient db migrate"):
        PostgresStore(postgres_url, migrate=False).ensure_schema()


def test_missing_permissions_name_the_privileges_needed(postgres_url: str) -> None:
    PostgresStore(postgres_url).migrate()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("CREATE ROLE llm_reader LOGIN")
    reader_url = postgres_url.replace("postgres:@", "llm_reader:@", 1)
    reader = PostgresStore(reader_url, migrate=False)
    with pytest.raises(ConfigurationError, match=r"may not do this.*INSERT"):
        SharedBudgets(reader).define("org", "1")
    with pytest.raises(ConfigurationError, match="USAGE and CREATE"):
        PostgresStore(reader_url).migrate()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("DROP OWNED BY llm_reader")
        admin.execute("DROP ROLE llm_reader")


async def test_the_database_down_at_admission_fails_closed_with_nothing_sent() -> None:
    driver = FakeDriver()
    budgets = SharedBudgets(PostgresStore(DOWN, timeout=1), always=["org"])
    client = Client(providers={"fake": driver}, prices=PRICES, budget_store=budgets)
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        await client.chat("hi", model="fake/paid", max_tokens=5)
    assert driver.requests == [] and len(client.ledger) == 0


async def test_fail_open_sends_spools_the_record_and_charges_it_on_upload(postgres_url: str, tmp_path: Path) -> None:
    up = SharedBudgets(postgres_url)
    up.store.migrate()
    up.define("org", "1")
    down = PostgresStore(DOWN, timeout=1, spool_dir=tmp_path)
    ledger = PostgresLedger(down)
    budgets = SharedBudgets(down, always=["org"], fail_open=True)
    client = Client(prices=PRICES, ledger=ledger, budget_store=budgets)
    with pytest.warns(FleetDegradedWarning) as warned:
        reply = await client.chat("a b c", model="fake/paid", max_tokens=10)
    await client.aclose()  # the writer has spooled the record
    assert {"without admission" in str(w.message) or "spooled" in str(w.message) for w in warned} == {True}
    entries = [json.loads(line) for line in ledger.spool_path.read_text().splitlines()]
    [entry] = [entry for entry in entries if "record" in entry]  # and the release of a reservation never made
    assert entry["settlement"]["budgets"] == ["org"]

    # The same database back (here: the spool handed to a store that reaches it): uploaded once, charged once.
    back = PostgresStore(postgres_url, spool_dir=tmp_path)
    ledger.spool_path.rename(back.spool_path)
    assert back.upload() == len(entries)
    assert not back.spool_path.exists() and back.upload() == 0
    assert up.status("org").spent == reply.cost.total == PostgresLedger(up.store).total()


def test_a_retried_write_never_counts_twice(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url, always=["org"])
    budgets.store.migrate()
    budgets.define("org", "1")
    client_ledger = PostgresLedger(budgets.store)
    asyncio.run(_one_call(postgres_url, budgets))
    [record] = client_ledger.rows()
    [(call_id,)] = budgets.store.fetch("SELECT call_id FROM llmclient_calls")

    # The same row again, as after a commit whose acknowledgement was lost: nothing changes.
    sql, params = RecordWrite(call_id, record, Settlement(None, ("org",))).statement()
    budgets.store.fetch(sql, params)
    assert client_ledger.count() == 1 and budgets.status("org").calls == 1


async def _one_call(url: str, budgets: SharedBudgets) -> None:
    async with Client(prices=PRICES, ledger=url, budget_store=budgets) as client:
        await client.chat("a b c", model="fake/paid", max_tokens=10)


async def test_a_connection_lost_mid_call_loses_no_record(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url, always=["org"])
    budgets.store.migrate()
    budgets.define("org", "1")

    class CutsTheDatabase(FakeDriver):
        async def chat(self, request: Any) -> Any:
            # Every connection this process holds is killed while the call is with the provider.
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            return await super().chat(request)

    client = Client(providers={"fake": CutsTheDatabase()}, prices=PRICES, ledger=postgres_url, budget_store=budgets)
    reply = await client.chat("a b c", model="fake/paid", max_tokens=10)
    assert PostgresLedger(budgets.store).count() == 1
    status = budgets.status("org")
    assert (status.spent, status.reserved) == (reply.cost.total, 0)
