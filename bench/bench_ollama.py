"""Client CPU time per chat call against a loopback Ollama-protocol server: llmclient vs the official `ollama` client.

The server (this file with `--serve`) is a minimal HTTP/1.1 keep-alive server on raw asyncio, in its own process so
that only the client's CPU is measured. It answers `POST /api/show` and `POST /api/chat` (plain or NDJSON-streamed)
with fixed bodies in the shapes of Ollama's API docs, each encoded once at start-up.

    .venv/bin/python bench/bench_ollama.py            # measure, print, rewrite BENCHMARKS.md's ollama section
    .venv/bin/python bench/bench_ollama.py --quick    # a smoke run that writes nothing
    .venv/bin/python bench/bench_ollama.py --profile  # cProfile of llmclient's sequential chat path

Clients: **llmclient** `Client.chat("hi", model="ollama/bench")` with the driver's defaults (context guard on:
`/api/show` once per client, then a counted prompt and a sized `num_ctx` every call) and **ollama**
`AsyncClient(host=...).chat(model="bench", messages=[...])`. Both run on httpx with its default pool.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import gc
import importlib.metadata
import io
import json
import os
import platform
import pstats
import select
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from run import update_markdown

HOST = "127.0.0.1"  # loopback only: the server has no auth
MODEL = "bench"
PROMPT = "hi"
REPLY_TEXT = "Hello! How can I help you today?"
TARGET = 1.0
OUTPUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
SECTION = "ollama"


# -- the server ----------------------------------------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _response(body: bytes, content_type: str = "application/json; charset=utf-8") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


METRICS = {
    "done": True,
    "done_reason": "stop",
    "total_duration": 174560334,
    "load_duration": 101397084,
    "prompt_eval_count": 11,
    "prompt_eval_duration": 13074791,
    "eval_count": 9,
    "eval_duration": 52479709,
}
CREATED = "2025-10-17T23:14:07.414671Z"
CHAT = _response(
    _dumps({"model": MODEL, "created_at": CREATED, "message": {"role": "assistant", "content": REPLY_TEXT}, **METRICS})
)
PIECES = ("Hello", "!", " How", " can", " I", " help", " you", " today", "?")
STREAM = _response(
    b"".join(
        _dumps(
            {"model": MODEL, "created_at": CREATED, "message": {"role": "assistant", "content": piece}, "done": False}
        )
        + b"\n"
        for piece in PIECES
    )
    + _dumps({"model": MODEL, "created_at": CREATED, "message": {"role": "assistant", "content": ""}, **METRICS})
    + b"\n",
    "application/x-ndjson",
)
SHOW = _response(
    _dumps(
        {
            "details": {"format": "gguf", "family": "qwen2", "parameter_size": "1.5B", "quantization_level": "Q4_0"},
            "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
            "capabilities": ["completion", "tools"],
        }
    )
)
NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n" + b'{"error":"not found"}'
)


class OllamaProtocol(asyncio.Protocol):
    """One keep-alive connection: requests with a content-length body, answered in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            length = next((int(line[15:]) for line in head if line.lower().startswith("content-length:")), 0)
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            path = head[0].split(" ")[1]
            if path == "/api/chat":
                self._transport.write(STREAM if b'"stream":true' in body else CHAT)
            else:
                self._transport.write(SHOW if path == "/api/show" else NOT_FOUND)


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:`port` until SIGTERM or SIGINT, printing "ready" once listening."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(OllamaProtocol, HOST, port, backlog=1024, reuse_address=True)
    async with server:
        print("ready", flush=True)
        await stop.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _pin(cpus: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, cpus)


