"""What observing costs: a chat call with no observers, with the default ones while tracing is off, and traced.

* `calls`: client CPU time per `chat` call (`time.process_time`, sequential) for three set-ups of one client, in
  interleaved rounds, against bench/server.py over loopback HTTP and against the in-process `fake` driver (no I/O:
  the pipeline alone, the worst case for any fixed cost):
  - **no observers**: `client.pipeline.observers = []`, the baseline;
  - **tracing off**: the default observers (the `llmclient` logger at WARNING, `Tracing` with opentelemetry-api
    installed and no SDK provider set);
  - **tracing on**: `Tracing` with the OpenTelemetry SDK's TracerProvider (SimpleSpanProcessor to an exporter that
    drops the spans) and MeterProvider (in-memory reader), so span and metric creation is what is measured.
* `events`: the default observers' hooks timed directly for one call's events (request, record, response), which
  a shared machine measures far more precisely than the difference of two whole-call timings.

Target: tracing off ≤ 1% over no observers.

    .venv/bin/python bench/bench_tracing.py            # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_tracing.py --quick    # prints only
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import timeit
from collections.abc import Sequence
from typing import Any

from clients import LLMCLIENT_MODEL, PROMPT
from harness import bench_server, environment_line
from llmclient import Client
from llmclient.observability import Observer, Tracing
from llmclient.observability.observers import Hooks, default_observers, notify
from run import DEFAULT_OUTPUT, update_markdown

SECTION = "tracing"
TARGET = 0.01


def traced() -> Tracing:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Drop()))
    return Tracing(tracer_provider=tracer_provider, meter_provider=MeterProvider([InMemoryMetricReader()]))


def setups(providers: dict[str, Any]) -> dict[str, Client]:
    prices = {LLMCLIENT_MODEL: 1}  # priced, as a real model is: no unknown-price warning, and pricing is measured
    clients = {
        name: Client(providers=providers, prices=prices) for name in ("no observers", "tracing off", "tracing on")
    }
    clients["no observers"].pipeline.observers = []
    clients["tracing on"].pipeline.observers = [*default_observers()[:1], traced()]
    return clients


async def per_call(client: Client, model: str, calls: int) -> float:
    gc.collect()
    started = time.process_time()
    for _ in range(calls):
        await client.chat(PROMPT, model=model)
    return (time.process_time() - started) / calls * 1e6


async def measure(providers: dict[str, Any], model: str, calls: int, rounds: int) -> dict[str, list[float]]:
    clients = setups(providers)
    for client in clients.values():  # warm up: connections, caches, first-use imports
        for _ in range(200):
            await client.chat(PROMPT, model=model)
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for index in range(rounds):
        names = list(clients)
        names = names[index % len(names) :] + names[: index % len(names)]  # rotate the order each round
        for name in names:
            samples[name].append(await per_call(clients[name], model, calls))
    for client in clients.values():
        await client.aclose()
    return samples


def events_ns(repeats: int = 200_000) -> float:
    """The default observers' work for one successful call (tracing off), in ns."""

    async def one_call() -> Any:
        async with Client() as client:
            seen: list[Any] = []

            class Keep(Observer):
                def on_response(self, call: Any, outcome: Any) -> None:
                    seen.append((call, outcome))

            client.pipeline.observers = [Keep()]
            await client.chat(PROMPT, model="fake/echo")
            return seen[0]

    call, outcome = asyncio.run(one_call())
    record = outcome.record
    hooks = Hooks(default_observers())

    def events() -> None:
        if hooks.on_request:
            notify(hooks.on_request, call)
        if hooks.on_record:
            notify(hooks.on_record, call, record)
        if hooks.on_response:
            notify(hooks.on_response, call, outcome)

    return min(timeit.repeat(events, number=repeats, repeat=5)) / repeats * 1e9


def summary(samples: dict[str, list[float]]) -> dict[str, tuple[float, float, float]]:
    return {name: (statistics.median(values), min(values), max(values)) for name, values in samples.items()}


def table(title: str, rows: dict[str, tuple[float, float, float]]) -> list[str]:
    base = rows["no observers"][0]
    lines = [f"**{title}**", "", "| set-up | CPU µs/call, median (min–max) | vs no observers |", "|---|---:|---:|"]
    for name, (median, low, high) in rows.items():
        lines.append(f"| {name} | {median:.1f} ({low:.1f}–{high:.1f}) | {median / base - 1:+.1%} |")
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls; print only")
    args = parser.parse_args(argv)
    calls, rounds = (300, 3) if args.quick else (2000, 9)

    with bench_server(None) as base_url:
        http = summary(
            asyncio.run(measure({"openai-compatible": {"base_url": base_url}}, LLMCLIENT_MODEL, calls, rounds))
        )
    fake = summary(asyncio.run(measure({}, "fake/echo", calls, rounds)))
    direct = events_ns(20_000 if args.quick else 200_000)
    http_share = direct / 1000 / http["no observers"][0]
    fake_share = direct / 1000 / fake["no observers"][0]
    verdict = "met" if http_share <= TARGET else "MISSED"
    command = "`.venv/bin/python bench/bench_tracing.py`"
    body = [
        "## Observing a call: hooks, logging and OpenTelemetry",
        "",
        environment_line(),
        "",
        f"Command: {command} ({calls} sequential calls per measurement, {rounds} interleaved rounds). See the script's "
        "docstring for the set-ups. Timings on a shared 2-core machine move by several percent between rounds, so "
        "the whole-call rows bound the overhead only roughly; the direct timing of the hooks is the precise figure.",
        "",
        *table("Loopback HTTP (openai-compatible driver, bench/server.py)", http),
        *table("In-process fake driver (no I/O: the pipeline alone)", fake),
        f"Default observers with tracing off, timed directly: **{direct:.0f} ns per call**, "
        f"{http_share:.2%} of an HTTP call and {fake_share:.2%} of a fake-driver call.",
        "",
        f"Target tracing off ≤ {TARGET:.0%} of a call: {http_share:.2%} of an HTTP call ({verdict}). Tracing on "
        f"costs {http['tracing on'][0] - http['no observers'][0]:.0f} µs per HTTP call "
        f"({http['tracing on'][0] / http['no observers'][0] - 1:+.1%}) with the SDK's span and metric processing.",
    ]
    text = "\n".join(body)
    print(text)
    if not args.quick:
        update_markdown(DEFAULT_OUTPUT, {SECTION: text})
    return 0


if __name__ == "__main__":
    sys.exit(main())
