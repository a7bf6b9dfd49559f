"""Client CPU per call against bench/server.py: chat (sequential and 100 concurrent), stream chunks and embeddings.

Every client in bench/clients.py does each job; raw aiohttp is the limit the targets are measured against.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clients import BASELINE, CLIENTS, Client, LLMClient, Unavailable
from harness import Settings, bench_server, cpu_split, environment_line, pin
from server import EMBEDDING_DIMENSIONS, REPLY_PIECES, REPLY_TEXT

TARGET = 1.5  # llmclient ≤ 1.5× raw aiohttp in every workload
MEASURE_WARMUP = 100  # untimed calls on each fresh client: connects, fills its pool
TARGET_CLIENT = LLMClient.name


@dataclass(frozen=True)
class Workload:
    """One job issued `concurrency` at a time, `calls` in all; CPU is reported per call divided by `units`."""

    name: str
    title: str
    job: str
    concurrency: int
    calls: int
    units: int = 1


def workloads(settings: Settings) -> tuple[Workload, ...]:
    """The four measured workloads for these settings."""
    return (
        Workload("chat", "chat, sequential: µs/call", "chat", 1, settings.sequential_calls),
        Workload(
            "chat-100",
            f"chat, {settings.concurrency} concurrent: µs/call",
            "chat",
            settings.concurrency,
            settings.concurrency * settings.concurrent_rounds,
        ),
        Workload("stream", "stream: µs/chunk", "stream", 1, settings.stream_calls, units=len(REPLY_PIECES)),
        Workload("embed", f"embed {settings.embed_texts} texts: µs/call", "embed", 1, settings.embed_calls),
    )


class Texts:
    """Distinct texts for every embed call, so no client (or cache) sees a text twice."""

    def __init__(self, per_call: int) -> None:
        self.per_call = per_call
        self.count = 0

    def next(self) -> list[str]:
        self.count += 1
        return [f"short text {self.count}-{n}" for n in range(self.per_call)]


async def _one(client: Client, job: str, texts: Texts) -> Any:
    if job == "chat":
        return await client.chat()
    if job == "stream":
        return await client.stream()
    return await client.embed(texts.next())


async def _issue(client: Client, workload: Workload, calls: int, texts: Texts) -> None:
    if workload.concurrency == 1:
        for _ in range(calls):
            await _one(client, workload.job, texts)
        return
    for _ in range(calls // workload.concurrency):
        await asyncio.gather(*[_one(client, workload.job, texts) for _ in range(workload.concurrency)])


@dataclass
class Result:
    """CPU seconds per unit, by workload then client; why a client has no figures."""

    settings: Settings
    pinned: bool = False
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def median(self, workload: str, client: str) -> float | None:
        values = self.samples.get(workload, {}).get(client)
        return statistics.median(values) if values else None

    def ratio(self, workload: str, client: str) -> float | None:
        value, base = self.median(workload, client), self.median(workload, BASELINE)
        return None if value is None or not base else value / base


async def _check(factory: Callable[[str], Client], base_url: str, settings: Settings) -> str:
    """Check the client reads the server's answers, and run its lazy imports once; its name, or Unavailable."""
    client = factory(base_url)
    try:
        for job in ("chat", "stream"):
            text = await _one(client, job, Texts(1))
            if text != REPLY_TEXT:  # a client measuring an error path would look fast and prove nothing
                raise RuntimeError(f"{client.name} {job} got {text!r}, not the server's reply")
        vectors = await client.embed(Texts(settings.embed_texts).next())
        if vectors.shape != (settings.embed_texts, EMBEDDING_DIMENSIONS):
            raise RuntimeError(f"{client.name} embed returned shape {vectors.shape}")
        if isinstance(client, LLMClient):
            await client.check()
        return client.name
    finally:
        await client.aclose()


async def _measure(factory: Callable[[str], Client], base_url: str, workload: Workload, texts: Texts) -> float:
    """CPU seconds per unit on a fresh client, warmed up first by untimed calls in the same workload."""
    # A fresh client each time: a pool's size drifts with history (idle connections expire while other clients
    # run), and the CPU per call with it.
    client = factory(base_url)
    try:
        await _issue(client, workload, max(workload.concurrency, MEASURE_WARMUP), texts)
        # Collect, then freeze what survives: one client's garbage is not swept on the next client's clock.
        gc.collect()
        gc.freeze()
        try:
            started = time.process_time()
            await _issue(client, workload, workload.calls, texts)
            return (time.process_time() - started) / workload.calls / workload.units
        finally:
            gc.unfreeze()
    finally:
        await client.aclose()


