"""Similarity benchmarks: llmclient.vectors.similarity against plain numpy and scikit-learn; results in BENCHMARKS.md.

* `top_k`: the 10 best rows of a 1,000,000 × 384 float32 corpus for one query, by dot product, against plain numpy
  (`corpus @ q` + `argpartition` + sorting the 10), with the peak memory each allocates (tracemalloc, which numpy
  reports its arrays to) for several chunk sizes. Target: ≤ 1.2× numpy's time, memory bounded by the chunk.
  The cosine variant (row norms computed on the fly) is shown for information.
* `pairwise`: cosine similarity of 2,000 × 384 against 2,000 × 384 float32 against scikit-learn's
  `cosine_similarity`. Target: ≤ 1.2×.

    .venv/bin/python bench/bench_similarity.py             # full run (~1 min); rewrites its BENCHMARKS.md section
    .venv/bin/python bench/bench_similarity.py --quick     # a smaller smoke run; prints only
    .venv/bin/python bench/bench_similarity.py --no-write  # full run, prints only
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import os
import platform
import shlex
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics.pairwise import cosine_similarity

from llmclient.vectors import similarity
from llmclient.vectors.similarity import DEFAULT_CHUNK_BYTES, EINSUM_FOR_ONE_QUERY, SCRATCH_BYTES_PER_ROW, cosine, top_k
from run import update_markdown

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "BENCHMARKS.md"
SECTION = "similarity"
TARGET = 1.20
K = 10


def once(function: Callable[[], Any]) -> float:
    """Wall time of one call, with garbage collection off."""
    gc.disable()
    try:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start
    finally:
        gc.enable()


def interleaved(candidates: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median and fastest time of each candidate, run in alternation so drift (other load) hits all alike."""
    for function in candidates.values():
        function()  # warm-up: page in the data, load BLAS kernels
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, function in candidates.items():
            samples[name].append(once(function))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return medians, {name: min(values) for name, values in samples.items()}


def table(
    rows: list[tuple[str, str, str, str]], medians: dict[str, float], fastest: dict[str, float], versus: str
) -> list[str]:
    """Markdown rows: (label, key, baseline key, target text) → median, fastest and both ratios."""
    lines = [
        f"| | median | fastest | vs {versus} (median) | vs {versus} (fastest) | target (on the median) |",
        "|---|---|---|---|---|---|",
    ]
    for label, key, base, target in rows:
        lines.append(
            f"| {label} | {medians[key] * 1e3:.1f} ms | {fastest[key] * 1e3:.1f} ms | "
            f"{medians[key] / medians[base]:.2f}× | {fastest[key] / fastest[base]:.2f}× | {target} |"
        )
    return lines


def verdict(ratio: float) -> str:
    return f"≤ {TARGET:.1f}× {'✅' if ratio <= TARGET else '❌'}"


def peak_bytes(function: Callable[[], Any]) -> int:
    """The most memory `function` had allocated at once (numpy arrays included)."""
    gc.collect()
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def other_kernel(function: Callable[[], Any]) -> Any:
    """Run `function` with the one-query kernel this machine did not choose (einsum ↔ BLAS gemv)."""
    similarity.EINSUM_FOR_ONE_QUERY = not EINSUM_FOR_ONE_QUERY
    try:
        return function()
    finally:
        similarity.EINSUM_FOR_ONE_QUERY = EINSUM_FOR_ONE_QUERY


