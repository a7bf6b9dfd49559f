"""The transformers driver against plain transformers and sentence-transformers; results in BENCHMARKS.md.

    .venv/bin/python bench/bench_transformers.py              # CPU run (a few minutes); rewrites its section
    .venv/bin/python bench/bench_transformers.py --quick      # a smoke run that writes nothing
    python bench/gpu_transformers.py                          # the same on a CUDA machine (see that file)

Three measurements, each interleaved with its baseline and reported as medians:

* **single stream**: tokens/second of one greedy request through `Client.chat` against `model.generate` on the very
  same model object, prompt and settings (`min_new_tokens` = `max_new_tokens`, so both make exactly N tokens).
* **batching**: aggregate tokens/second of 8 concurrent requests (`asyncio.gather`) against the same 8 sent one
  after another, all through the Client, N tokens each.
* **embeddings**: texts/second of `Client.embed` (embedding cache off) against
  `SentenceTransformer.encode(batch_size=32)` on the same folder and corpus.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from run import update_markdown

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "BENCHMARKS.md"
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Count from 1 to 5.",
    "Tell me a joke about computers in one sentence.",
    "Why is the sky blue?",
    "Name three fruits.",
    "Explain photosynthesis briefly.",
    "Hello",
]
SENTENCE = "the cat sat on a warm mat while rain fell softly over quiet hills and distant rivers ran to the sea"

try:
    import llmclient  # noqa: F401
except ImportError:  # a checkout without `pip install -e .` (e.g. a fresh GPU machine)
    sys.path.insert(0, str(ROOT / "src"))


@dataclass
class Comparison:
    """One measurement: llmclient's medians against the baseline's, and the target ratio."""

    name: str
    unit: str
    ours: list[float]
    baseline: list[float]
    baseline_name: str
    target: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.baseline)

    def row(self) -> str:
        mark = "✅" if self.ratio >= self.target else "❌ (MISSED)"
        return (
            f"| {self.name} | {statistics.median(self.ours):.1f} {self.unit} | {self.baseline_name}: "
            f"{statistics.median(self.baseline):.1f} {self.unit} | {self.ratio:.2f}× | ≥ {self.target:g}× {mark} |"
        )


def corpus(count: int) -> list[str]:
    """Distinct deterministic sentences of 4 to 60 words (the Client would embed a repeated text only once)."""
    words = SENTENCE.split(" ")
    return [
        f"Note {i}: " + " ".join(words[(i * 7 + j) % len(words)] for j in range(4 + (i * 13) % 57)) + "."
        for i in range(count)
    ]


async def interleaved(
    first: Callable[[], Awaitable[float]], second: Callable[[], Awaitable[float]], repeats: int
) -> tuple[list[float], list[float]]:
    """Alternate the two measurements (order swapped each round) so drifting load hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for index in range(repeats):
        if index % 2:
            b.append(await second())
            a.append(await first())
        else:
            a.append(await first())
            b.append(await second())
    return a, b


