"""An embedding job at scale: 100,000 short texts through bench/server.py, llmclient against a plain aiohttp loop.

llmclient runs `Client.embed(texts)` with its defaults: batches cut to the driver's limits (2,048 inputs for an
OpenAI-compatible server), 4 requests in flight, the in-memory embedding cache on (empty at the start, so every text
is sent once and stored). The plain loop sends the same batches with the same concurrency through one
`aiohttp.ClientSession` and stacks the vectors. Throughput is texts per second of wall time; peak memory is the
highest `tracemalloc` figure during the job (numpy's buffers are traced too). Every measurement runs in a fresh
worker process (`python bench/embedjob.py --worker ...`), so that llmclient from another checkout
(`bench/run.py --baseline REV`) can be measured in the same run, interleaved with this one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients import FREE, LLMCLIENT_MODEL
from harness import ROOT, Settings, bench_server, cpu_split, environment_line, pin
from server import EMBEDDING_DIMENSIONS, MODEL

BATCH = 2048  # the OpenAI-compatible driver's batch size, which the plain loop copies
CONCURRENCY = 4  # Client.embed's default
TARGET = 0.9  # llmclient's throughput ≥ 0.9× the plain loop's
MEMORY_TARGET = 1.5  # llmclient's peak memory < 1.5× the plain loop's
PLAIN = "plain aiohttp loop"
LLMCLIENT = "llmclient `Client.embed`"


@dataclass(frozen=True)
class Job:
    """One row of the table: which job a worker runs, and with which llmclient source (None: none needed)."""

    name: str
    kind: str  # "plain" or "llmclient"
    source: Path | None


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


# -- the worker: one measurement in a fresh process ---------------------------------------------------------------


async def _measure(kind: str, base_url: str, count: int) -> dict[str, float]:
    job = plain_aiohttp if kind == "plain" else llmclient_job
    texts = job_texts(count)
    vectors = await job(base_url, texts[:BATCH])  # check and warm: right shape, every lazy import done
    if vectors.shape != (BATCH, EMBEDDING_DIMENSIONS):
        raise RuntimeError(f"{kind} returned shape {vectors.shape}")
    del vectors
    gc.collect()
    started = time.perf_counter()
    vectors = await job(base_url, texts)
    rate = len(texts) / (time.perf_counter() - started)
    if vectors.shape != (len(texts), EMBEDDING_DIMENSIONS):
        raise RuntimeError(f"{kind} returned shape {vectors.shape}")
    del vectors
    gc.collect()
    tracemalloc.start()
    await job(base_url, texts)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"rate": rate, "peak": peak}


def _worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=("plain", "llmclient"), required=True)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--url", required=True)
    parser.add_argument("--texts", type=int, required=True)
    args = parser.parse_args(argv)
    if args.source is not None:  # this checkout's llmclient, or the baseline's
        sys.path.insert(0, str(args.source))
    print(json.dumps(asyncio.run(_measure(args.worker, args.url, args.texts))), flush=True)


def _run_worker(job: Job, base_url: str, count: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", job.kind, "--url", base_url, "--texts", str(count)]
    if job.source is not None:
        command += ["--source", str(job.source)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{job.name} failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the run ---------------------------------------------------------------------------------------------------------


@dataclass
class JobResult:
    """Texts per second and peak traced memory in bytes (one entry per run), by job."""

    texts: int
    jobs: list[Job]
    rate: dict[str, list[float]] = field(default_factory=dict)
    peak: dict[str, list[float]] = field(default_factory=dict)

    def median_rate(self, job: str) -> float:
        return statistics.median(self.rate[job])

    def median_peak(self, job: str) -> float:
        return statistics.median(self.peak[job])

    def ratio(self, job: str = LLMCLIENT) -> float:
        return self.median_rate(job) / self.median_rate(PLAIN)

    def memory_ratio(self, job: str = LLMCLIENT) -> float:
        return self.median_peak(job) / self.median_peak(PLAIN)


def run(settings: Settings, baseline: tuple[str, Path] | None = None) -> JobResult:
    """Start the server on its own core and measure every job in fresh workers, in rotating order."""
    jobs = [Job(PLAIN, "plain", None), Job(LLMCLIENT, "llmclient", ROOT / "src")]
    if baseline is not None:
        jobs.append(Job(f"llmclient `Client.embed` at `{baseline[0]}` (before)", "llmclient", baseline[1]))
    result = JobResult(settings.job_texts, jobs, {job.name: [] for job in jobs}, {job.name: [] for job in jobs})
    split = cpu_split()
    if split is not None:
        pin(split[0])  # the workers inherit the client cores
    with bench_server(split[1] if split else None) as base_url:
        for repeat in range(settings.job_repeats):
            shift = repeat % len(jobs)
            for job in jobs[shift:] + jobs[:shift]:
                measured = _run_worker(job, base_url, settings.job_texts)
                result.rate[job.name].append(measured["rate"])
                result.peak[job.name].append(measured["peak"])
                print(
                    f"  embed job {job.name:<40} {repeat + 1}: {measured['rate']:10.0f} texts/s, "
                    f"peak {measured['peak'] / 2**20:.1f} MiB",
                    flush=True,
                )
    return result


def markdown(result: JobResult, command: str, settings: Settings) -> str:
    """The embedding-job section."""
    rows = [
        "| job | texts/s (median, min–max) | vs plain loop | peak traced memory (median) | vs plain loop |",
        "|---|---:|---:|---:|---:|",
    ]
    for job in result.jobs:
        rates = result.rate[job.name]
        rows.append(
            f"| {job.name} | {statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | "
            f"{result.ratio(job.name):.2f}× | {result.median_peak(job.name) / 2**20:.1f} MiB | "
            f"{result.memory_ratio(job.name):.2f}× |"
        )
    ratio, memory = result.ratio(), result.memory_ratio()
    output = result.texts * EMBEDDING_DIMENSIONS * 4 / 2**20
    verdict = (
        f"Targets: llmclient ≥ {TARGET:.1f}× the plain loop's throughput: {ratio:.2f}× "
        f"({'met' if ratio >= TARGET else 'MISSED'}); peak memory under {MEMORY_TARGET:.1f}× the plain loop's: "
        f"{memory:.2f}× ({'met' if memory < MEMORY_TARGET else 'MISSED'})."
    )
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
            + " ".join(__doc__.split("\n\n", 1)[1].split())
            + f" {settings.job_repeats} runs of each job, in rotating order; client and server on separate cores.",
            "",
            *rows,
            "",
            verdict,
            "What llmclient does beyond the loop: one dictionary of the distinct texts (repeats are sent once), "
            "usage and cost for the one ledger record, and for the embedding cache a SHA-256 key per text the cache "
            "reads: none while the in-memory cache is empty, and only the last 10,000 (its size) when storing. The "
            "vectors go straight into the result matrix as batches arrive.",
        ]
    )


if __name__ == "__main__":
    _worker(sys.argv[1:])
