"""The fleet's ledger on a real PostgreSQL: this process's records and the fleet's totals, and the spool that keeps
every record while the database is down."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmclient import Client, Usage
from llmclient.accounting.ledger import CostLedger, LedgerRecord
from llmclient.accounting.prices import PriceEntry
from llmclient.stores import FleetDegradedWarning, PostgresLedger, PostgresStore, SharedBudgets, pg_ledger
from llmclient.stores.base import Settlement

PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
DOWN = "postgresql://nobody:secret@/nowhere?host=/nonexistent-socket-dir"


def record(tags: tuple[str, ...] = ("猫",)) -> LedgerRecord:
    usage = Usage(input_tokens=3, output_tokens=4)
    cost = PriceEntry.per_million("paid", "fake", input=1, output=2).cost(usage)
    return LedgerRecord("fake", "paid", "chat", usage, cost, 0.5, tags=tags)


async def test_this_process_s_records_and_the_fleet_s_totals(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    other_process = PostgresLedger(store)
    other_process.add(record(("batch",)))
    async with Client(prices=PRICES, ledger=postgres_url) as client:
        await client.chat("a b c", model="fake/paid", tags=["batch"])
        await client.chat("d", model="fake/free")
    ledger = client.ledger
    assert isinstance(ledger, PostgresLedger)
    assert [r.model for r in ledger.records] == ["paid", "free"]  # the ones this object added
    assert len(ledger) == ledger.count() == 3 and [r.model for r in ledger] == ["paid", "paid", "free"]  # the fleet's
    assert {name: s.calls for name, s in ledger.by_model().items()} == {"fake/free": 1, "fake/paid": 2}  # the fleet's
    assert {name: s.calls for name, s in ledger.by_provider().items()} == {"fake": 3}
    assert {name: s.calls for name, s in ledger.by_tag().items()} == {"(untagged)": 1, "batch": 2}
    assert ledger.total() == ledger.by_model()["fake/paid"].cost > 0
    assert ledger.usage().input_tokens == 3 + 3 + 1 and ledger.by_deployment() == ledger.by_provider()
    with pytest.raises(ValueError, match="cannot group by 'week'; choose one of model, provider"):
        ledger.summary("week")


def test_the_fleet_s_records_are_read_back_a_page_at_a_time(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_ledger, "_PAGE", 7)
    ledger = PostgresLedger(PostgresStore(postgres_url), keep=3)
    start = datetime.now(timezone.utc).timestamp()
    written = [dataclasses.replace(record((str(n),)), timestamp=start + n) for n in range(30)]
    for item in written:
        ledger.add(item)
    assert [r.tags for r in ledger] == [r.tags for r in written]  # five pages, none skipped or repeated
    assert [r.tags for r in ledger.rows(since=datetime.fromtimestamp(start + 25, tz=timezone.utc))] == [
        (str(n),) for n in range(25, 30)
    ]
    assert ledger.records == tuple(written[-3:]) and ledger.dropped == 0
    assert ledger.total() == 30 * record().cost.total  # type: ignore[union-attr]


def test_a_ledger_s_repr_hides_the_password() -> None:
    assert (
        repr(PostgresLedger(PostgresStore(DOWN)))
        == "PostgresLedger(PostgresStore(postgresql://nobody:[REDACTED]@/nowhere?host=/nonexistent-socket-dir))"
    )


def test_records_wait_in_a_spool_while_the_database_is_down(tmp_path: Path) -> None:
    spool_dir = tmp_path / "state" / "spool"  # made when the first record waits
    store = PostgresStore(DOWN, timeout=1, spool_dir=spool_dir)
    down = PostgresLedger(store)

    def write_two() -> None:
        down.add(record())
        store.drain_blocking()  # the first write finds the database down and spools
        down.add(record())
        store.drain_blocking()

    with pytest.warns(FleetDegradedWarning, match="spooled to .* uploaded when it answers"):
        write_two()
    written = down.spool_path.read_text(encoding="utf-8")
    assert written.count("\n") == 2 and "猫" in written

    # An upload that fails puts every line back as it was, and leaves nothing claimed behind.
    assert store.upload() == 0
    assert down.spool_path.read_text(encoding="utf-8") == written
    assert [path.name for path in spool_dir.iterdir()] == [down.spool_path.name]


def test_a_settlement_rides_in_its_record_s_row(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url)
    budgets.store.migrate()
    budgets.define("org", "1")
    ledger = PostgresLedger(budgets.store)
    budgets.reserve("first", ["org"], [], Decimal("0.1"), lease=timedelta(minutes=1))
    budgets.reserve("second", ["org"], [], Decimal("0.2"), lease=timedelta(minutes=1))
    at = datetime.now(timezone.utc)
    ledger.add(record())  # a record without a settlement settles nothing
    status = budgets.status("org")
    assert (status.reserved, status.calls) == (Decimal("0.3"), 0)
    ledger.add_settled(record(), Settlement("first", ("org",), at))  # the call's own, handed over with its record
    status = budgets.status("org")
    assert (status.reserved, status.calls, ledger.count()) == (Decimal("0.2"), 1, 2)
    assert status.spent == record().cost.total  # type: ignore[union-attr]
    # A ledger that cannot write a settlement with its rows refuses one rather than drop it.
    with pytest.raises(TypeError, match="cannot write a shared budget's settlement"):
        CostLedger().add_settled(record(), Settlement("second", ("org",), at))