async def measure(
    device: str | None, tokens: int, repeats: int, texts: int, targets: tuple[float, float, float]
) -> list[Comparison]:
    """Run the three comparisons on `device` (None: the driver's own choice)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from llmclient import Client
    from llmclient.drivers.local.hf import TransformersDriver
    from llmclient.drivers.local.runtime import minilm_folder

    options: dict[str, Any] = {"device": device} if device else {}
    driver = TransformersDriver(**options)
    client = Client(providers={"transformers": driver}, embedding_cache=False)
    fixed = {"temperature": 0, "max_tokens": tokens, "extra_body": {"min_new_tokens": tokens}}
    await client.chat(PROMPTS[0], model="transformers/smollm2", **fixed)  # load and warm up
    entry = driver._model("smollm2")
    model, tokenizer = entry.lm, entry.tokenizer
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True)
    ids = torch.tensor([rendered["input_ids"] if hasattr(rendered, "keys") else rendered], device=model.device)

    def synchronize() -> None:
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    async def raw_single() -> float:
        synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False
            )
        synchronize()
        assert out.shape[1] - ids.shape[1] == tokens
        return tokens / (time.perf_counter() - started)

    async def ours_single() -> float:
        started = time.perf_counter()
        reply = await client.chat(PROMPTS[0], model="transformers/smollm2", **fixed)
        assert reply.usage.output_tokens == tokens
        return tokens / (time.perf_counter() - started)

    async def sequential() -> float:
        started = time.perf_counter()
        for prompt in PROMPTS:
            await client.chat(prompt, model="transformers/smollm2", **fixed)
        return len(PROMPTS) * tokens / (time.perf_counter() - started)

    async def concurrent() -> float:
        started = time.perf_counter()
        replies = await asyncio.gather(*(client.chat(p, model="transformers/smollm2", **fixed) for p in PROMPTS))
        assert sum(reply.usage.output_tokens for reply in replies) == len(PROMPTS) * tokens
        return len(PROMPTS) * tokens / (time.perf_counter() - started)

    await raw_single()  # warm the raw path too
    single = await interleaved(ours_single, raw_single, repeats)
    batched = await interleaved(concurrent, sequential, max(2, repeats // 2))
    largest = driver.batch_stats("smollm2").largest
    assert largest == len(PROMPTS), f"the concurrent requests were not batched together (largest batch {largest})"

    sentences = corpus(texts)
    assert len(set(sentences)) == len(sentences)
    reference = SentenceTransformer(str(minilm_folder()), device=str(model.device), local_files_only=True)

    async def st_encode() -> float:
        started = time.perf_counter()
        reference.encode(sentences, batch_size=32, convert_to_numpy=True)
        return len(sentences) / (time.perf_counter() - started)

    async def ours_embed() -> float:
        started = time.perf_counter()
        result = await client.embed(sentences, model="transformers/all-MiniLM-L6-v2")
        assert result.vectors.shape == (len(sentences), 384)
        return len(sentences) / (time.perf_counter() - started)

    await ours_embed()
    encoder = driver._model("all-MiniLM-L6-v2").encoder
    assert encoder is not None
    reference.to(encoder.model.dtype)  # the same precision on both sides (bf16 or fp16 on a GPU)
    await st_encode()
    embedded = await interleaved(ours_embed, st_encode, repeats)
    await client.aclose()
    single_target, batch_target, embed_target = targets
    return [
        Comparison(f"one greedy stream, {tokens} tokens", "tok/s", *single, "`model.generate`", single_target),
        Comparison(f"8 concurrent × {tokens} tokens", "tok/s", *batched, "8 sequential", batch_target),
        Comparison(f"embed {texts} texts", "texts/s", *embedded, "sentence-transformers", embed_target),
    ]


def environment(device: str) -> str:
    import torch

    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("torch", "transformers", "sentence-transformers")
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    where = (
        torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{os.cpu_count()} CPUs ({platform.machine()})"
    )
    return (
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · {where}, {platform.system()} · "
        f"Python {platform.python_version()} · {versions} · torch threads {torch.get_num_threads()} · "
        f"load average {load} at the start"
    )


def section(title: str, command: str, env: str, results: list[Comparison], notes: str) -> str:
    lines = [
        f"## {title}",
        "",
        env,
        "",
        f"Command: `{command}`",
        "",
        "| measurement | llmclient (median) | baseline (median) | ratio | target |",
        "|---|---:|---:|---:|---|",
        *(result.row() for result in results),
        "",
        notes,
    ]
    return "\n".join(lines)


CPU_NOTES = (
    "Single stream and embeddings compare the same work on the same model object (same weights, device and "
    "threads); llmclient's side includes the Client (prompt counting, ledger), the batching window (10 ms), the "
    "worker-thread hop and incremental detokenisation. The machine is shared with other work, so single runs vary; "
    "the medians of interleaved runs are compared, with one torch thread (two oversubscribe these two busy cores "
    "and slow both sides several-fold). GPU results: pending a CUDA machine "
    "(`python bench/gpu_transformers.py --write` fills the `transformers-gpu` section; targets there ≥ 0.95× raw "
    "and batching ≥ 5×)."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=48, help="new tokens per request")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--texts", type=int, default=512, help="embedding corpus size")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 avoids oversubscription)")
    parser.add_argument("--quick", action="store_true", help="a smoke run; writes nothing")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        args.tokens, args.repeats, args.texts = 8, 2, 64
    env = environment("cpu")
    started = time.perf_counter()
    results = asyncio.run(measure("cpu", args.tokens, args.repeats, args.texts, (0.95, 3.0, 0.95)))
    command = "python bench/bench_transformers.py" + (f" --threads {args.threads}" if args.threads != 1 else "")
    text = section(
        "transformers driver (CPU)",
        f".venv/bin/{command}",
        f"{env} · {time.perf_counter() - started:.0f} s",
        results,
        CPU_NOTES,
    )
    print(text)
    if not args.quick:
        update_markdown(OUTPUT, {"transformers": text})
    return 0


if __name__ == "__main__":
    sys.exit(main())