async def _run(base_url: str, settings: Settings) -> Result:
    result = Result(settings)
    factories: list[Callable[[str], Client]] = []
    names: dict[Callable[[str], Client], str] = {}
    for factory in CLIENTS:
        try:
            names[factory] = await _check(factory, base_url, settings)
            factories.append(factory)
        except Unavailable as exc:
            result.missing[getattr(factory, "name", str(factory))] = str(exc)
    texts = Texts(settings.embed_texts)
    for workload in workloads(settings):
        by_client: dict[str, list[float]] = {names[factory]: [] for factory in factories}
        result.samples[workload.name] = by_client
        for factory in factories:  # one untimed pass each: caches, lazy imports, JIT-free warm paths
            client = factory(base_url)
            try:
                await _issue(client, workload, max(workload.concurrency, settings.warmup_calls), texts)
            finally:
                await client.aclose()
        for repeat in range(settings.repeats):
            shift = repeat % len(factories)  # rotate the order so drift is spread over every client
            for factory in factories[shift:] + factories[:shift]:
                value = await _measure(factory, base_url, workload, texts)
                by_client[names[factory]].append(value)
                print(f"  {workload.name:<9} {names[factory]:<27} {repeat + 1}: {value * 1e6:8.1f} µs", flush=True)
    return result


def run(settings: Settings) -> Result:
    """Start the server (pinned away from this process), measure every client in every workload, stop it."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # third-party clients' own warnings
    split = cpu_split()
    if split is not None:
        pin(split[0])
    with bench_server(split[1] if split else None) as base_url:
        result = asyncio.run(_run(base_url, settings))
    result.pinned = split is not None
    return result


def verdicts(result: Result) -> dict[str, tuple[float | None, bool]]:
    """Per workload: llmclient's ratio to raw aiohttp, and whether it meets the target."""
    out = {}
    for workload in workloads(result.settings):
        ratio = result.ratio(workload.name, TARGET_CLIENT)
        out[workload.name] = (ratio, ratio is not None and ratio <= TARGET)
    return out


def markdown(result: Result, command: str) -> str:
    """The overhead section: CPU per unit and the ratio to raw aiohttp, every client, every workload."""
    settings = result.settings
    loads = workloads(settings)
    rows = [
        "| client | " + " | ".join(workload.title for workload in loads) + " |",
        "|---" + "|---:" * len(loads) + "|",
    ]
    for client in result.samples[loads[0].name]:
        cells = []
        for workload in loads:
            values = [value * 1e6 for value in result.samples[workload.name][client]]
            ratio = result.ratio(workload.name, client)
            spread = f" ({min(values):.0f}–{max(values):.0f})" if len(values) > 1 else ""
            cells.append(f"{statistics.median(values):.0f}{spread} · {ratio:.2f}×")
        name = f"**{client}**" if client == TARGET_CLIENT else client
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    skipped = [f"- {client}: skipped, {why}." for client, why in result.missing.items()]
    judged = verdicts(result)
    targets = ", ".join(
        f"{name} {ratio:.2f}× ({'met' if met else 'MISSED'})" if ratio is not None else f"{name} (not measured)"
        for name, (ratio, met) in judged.items()
    )
    pinning = (
        "Client and server were pinned to separate cores."
        if result.pinned
        else "Client and server shared the cores (no CPU pinning)."
    )
    return "\n".join(
        [
            "## Client CPU per call: chat, stream, embed",
            "",
            environment_line(),
            "",
            f"Command: `{command}`",
            "",
            "Client CPU time (`time.process_time` of the benchmark process; the server's work is not counted) "
            "against `bench/server.py`, a loopback OpenAI-compatible server in its own process answering with "
            "fixed bodies over HTTP/1.1 keep-alive. Workloads: chat sequentially "
            f"({settings.sequential_calls} calls) and {settings.concurrency} at a time "
            f"({settings.concurrent_rounds} × gather of {settings.concurrency}); streams of "
            f"{len(REPLY_PIECES)} content chunks ({settings.stream_calls} streams; CPU per stream divided by "
            f"{len(REPLY_PIECES)}); embeddings of {settings.embed_texts} distinct short texts per call "
            f"({settings.embed_calls} calls, {EMBEDDING_DIMENSIONS}-dimension float vectors). Every client is "
            "first checked (it must return the server's text and vectors; llmclient must read, not estimate, "
            "the usage) and warmed up once per workload; then measured "
            f"{settings.repeats} times per workload, clients interleaved in rotating order, each measurement "
            f"on a fresh client warmed by {MEASURE_WARMUP} untimed calls, with the heap collected and frozen "
            "first. Cells: median (min–max) · ratio of medians to raw aiohttp. " + pinning,
            "",
            "Clients: **raw aiohttp** `ClientSession.post(json=...)` + `json()` (streams: `async for line in "
            "response.content` + `json.loads` per event), the limit; **raw httpx** `AsyncClient.post` + `.json()` "
            "(streams: `aiter_lines`); **httpx + httpx-aiohttp**: the same over `httpx_aiohttp.AiohttpTransport`; "
            "**llmclient** `Client.chat` / `stream` / `embed` with the default configuration (native HTTP/1.1 "
            "backend, usage read, cost priced, ledger recorded, embedding cache on); **llmclient (aiohttp "
            "backend)** and **(httpx backend)** the same with `http={'backend': 'aiohttp'}` (what a proxied client "
            "uses) and `{'backend': 'httpx'}`; **openai SDK** `AsyncOpenAI` with its defaults and with "
            "`DefaultAioHttpClient()`; **litellm** `acompletion` / `aembedding` where installed.",
            "",
            *rows,
            "",
            *skipped,
            *([""] if skipped else []),
            f"Target llmclient ≤ {TARGET:.1f}× raw aiohttp: " + targets + ".",
        ]
    )
