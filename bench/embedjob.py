"""An embedding job at scale: 100,000 short texts through bench/server.py, llmclient against a plain aiohttp loop.

llmclient runs `Client.embed(texts)` with its defaults: batches cut to the driver's limits (2,048 inputs for an
OpenAI-compatible server), 4 requests in flight, the in-memory embedding cache on (empty at the start, so every text
is sent once and stored). The plain loop sends the same batches with the same concurrency through one
`aiohttp.ClientSession` and stacks the vectors. Throughput is texts per second of wall time; peak memory is the
highest `tracemalloc` figure during a separate run (numpy's buffers are traced too).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from clients import FREE, LLMCLIENT_MODEL
from harness import Settings, bench_server, cpu_split, environment_line, pin
from server import EMBEDDING_DIMENSIONS, MODEL

BATCH = 2048  # the OpenAI-compatible driver's batch size, which the plain loop copies
CONCURRENCY = 4  # Client.embed's default
TARGET = 0.9  # llmclient's throughput ≥ 0.9× the plain loop's


def job_texts(count: int) -> list[str]:
    """`count` distinct short texts."""
    return [f"document {n}: a short text about item {n % 97}" for n in range(count)]


async def plain_aiohttp(base_url: str, texts: list[str]) -> Any:
    """The same batches as llmclient, `CONCURRENCY` at a time, over one aiohttp session; vectors stacked in order."""
    import aiohttp
    import numpy as np

    batches = [texts[start : start + BATCH] for start in range(0, len(texts), BATCH)]
    results: list[Any] = [None] * len(batches)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def send(index: int) -> None:
            async with gate:
                body = {"model": MODEL, "input": batches[index], "encoding_format": "float"}
                async with session.post(f"{base_url}/embeddings", json=body) as response:
                    response.raise_for_status()
                    data = (await response.json())["data"]
            results[index] = np.array([item["embedding"] for item in data], dtype=np.float32)

        await asyncio.gather(*[send(index) for index in range(len(batches))])
    return np.concatenate(results)


async def llmclient_job(base_url: str, texts: list[str]) -> Any:
    """`Client.embed` with its defaults (batching, concurrency, the in-memory cache)."""
    from llmclient import Client

    async with Client(providers={"openai-compatible": {"base_url": base_url}}, prices=FREE) as client:
        return (await client.embed(texts, model=LLMCLIENT_MODEL)).vectors


JOBS: dict[str, Callable[[str, list[str]], Awaitable[Any]]] = {
    "plain aiohttp loop": plain_aiohttp,
    "llmclient `Client.embed`": llmclient_job,
}


@dataclass
class JobResult:
    """Texts per second (one entry per run) and peak traced memory in bytes, by job."""

    texts: int
    rate: dict[str, list[float]] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    def median_rate(self, job: str) -> float:
        return statistics.median(self.rate[job])

    def ratio(self) -> float:
        names = list(JOBS)
        return self.median_rate(names[1]) / self.median_rate(names[0])


async def _run(base_url: str, settings: Settings) -> JobResult:
    texts = job_texts(settings.job_texts)
    result = JobResult(len(texts), {name: [] for name in JOBS})
    for name, job in JOBS.items():  # check and warm: right shape, every lazy import done
        vectors = await job(base_url, texts[:BATCH])
        if vectors.shape != (BATCH, EMBEDDING_DIMENSIONS):
            raise RuntimeError(f"{name} returned shape {vectors.shape}")
    for repeat in range(settings.job_repeats):
        for name, job in list(JOBS.items()) if repeat % 2 == 0 else list(JOBS.items())[::-1]:
            gc.collect()
            started = time.perf_counter()
            vectors = await job(base_url, texts)
            rate = len(texts) / (time.perf_counter() - started)
            if vectors.shape != (len(texts), EMBEDDING_DIMENSIONS):
                raise RuntimeError(f"{name} returned shape {vectors.shape}")
            result.rate[name].append(rate)
            print(f"  embed job {name:<26} {repeat + 1}: {rate:10.0f} texts/s", flush=True)
            del vectors
    for name, job in JOBS.items():
        gc.collect()
        tracemalloc.start()
        vectors = await job(base_url, texts)
        result.peak[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del vectors
        print(f"  embed job {name:<26} peak {result.peak[name] / 2**20:.1f} MiB", flush=True)
    return result


def run(settings: Settings) -> JobResult:
    """Start the server on its own core and run both jobs, interleaved."""
    split = cpu_split()
    if split is not None:
        pin(split[0])
    with bench_server(split[1] if split else None) as base_url:
        return asyncio.run(_run(base_url, settings))


def markdown(result: JobResult, command: str, settings: Settings) -> str:
    """The embedding-job section."""
    rows = ["| job | texts/s (median, min–max) | vs plain loop | peak traced memory |", "|---|---:|---:|---:|"]
    base = result.median_rate(next(iter(JOBS)))
    for name in JOBS:
        rates = result.rate[name]
        rows.append(
            f"| {name} | {statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | "
            f"{statistics.median(rates) / base:.2f}× | {result.peak[name] / 2**20:.1f} MiB |"
        )
    ratio = result.ratio()
    output = result.texts * EMBEDDING_DIMENSIONS * 4 / 2**20
    return "\n".join(
        [
            "## Embedding job: 100,000 short texts",
            "",
            environment_line(),
            "",
            f"Command: `{command}`",
            "",
            f"{result.texts:,} distinct short texts embedded through `bench/server.py` ({EMBEDDING_DIMENSIONS}-"
            f"dimension float vectors; the result matrix is {output:.1f} MiB). "
            + __doc__.split("\n\n", 1)[1].strip()
            + f" {settings.job_repeats} timed runs each, alternating order; client and server on separate cores.",
            "",
            *rows,
            "",
            f"Target llmclient ≥ {TARGET:.1f}× the plain loop's throughput: {ratio:.2f}× "
            f"({'met' if ratio >= TARGET else 'MISSED'}). What llmclient does beyond the loop, per text: a SHA-256 "
            "cache key, a lookup in the embedding cache and, for the last 10,000 (the memory cache's default size), "
            "a stored copy; its peak memory adds those keys and the cached vectors (that is what lets a repeated "
            "text go unsent and unbilled). `Client(embedding_cache=False)` skips all of it.",
        ]
    )