def numpy_top_k(corpus: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: one matrix–vector product, argpartition, then sort the k winners."""
    scores = corpus @ query
    best = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
    best = best[np.argsort(-scores[best], kind="stable")]
    return best, scores[best]


def numpy_cosine_top_k(corpus: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine the plain way: dot products divided by row norms computed now."""
    scores = (corpus @ (query / np.linalg.norm(query))) / np.sqrt(np.einsum("ij,ij->i", corpus, corpus))
    best = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
    return best[np.argsort(-scores[best], kind="stable")], scores[best]


def mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def bench_top_k(rows: int, dimensions: int, repeats: int) -> tuple[list[str], bool]:
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((rows, dimensions), dtype=np.float32)
    query = rng.standard_normal(dimensions, dtype=np.float32)
    expected, _ = numpy_top_k(corpus, query, K)
    found = top_k(query, corpus, K, metric="dot")
    assert found.indices.tolist() == expected.tolist(), "llmclient and numpy disagree"
    cosine_expected, _ = numpy_cosine_top_k(corpus, query, K)
    assert top_k(query, corpus, K, metric="cosine").indices.tolist() == cosine_expected.tolist()

    medians, fastest = interleaved(
        {
            "numpy": lambda: numpy_top_k(corpus, query, K),
            "llmclient": lambda: top_k(query, corpus, K, metric="dot"),
            "other kernel": lambda: other_kernel(lambda: top_k(query, corpus, K, metric="dot")),
            "numpy cosine": lambda: numpy_cosine_top_k(corpus, query, K),
            "llmclient cosine": lambda: top_k(query, corpus, K, metric="cosine"),
        },
        repeats,
    )
    ratio = medians["llmclient"] / medians["numpy"]
    cosine_ratio = medians["llmclient cosine"] / medians["numpy cosine"]
    default_rows = max(1, DEFAULT_CHUNK_BYTES // SCRATCH_BYTES_PER_ROW)
    kernel, other = ("numpy.einsum", "BLAS gemv") if EINSUM_FOR_ONE_QUERY else ("BLAS gemv (`chunk @ q`)", "einsum")
    rows_of_table = [
        ("numpy `corpus @ q` + `argpartition`", "numpy", "numpy", ""),
        (f'`top_k(q, corpus, {K}, metric="dot")`', "llmclient", "numpy", verdict(ratio)),
        (f"the same with the other one-query kernel ({other})", "other kernel", "numpy", "(information)"),
        ("numpy cosine (row norms computed each time)", "numpy cosine", "numpy cosine", ""),
        ('`top_k(..., metric="cosine")`', "llmclient cosine", "numpy cosine", f"(information: {cosine_ratio:.2f}×)"),
    ]
    lines = [
        f"### top-k: {rows:,} × {dimensions} float32 corpus, one query, k={K}",
        "",
        f"{repeats} interleaved runs each. One-query kernel: {kernel} (chosen by CPU count).",
        "",
        *table(rows_of_table, medians, fastest, "numpy"),
        "",
        f"Peak memory allocated during one search (tracemalloc; the {mib(corpus.nbytes)} corpus itself excluded):",
        "",
        f"| | chunk (rows) | peak | bound: chunk × {SCRATCH_BYTES_PER_ROW} B + 64 KiB |",
        "|---|---|---|---|",
        f"| numpy | whole corpus | {mib(peak_bytes(lambda: numpy_top_k(corpus, query, K)))} | |",
    ]
    bounded = True
    for chunk in (4_096, 65_536, None):
        size = chunk or min(rows, default_rows)
        peak = peak_bytes(lambda chunk=chunk: top_k(query, corpus, K, metric="dot", chunk_size=chunk))
        bound = size * SCRATCH_BYTES_PER_ROW + 64 * 1024
        bounded = bounded and peak <= bound
        label = f"{chunk:,}" if chunk else f"default ({size:,}: {mib(DEFAULT_CHUNK_BYTES)} budget)"
        lines.append(f"| llmclient | {label} | {mib(peak)} | {mib(bound)} {'✅' if peak <= bound else '❌'} |")
    print(f"top_k: numpy {medians['numpy'] * 1e3:.1f} ms, llmclient {medians['llmclient'] * 1e3:.1f} ms ({ratio:.2f}×)")
    return lines, ratio <= TARGET and bounded


def bench_pairwise(rows: int, dimensions: int, repeats: int) -> tuple[list[str], bool]:
    rng = np.random.default_rng(1)
    left = rng.standard_normal((rows, dimensions), dtype=np.float32)
    right = rng.standard_normal((rows, dimensions), dtype=np.float32)
    ours = cosine(left, right)
    theirs = cosine_similarity(left, right)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    medians, fastest = interleaved(
        {"scikit-learn": lambda: cosine_similarity(left, right), "llmclient": lambda: cosine(left, right)},
        repeats,
    )
    ratio = medians["llmclient"] / medians["scikit-learn"]
    rows_of_table = [
        ("scikit-learn `cosine_similarity`", "scikit-learn", "scikit-learn", ""),
        ("`llmclient.vectors.similarity.cosine`", "llmclient", "scikit-learn", verdict(ratio)),
    ]
    lines = [
        f"### pairwise cosine: {rows:,} × {dimensions} against {rows:,} × {dimensions} float32",
        "",
        f"{repeats} interleaved runs each; results equal within 1e-5.",
        "",
        *table(rows_of_table, medians, fastest, "scikit-learn"),
    ]
    print(
        f"pairwise: scikit-learn {medians['scikit-learn'] * 1e3:.1f} ms, llmclient {medians['llmclient'] * 1e3:.1f} ms"
    )
    return lines, ratio <= TARGET


def environment() -> str:
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in ("numpy", "scipy", "scikit-learn"))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"Python {platform.python_version()}, {versions}; {os.cpu_count()} CPUs ({platform.machine()}), "
        f"{platform.system()}, load average {load} at the start"
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000-row corpus and fewer repeats; prints only")
    parser.add_argument("--no-write", action="store_true", help="print results only")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the markdown file to update")
    options = parser.parse_args(arguments)
    rows, repeats = (100_000, 3) if options.quick else (1_000_000, 9)
    started, where = time.perf_counter(), environment()
    top_lines, top_ok = bench_top_k(rows, 384, repeats)
    pair_lines, pair_ok = bench_pairwise(2_000, 384, 5 if options.quick else 15)
    command = ".venv/bin/python bench/bench_similarity.py" + (" " + shlex.join(arguments) if arguments else "")
    body = "\n".join(
        [
            "## Similarity",
            "",
            f"`{command}` ({where}; {time.perf_counter() - started:.0f} s). The machine is shared with other work: "
            "targets are judged on the medians; the fastest runs show each candidate with the least interference.",
            "",
            *top_lines,
            "",
            *pair_lines,
        ]
    )
    print(body)
    if not (options.quick or options.no_write):
        update_markdown(options.output, {SECTION: body})
        print(f"wrote the {SECTION} section of {options.output}")
    return 0 if top_ok and pair_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
