"""Several OS processes against one shared budget and ledger on a real PostgreSQL (the embedded server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from llmclient.stores import PostgresLedger, PostgresStore, SharedBudgets

WORKER = Path(__file__).with_name("fleet_worker.py")
COST = Decimal("0.000023")  # every call's worst case and actual cost (fleet_worker.py)


def _start(url: str, process: int, tasks: int, mode: str = "run") -> subprocess.Popen[str]:
    command = [sys.executable, str(WORKER), url, str(process), str(tasks), mode]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def _finish(process: subprocess.Popen[str]) -> dict[str, int]:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    result: dict[str, int] = json.loads(stdout.strip().splitlines()[-1])
    return result


def test_processes_never_admit_more_than_the_limit_and_the_ledger_adds_up(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url)
    budgets.store.migrate()
    limit = COST * 37 + Decimal("0.00001")  # room for 37 calls; 4 × 25 = 100 try at once
    budgets.define("fleet", limit)

    results = [_finish(p) for p in [_start(postgres_url, n, 25) for n in range(4)]]

    admitted = sum(r["admitted"] for r in results)
    assert admitted == 37  # each call costs exactly its worst case: one more would have gone over
    assert sum(r["refused"] for r in results) == 100 - 37
    assert sum(r["retried"] for r in results) >= 1
    ledger = PostgresLedger(budgets.store)
    rows = ledger.rows()
    assert len(rows) == admitted  # zero lost, zero duplicated, retried calls included
    assert sum(r.attempts for r in rows) == admitted + sum(r["retried"] for r in results)
    status = budgets.status("fleet")
    assert status.reserved == 0 and status.calls == admitted
    assert status.spent == sum((r.cost.total for r in rows if r.cost), Decimal(0)) == COST * admitted
    assert status.spent <= limit
    assert ledger.summary("budget")["fleet"].cost == status.spent


def test_three_processes_on_one_budget_never_overspend_a_provider_that_bills_20_percent_more(
    postgres_url: str,
) -> None:
    # Each call: 103 words counted, an estimate, billed as 124 input tokens (+20 %) and 10 output tokens: 144 µ$.
    # Its reservation covers the documented worst case: the count + 25 % (129 tokens) and max_tokens: 149 µ$.
    cost = Decimal("0.000144")
    budgets = SharedBudgets(postgres_url)
    budgets.store.migrate()
    budgets.define("fleet", cost * 80)  # what fits: 80 of the 120 calls

    results = [_finish(p) for p in [_start(postgres_url, n, 40, "overbill") for n in range(3)]]

    admitted = sum(r["admitted"] for r in results)
    status = budgets.status("fleet")
    rows = PostgresLedger(budgets.store).rows()
    assert status.spent <= cost * 80  # never overspent (without the margin, 93 would be admitted: 13.4 m$)
    assert admitted >= 0.8 * 80  # and at least 80 % of what fits is admitted
    assert len(rows) == admitted == status.calls and status.reserved == 0
    assert status.spent == sum((r.cost.total for r in rows if r.cost), Decimal(0)) == cost * admitted


def test_a_killed_process_returns_its_reservation_after_the_lease(postgres_url: str) -> None:
    budgets = SharedBudgets(postgres_url)
    budgets.store.migrate()
    budgets.define("fleet", COST)  # room for exactly one call
    process = _start(postgres_url, 0, 1, mode="hang")
    try:
        deadline = time.monotonic() + 60
        while budgets.status("fleet").reserved == 0:  # wait for the worker to reserve
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the worker never reserved"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert budgets.status("fleet").remaining == 0  # held by the dead process until its lease (30 s) ends

    later = datetime.now(timezone.utc) + timedelta(seconds=31)
    after_lease = SharedBudgets(PostgresStore(postgres_url, clock=lambda: later))
    status = after_lease.status("fleet")
    assert (status.reserved, status.spent, status.remaining) == (0, 0, COST)
    assert after_lease.reserve("next", ["fleet"], [], COST, lease=timedelta(seconds=30)) == ("fleet",)
