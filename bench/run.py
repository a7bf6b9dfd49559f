"""llmclient's benchmarks; `make bench` runs them all and rewrites their sections of BENCHMARKS.md.

* `overhead` (bench/overhead.py): client CPU time per call against bench/server.py, a loopback server in its own
  process, for llmclient and raw aiohttp, raw httpx, httpx over httpx-aiohttp, openai-python (both transports) and
  litellm where installed: chat sequentially and 100 at a time, stream chunks, embeddings.
* `import`: wall time of `import llmclient` (and `from llmclient import Client`) against `import httpx` in fresh
  interpreters, and a check that no heavy optional library is imported with llmclient.
* `embedjob` (bench/embedjob.py): 100,000 short texts through `Client.embed` against a plain aiohttp loop sending
  the same batches: texts/s and peak memory.

    .venv/bin/python bench/run.py                   # everything, writes BENCHMARKS.md
    .venv/bin/python bench/run.py --only import     # one benchmark
    .venv/bin/python bench/run.py --quick           # a smoke run: prints, writes nothing unless --output
    .venv/bin/python bench/run.py --profile         # cProfile of llmclient's chat path, top functions
    .venv/bin/python bench/run.py --only embedjob --baseline main   # this checkout against main's, interleaved
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import embedjob
import overhead
import prompt_length
from clients import LLMClient
from harness import FULL, QUICK, ROOT, Settings, bench_server, environment_line, exported_source

DEFAULT_OUTPUT = ROOT / "BENCHMARKS.md"
IMPORT_TARGET = 1.30
HEAVY_MODULES = ("torch", "transformers", "llama_cpp", "langchain_core")
# Not forbidden, but worth seeing: what a bare `import llmclient` pulls in, and which HTTP backend a driver loads.
NOTABLE_MODULES = ("pydantic", "aiohttp", "httpx", "numpy", "tiktoken", "openai")
BENCHMARKS = ("overhead", "import", "embedjob", "prompt")
MARKDOWN_HEADER = """# Benchmarks