@contextlib.contextmanager
def server_process(cpus: set[int] | None) -> Iterator[str]:
    """Run the server in its own process (pinned to `cpus`) and yield its URL."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: _pin(cpus)) if cpus else None,
    )
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], 15.0)
        if not ready or process.stdout.readline().strip() != "ready":
            raise RuntimeError("the Ollama-protocol bench server did not start")
        yield f"http://{HOST}:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


# -- the clients ---------------------------------------------------------------------------------------------------


class Caller(Protocol):
    name: str

    async def call(self) -> str: ...

    async def aclose(self) -> None: ...


class LLMClientCaller:
    name = "llmclient"

    def __init__(self, host: str) -> None:
        from llmclient import Client

        self.client = Client(providers={"ollama": {"host": host}})

    async def call(self) -> str:
        return (await self.client.chat(PROMPT, model=f"ollama/{MODEL}")).text

    async def aclose(self) -> None:
        await self.client.aclose()


class OllamaCaller:
    name = "ollama"

    def __init__(self, host: str) -> None:
        import ollama

        self.client = ollama.AsyncClient(host=host)

    async def call(self) -> str:
        response = await self.client.chat(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
        return response.message.content or ""

    async def aclose(self) -> None:
        await self.client.close()


CALLERS: dict[str, Callable[[str], Caller]] = {"llmclient": LLMClientCaller, "ollama": OllamaCaller}


@dataclass(frozen=True)
class Settings:
    sequential_calls: int = 2000
    concurrency: int = 100
    concurrent_rounds: int = 20
    repeats: int = 5
    warmup_calls: int = 300


FULL = Settings()
QUICK = Settings(sequential_calls=200, concurrent_rounds=2, repeats=2, warmup_calls=50)


async def _issue(caller: Caller, calls: int, concurrency: int) -> None:
    if concurrency == 1:
        for _ in range(calls):
            await caller.call()
        return
    for _ in range(calls // concurrency):
        texts = await asyncio.gather(*[caller.call() for _ in range(concurrency)])
        assert texts[0] == REPLY_TEXT


async def _measure(factory: Callable[[str], Caller], host: str, calls: int, concurrency: int) -> float:
    """CPU seconds per call on a fresh client, after an untimed warm-up batch."""
    caller = factory(host)
    try:
        if await caller.call() != REPLY_TEXT:  # an error path would look fast and prove nothing
            raise RuntimeError(f"{caller.name} did not read the server's reply")
        await _issue(caller, max(concurrency, 100), concurrency)
        gc.collect()
        gc.freeze()  # what survives is not swept on the next client's clock
        try:
            started = time.process_time()
            await _issue(caller, calls, concurrency)
            return (time.process_time() - started) / calls
        finally:
            gc.unfreeze()
    finally:
        await caller.aclose()


async def _run(host: str, settings: Settings) -> dict[str, dict[str, list[float]]]:
    modes = {"sequential": (settings.sequential_calls, 1)}
    modes["concurrent"] = (settings.concurrency * settings.concurrent_rounds, settings.concurrency)
    for factory in CALLERS.values():  # warm every import and cache once
        await _measure(factory, host, settings.warmup_calls, 1)
    results: dict[str, dict[str, list[float]]] = {mode: {name: [] for name in CALLERS} for mode in modes}
    for mode, (calls, concurrency) in modes.items():
        for repeat in range(settings.repeats):
            names = list(CALLERS)
            for name in names[repeat % 2 :] + names[: repeat % 2]:  # alternate who goes first
                cpu = await _measure(CALLERS[name], host, calls, concurrency)
                results[mode][name].append(cpu)
                print(f"  {mode:<10} {name:<10} repeat {repeat + 1}: {cpu * 1e6:7.1f} µs CPU/call", flush=True)
    return results


def _split() -> tuple[set[int], set[int]] | None:
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    return (set(allowed[:-1]), {allowed[-1]}) if len(allowed) >= 2 else None


def markdown(results: dict[str, dict[str, list[float]]], settings: Settings, command: str, pinned: bool) -> str:
    """The BENCHMARKS.md section: a table of median CPU µs per call and the ratio llmclient / ollama."""
    rows = [
        "| client | sequential CPU µs/call | vs ollama | concurrent CPU µs/call | vs ollama |",
        "|---|---:|---:|---:|---:|",
    ]
    ratios = {
        mode: statistics.median(by["llmclient"]) / statistics.median(by["ollama"]) for mode, by in results.items()
    }
    for name in ("llmclient", "ollama"):
        cells = []
        for mode, by in results.items():
            values = [value * 1e6 for value in by[name]]
            ratio = ratios[mode] if name == "llmclient" else 1.0
            cells += [f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})", f"{ratio:.2f}×"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    verdict = ", ".join(
        f"{mode} {ratio:.2f}× ({'met' if ratio <= TARGET else 'MISSED'})" for mode, ratio in ratios.items()
    )
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("llmclient", "ollama", "httpx"))
    return "\n".join(
        [
            "## Ollama driver: client overhead per chat call",
            "",
            f"{when} · {os.cpu_count()} cores, {platform.system()} {platform.machine()} · "
            f"Python {platform.python_version()} · {versions}",
            "",
            f"Command: `{command}`",
            "",
            "Client CPU time (`time.process_time` of the benchmark process) per chat call against the loopback "
            "Ollama-protocol server in `bench/bench_ollama.py` (its own process"
            + (", pinned to another core" if pinned else "")
            + "), which answers `/api/chat` with a fixed ~330-byte reply. Modes: "
            f"sequential ({settings.sequential_calls} calls); {settings.concurrency} concurrent "
            f"({settings.concurrent_rounds} × gather of {settings.concurrency}). Each measurement uses a fresh client, "
            f"warmed by 100 untimed calls, with the heap collected and frozen first; {settings.repeats} repeats per "
            "mode, clients alternating; median (min–max). llmclient runs with its defaults: the context guard counts "
            "the prompt, sizes `num_ctx` and asks `/api/show` once per client; usage, cost and the ledger record "
            "every call, and a 10 s connect timeout is armed. The official client only sends and parses.",
            "",
            *rows,
            "",
            f"Target llmclient ≤ {TARGET:.1f}× the official client: {verdict}.",
        ]
    )


async def _profiled(host: str, calls: int, profile: cProfile.Profile) -> None:
    caller = LLMClientCaller(host)
    try:
        await _issue(caller, 300, 1)
        profile.enable()
        await _issue(caller, calls, 1)
        profile.disable()
    finally:
        await caller.aclose()


def main(argv: list[str] | None = None) -> int:
    """Serve, profile, or measure and write the section."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", action="store_true", help="run the server only")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run; writes nothing")
    parser.add_argument("--profile", action="store_true", help="cProfile llmclient's chat path")
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.port))
        return 0
    import warnings

    warnings.simplefilter("error")  # a warning in the measured path (say, a truncation warning) is a bench bug
    split = _split()
    if split is not None:
        _pin(split[0])
    settings = QUICK if args.quick else FULL
    with server_process(split[1] if split else None) as host:
        if args.profile:
            profile = cProfile.Profile()
            asyncio.run(_profiled(host, settings.sequential_calls, profile))
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
            print(out.getvalue())
            return 0
        results = asyncio.run(_run(host, settings))
    command = " ".join([".venv/bin/python bench/bench_ollama.py", shlex.join(argv)]).rstrip()
    section = markdown(results, settings, command, split is not None)
    print(section)
    if not args.quick:
        update_markdown(OUTPUT, {SECTION: section})
        print(f"updated {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