Produced by `make bench` (`bench/run.py`, with `bench/server.py` as the loopback server). Each benchmark rewrites
only its own section, between its `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` markers.
"""


# -- import time ---------------------------------------------------------------------------------------------------

IMPORT_CASES = (
    ("import httpx", "import httpx"),
    ("import llmclient", "import llmclient"),
    ("from llmclient import Client", "from llmclient import Client"),
)
# Timed inside the fresh interpreter, so interpreter start-up (the same for every case) is left out.
# The checkout's own source first (python -I ignores PYTHONPATH), so a worktree measures itself, not the venv's install.
_SOURCE = f"import sys\nsys.path.insert(0, {str(ROOT / 'src')!r})\n"
_TIMED = _SOURCE + "import time\n_t = time.perf_counter()\n{statement}\nprint(time.perf_counter() - _t)"
_MODULES = (
    _SOURCE + "import json, sys\n{statement}\n"
    "print(json.dumps({{'heavy': [m for m in {heavy!r} if m in sys.modules], "
    "'notable': [m for m in {notable!r} if m in sys.modules]}}))"
)


def _python(code: str) -> str:
    # -I: no user site, no PYTHON* variables and no cwd on sys.path, so the caller's environment cannot skew it.
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return done.stdout.strip().splitlines()[-1]


@dataclass
class ImportResult:
    """Import wall times by case, and what `import llmclient` loaded."""

    runs: int
    times: dict[str, list[float]]
    loaded: dict[str, dict[str, list[str]]]

    def median(self, case: str) -> float:
        return statistics.median(self.times[case])

    def ratio(self, case: str) -> float:
        return self.median(case) / self.median(IMPORT_CASES[0][0])


def run_import(settings: Settings) -> ImportResult:
    """Time every import case in fresh interpreters, interleaved, and list the modules llmclient loads."""
    for _, statement in IMPORT_CASES:
        _python(_TIMED.format(statement=statement))  # warm the bytecode and OS file caches first
    times: dict[str, list[float]] = {name: [] for name, _ in IMPORT_CASES}
    for run in range(settings.import_runs):
        for name, statement in IMPORT_CASES:
            times[name].append(float(_python(_TIMED.format(statement=statement))))
        print(
            f"  import run {run + 1}/{settings.import_runs}: "
            + ", ".join(f"{name} {times[name][-1] * 1e3:.1f} ms" for name, _ in IMPORT_CASES),
            flush=True,
        )
    stages = {
        "import llmclient": "import llmclient",
        "Client(...).driver('openai-compatible')": (
            "from llmclient import Client\n"
            "Client(providers={'openai-compatible': {'base_url': 'http://127.0.0.1:9/v1'}}).driver('openai-compatible')"
        ),
    }
    loaded = {
        stage: json.loads(_python(_MODULES.format(statement=code, heavy=HEAVY_MODULES, notable=NOTABLE_MODULES)))
        for stage, code in stages.items()
    }
    return ImportResult(settings.import_runs, times, loaded)


def import_markdown(result: ImportResult, command: str) -> str:
    """The import section: median wall times, ratios to `import httpx`, and the heavy-module check."""
    rows = ["| statement | median ms | min–max ms | vs `import httpx` |", "|---|---:|---:|---:|"]
    for name, _ in IMPORT_CASES:
        values = [value * 1e3 for value in result.times[name]]
        rows.append(
            f"| `{name}` | {statistics.median(values):.1f} | {min(values):.1f}–{max(values):.1f} | "
            f"{result.ratio(name):.2f}× |"
        )
    verdicts = [
        f"`{name}` {result.ratio(name):.2f}× ({'met' if result.ratio(name) <= IMPORT_TARGET else 'MISSED'})"
        for name, _ in IMPORT_CASES[1:]
    ]
    module_rows = ["| after | heavy modules loaded | also loaded |", "|---|---|---|"]
    for stage, found in result.loaded.items():
        heavy = ", ".join(found["heavy"]) or "none"
        module_rows.append(f"| `{stage}` | {heavy} | {', '.join(found['notable']) or '—'} |")
    clean = all(not found["heavy"] for found in result.loaded.values())
    return "\n".join(
        [
            "## Import time",
            "",
            environment_line(),
            "",
            f"Command: `{command}`",
            "",
            f"Wall time of each statement in a fresh `python -I -c` interpreter, measured with `time.perf_counter` "
            f"inside it (interpreter start-up excluded), after one warm-up run each; {result.runs} runs per "
            "statement, interleaved.",
            "",
            *rows,
            "",
            f"Target ≤ {IMPORT_TARGET:.2f}× `import httpx`: " + ", ".join(verdicts) + ".",
            "",
            f"Heavy optional libraries ({', '.join(HEAVY_MODULES)}) must stay out of `sys.modules`: "
            + ("none was loaded." if clean else "**some were loaded**."),
            "",
            *module_rows,
        ]
    )


# -- profile ---------------------------------------------------------------------------------------------------------


async def _profiled(base_url: str, calls: int, profile: cProfile.Profile) -> None:
    client = LLMClient(base_url)
    try:
        for _ in range(200):
            await client.chat()
        profile.enable()
        for _ in range(calls):
            await client.chat()
        profile.disable()
    finally:
        await client.aclose()


def run_profile(calls: int, top: int = 40) -> str:
    """cProfile of `calls` sequential llmclient chat calls, sorted by own time."""
    profile = cProfile.Profile()
    with bench_server(None) as base_url:
        asyncio.run(_profiled(base_url, calls, profile))
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- BENCHMARKS.md -------------------------------------------------------------------------------------------------


def update_markdown(path: Path, sections: dict[str, str]) -> None:
    """Replace each named section between its markers, appending sections the file does not have yet."""
    text = path.read_text(encoding="utf-8") if path.exists() else MARKDOWN_HEADER
    for name, body in sections.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        block = f"{start}\n{body.strip()}\n{end}"
        begin = text.find(start)
        finish = text.find(end, begin) if begin >= 0 else -1
        if begin >= 0 and finish >= 0:
            text = text[:begin] + block + text[finish + len(end) :]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


# -- command line --------------------------------------------------------------------------------------------------


def _selection(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    return names


def _command(argv: Sequence[str]) -> str:
    return "make bench" if not argv else ".venv/bin/python bench/run.py " + shlex.join(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks, print a summary and update BENCHMARKS.md."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description="llmclient benchmarks")
    parser.add_argument("--only", type=_selection, default=BENCHMARKS, help=f"comma-separated: {','.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (writes nothing unless --output)")
    parser.add_argument("--output", type=Path, help=f"the markdown file to update (default {DEFAULT_OUTPUT.name})")
    parser.add_argument("--no-write", action="store_true", help="print results only")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--profile", action="store_true", help="profile llmclient's chat path instead")
    parser.add_argument("--baseline", help="a git revision whose llmclient the embedding job also measures")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.profile:
        print(run_profile(settings.sequential_calls))
        return 0

    command = _command(argv)
    sections: dict[str, str] = {}
    missed: list[str] = []
    if "overhead" in args.only:
        print("overhead: client CPU per call (chat, stream, embed)", flush=True)
        result = overhead.run(settings)
        sections["overhead"] = overhead.markdown(result, command)
        for name, (ratio, met) in overhead.verdicts(result).items():
            print(f"  {name}: llmclient {ratio or 0:.2f}× raw aiohttp")
            if not met:
                missed.append(f"overhead/{name}")
    if "import" in args.only:
        print("import: wall time in fresh interpreters", flush=True)
        imports = run_import(settings)
        sections["import"] = import_markdown(imports, command)
        for name, _ in IMPORT_CASES[1:]:
            print(f"  {name}: {imports.ratio(name):.2f}× import httpx")
            if imports.ratio(name) > IMPORT_TARGET:
                missed.append(f"import/{name}")
        if any(found["heavy"] for found in imports.loaded.values()):
            missed.append("import/heavy-modules")

    if "embedjob" in args.only:
        print(f"embedjob: {settings.job_texts:,} texts", flush=True)
        with exported_source(args.baseline) as baseline:
            job = embedjob.run(settings, None if baseline is None else (args.baseline, baseline))
        sections["embedjob"] = embedjob.markdown(job, command, settings)
        print(f"  llmclient {job.ratio():.2f}× the plain loop's texts/s, {job.memory_ratio():.2f}× its peak memory")
        if job.ratio() < embedjob.TARGET or job.memory_ratio() >= embedjob.MEMORY_TARGET:
            missed.append("embedjob")
    if "prompt" in args.only:
        print("prompt: a long prompt against a short one, no budget", flush=True)
        lengths = prompt_length.run(settings)
        sections["prompt"] = prompt_length.markdown(lengths, command)
        print(f"  llmclient long/short {lengths.ratio('llmclient'):.2f}×")
        if lengths.ratio("llmclient") > prompt_length.TARGET:
            missed.append("prompt")
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None and not args.no_write:
        update_markdown(output, sections)
        print(f"updated {output}")
    print("targets missed: " + ", ".join(missed) if missed else "all targets met")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
