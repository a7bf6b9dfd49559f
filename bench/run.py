"""llmclient's benchmarks; `make bench` runs them all and rewrites their sections of BENCHMARKS.md.

* `overhead`: client CPU time per chat call (`time.process_time` of this process, after warm-up) for llmclient,
  raw `httpx.AsyncClient` and the official `openai` SDK against bench/server.py, a loopback server in its own
  process, sequentially and 100 calls at a time.
* `import`: wall time of `import llmclient` (and `from llmclient import Client`) against `import httpx` in fresh
  interpreters, and a check that no heavy optional library is imported with llmclient.

    .venv/bin/python bench/run.py                   # everything, writes BENCHMARKS.md
    .venv/bin/python bench/run.py --only import     # one benchmark
    .venv/bin/python bench/run.py --quick           # a smoke run: prints, writes nothing unless --output
    .venv/bin/python bench/run.py --profile         # cProfile of llmclient's chat path, top functions
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
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from server import MODEL, REPLY_TEXT

if TYPE_CHECKING:
    import httpx
    import openai

    from llmclient import Client

ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = ROOT / "bench" / "server.py"
DEFAULT_OUTPUT = ROOT / "BENCHMARKS.md"
PROMPT = "hi"
LLMCLIENT_MODEL = f"openai-compatible/{MODEL}"
# Exactly what OpenAICompatibleDriver._to_wire sends for `chat(PROMPT)`; httpx's `json=` encodes it with the same
# compact separators and ensure_ascii=False, so both clients put identical bytes on the wire.
WIRE_BODY: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
MEASURE_WARMUP = 100  # untimed calls on each fresh client: connects, fills its pool
OVERHEAD_TARGET = 1.10
IMPORT_TARGET = 1.30
HEAVY_MODULES = ("torch", "transformers", "llama_cpp", "langchain_core")
# Not forbidden, but worth seeing: what a bare `import llmclient` pulls in.
NOTABLE_MODULES = ("pydantic", "httpx", "numpy", "tiktoken", "tenacity", "openai")
BENCHMARKS = ("overhead", "import")
MARKDOWN_HEADER = """# Benchmarks

Produced by `make bench` (`bench/run.py`, with `bench/server.py` as the loopback server). Each benchmark rewrites
only its own section, between its `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` markers.
"""


@dataclass(frozen=True)
class Settings:
    """How much work each measurement does."""

    sequential_calls: int = 2000
    concurrency: int = 100
    concurrent_rounds: int = 20
    repeats: int = 5
    warmup_calls: int = 300
    import_runs: int = 15


FULL = Settings()
QUICK = Settings(sequential_calls=200, concurrent_rounds=2, repeats=3, warmup_calls=50, import_runs=5)


# -- environment ---------------------------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def environment_line() -> str:
    """Date, machine and versions, for the head of every section."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{today} · {os.cpu_count()} cores ({_cpu_model()}), {platform.system()} {platform.machine()} · "
        f"Python {platform.python_version()} · llmclient {_version('llmclient')}, httpx {_version('httpx')}, "
        f"openai {_version('openai')}"
    )


def _pin(cpus: set[int]) -> None:
    # Server and client on separate cores so neither steals the other's cycles or caches mid-measurement.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, cpus)


def _cpu_split() -> tuple[set[int], set[int]] | None:
    """(client cores, server core) when there are at least two cores to split, else None."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    if len(allowed) < 2:
        return None
    return set(allowed[:-1]), {allowed[-1]}


# -- the server process --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def bench_server(server_cpus: set[int] | None, attempts: int = 3) -> Iterator[str]:
    """Run bench/server.py on a free port and yield its base URL; retried if another process takes the port."""
    for _ in range(attempts):
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=(lambda: _pin(server_cpus)) if server_cpus else None,  # before exec: no threads exist yet
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15.0)
        line = process.stdout.readline() if ready else ""
        if line.strip() == "ready":
            try:
                yield f"http://127.0.0.1:{port}/v1"
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                process.stdout.close()
            return
        process.kill()
        process.wait()
        process.stdout.close()
    raise RuntimeError(f"bench/server.py did not start after {attempts} attempts")


# -- overhead: the three clients -----------------------------------------------------------------------------------


class Caller(Protocol):
    """One client under test; `call` makes one chat call and returns the reply text."""

    name: str

    async def call(self) -> str: ...

    async def aclose(self) -> None: ...


class LLMClientCaller:
    """`Client.chat` through the openai-compatible driver, as the README shows it."""

    name = "llmclient"

    def __init__(self, base_url: str) -> None:
        from llmclient import Client

        self.client: Client = Client(providers={"openai-compatible": {"base_url": base_url}})

    async def call(self) -> str:
        reply = await self.client.chat(PROMPT, model=LLMCLIENT_MODEL)
        return reply.text

    async def check(self) -> None:
        """Fail loudly if the reply is not the server's, or if usage was estimated instead of read."""
        reply = await self.client.chat(PROMPT, model=LLMCLIENT_MODEL)
        if reply.text != REPLY_TEXT or reply.usage.estimated or not reply.usage.output_tokens:
            raise RuntimeError(f"llmclient did not read the server's reply and usage: {reply!r}")

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpxCaller:
    """The floor: raw `httpx.AsyncClient.post` and `.json()`, with httpx's defaults (as llmclient uses them)."""

    name = "raw httpx"

    def __init__(self, base_url: str) -> None:
        import httpx

        self.client: httpx.AsyncClient = httpx.AsyncClient(base_url=base_url)

    async def call(self) -> str:
        response = await self.client.post("/chat/completions", json=WIRE_BODY)
        response.raise_for_status()
        text: str = response.json()["choices"][0]["message"]["content"]
        return text

    async def aclose(self) -> None:
        await self.client.aclose()


class OpenAICaller:
    """The official SDK's `chat.completions.create`, with its defaults."""

    name = "openai SDK"

    def __init__(self, base_url: str) -> None:
        import openai

        self.client: openai.AsyncOpenAI = openai.AsyncOpenAI(base_url=base_url, api_key="x")

    async def call(self) -> str:
        completion = await self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}]
        )
        return completion.choices[0].message.content or ""

    async def aclose(self) -> None:
        await self.client.close()


CALLERS: tuple[Callable[[str], Caller], ...] = (LLMClientCaller, HttpxCaller, OpenAICaller)
BASELINE = HttpxCaller.name


@dataclass(frozen=True)
class Mode:
    """A way of issuing calls: `concurrency` at a time (1 is sequential), `calls` in all."""

    name: str
    label: str
    concurrency: int
    calls: int


def modes(settings: Settings) -> tuple[Mode, ...]:
    """The sequential and the concurrent mode for these settings."""
    concurrent_calls = settings.concurrency * settings.concurrent_rounds
    return (
        Mode("sequential", f"sequential ({settings.sequential_calls} calls)", 1, settings.sequential_calls),
        Mode(
            "concurrent",
            f"{settings.concurrency} concurrent ({settings.concurrent_rounds} × gather of {settings.concurrency})",
            settings.concurrency,
            concurrent_calls,
        ),
    )


@dataclass(frozen=True)
class Sample:
    """One measurement: CPU and wall seconds per call."""

    cpu: float
    wall: float


@dataclass
class OverheadResult:
    """Every sample, by mode then client."""

    settings: Settings
    pinned: bool
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)

    def median_cpu(self, mode: str, client: str) -> float:
        return statistics.median(sample.cpu for sample in self.samples[mode][client])

    def ratio(self, mode: str, client: str) -> float:
        return self.median_cpu(mode, client) / self.median_cpu(mode, BASELINE)


async def _issue(caller: Caller, mode: Mode) -> None:
    if mode.concurrency == 1:
        for _ in range(mode.calls):
            await caller.call()
        return
    for _ in range(mode.calls // mode.concurrency):
        await asyncio.gather(*[caller.call() for _ in range(mode.concurrency)])


async def _measure(factory: Callable[[str], Caller], base_url: str, mode: Mode) -> Sample:
    """One measurement on a fresh client, warmed up first by `MEASURE_WARMUP` untimed calls in the same mode."""
    # A fresh client each time: httpx's pool size drifts with history (idle connections expire after 5 s while
    # the other clients run, and httpcore closes idle ones once the pool holds more than 20), and its queue
    # handling costs more CPU per call the more connections it holds, so a reused client makes the CPU per call
    # depend on what ran before it.
    caller = factory(base_url)
    try:
        await _issue(caller, Mode(mode.name, mode.label, mode.concurrency, max(mode.concurrency, MEASURE_WARMUP)))
        # Collect, then freeze what survives: one client's garbage is not swept on the next client's clock, and
        # objects that outlive a measurement are not traversed on anyone's clock. Collections that the measured
        # client's own allocations trigger are its cost and stay in.
        gc.collect()
        gc.freeze()
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            await _issue(caller, mode)
            return Sample((time.process_time() - cpu) / mode.calls, (time.perf_counter() - wall) / mode.calls)
        finally:
            gc.unfreeze()
    finally:
        await caller.aclose()


async def _check_and_warm(factory: Callable[[str], Caller], base_url: str, settings: Settings) -> str:
    """Check the client reads the server's reply, and run every lazy import and cache once; return its name."""
    caller = factory(base_url)
    try:
        text = await caller.call()
        if text != REPLY_TEXT:  # a client measuring an error path would look fast and prove nothing
            raise RuntimeError(f"{caller.name} got {text!r}, not the server's reply")
        if isinstance(caller, LLMClientCaller):
            await caller.check()
        for mode in modes(settings):
            warmup = max(settings.warmup_calls, mode.concurrency)
            await _issue(caller, Mode(mode.name, mode.label, mode.concurrency, warmup))
        return caller.name
    finally:
        await caller.aclose()


async def _overhead(base_url: str, settings: Settings) -> OverheadResult:
    names = {factory: await _check_and_warm(factory, base_url, settings) for factory in CALLERS}
    result = OverheadResult(settings, pinned=False)
    for mode in modes(settings):
        by_client: dict[str, list[Sample]] = {name: [] for name in names.values()}
        result.samples[mode.name] = by_client
        for repeat in range(settings.repeats):
            # Rotate the order each repeat so drift (thermal, other load) is spread over all clients.
            shift = repeat % len(CALLERS)
            for factory in CALLERS[shift:] + CALLERS[:shift]:
                sample = await _measure(factory, base_url, mode)
                by_client[names[factory]].append(sample)
                print(
                    f"  {mode.name:<10} {names[factory]:<10} repeat {repeat + 1}/{settings.repeats}: "
                    f"{sample.cpu * 1e6:7.1f} µs CPU/call, {sample.wall * 1e6:7.1f} µs wall/call",
                    flush=True,
                )
    return result


def run_overhead(settings: Settings) -> OverheadResult:
    """Start the server, measure every client in both modes, stop the server."""
    # The bench model has no price, which llmclient reports once per client: expected here, so kept out of the output.
    warnings.filterwarnings("ignore", message="no price known")
    split = _cpu_split()
    if split is not None:
        _pin(split[0])
    with bench_server(split[1] if split else None) as base_url:
        result = asyncio.run(_overhead(base_url, settings))
    result.pinned = split is not None
    return result


def overhead_markdown(result: OverheadResult, command: str) -> str:
    """The overhead section: a table of CPU and wall time per call, and the ratios to raw httpx."""
    settings = result.settings
    mode_list = modes(settings)
    header = "| client | " + " | ".join(
        f"{mode.name} CPU µs/call | {mode.name} vs raw httpx | {mode.name} wall µs/call" for mode in mode_list
    )
    rows = [header + " |", "|---" + "|---:" * (3 * len(mode_list)) + "|"]
    for client in result.samples[mode_list[0].name]:
        cells = [client]
        for mode in mode_list:
            samples = result.samples[mode.name][client]
            cpus = [sample.cpu * 1e6 for sample in samples]
            wall = statistics.median(sample.wall for sample in samples) * 1e6
            cells += [
                f"{statistics.median(cpus):.1f} ({min(cpus):.1f}–{max(cpus):.1f})",
                f"{result.ratio(mode.name, client):.2f}×",
                f"{wall:.1f}",
            ]
        rows.append("| " + " | ".join(cells) + " |")
    verdicts = [
        f"{mode.name} {result.ratio(mode.name, LLMClientCaller.name):.2f}×"
        f" ({'met' if result.ratio(mode.name, LLMClientCaller.name) <= OVERHEAD_TARGET else 'MISSED'})"
        for mode in mode_list
    ]
    pinning = (
        "Client and server were pinned to separate cores."
        if result.pinned
        else "Client and server shared the cores (no CPU pinning)."
    )
    return "\n".join(
        [
            "## Client overhead per chat call",
            "",
            environment_line(),
            "",
            f"Command: `{command}`",
            "",
            "Client CPU time (`time.process_time` of the benchmark process, so the server's work is not counted) "
            "per `chat` call against `bench/server.py`, which answers every request with the same ~600-byte "
            "`chat.completion` over loopback HTTP/1.1 keep-alive. Modes: "
            + "; ".join(mode.label for mode in mode_list)
            + f". Each client is first checked (it must return the server's text; llmclient must read, not "
            f"estimate, the usage) and warmed up with {settings.warmup_calls} calls per mode. Then each client is "
            f"measured {settings.repeats} times per mode, clients interleaved in rotating order, every measurement "
            f"on a fresh client warmed by {MEASURE_WARMUP} untimed calls (httpx's pool size otherwise drifts with "
            "what ran before, and its CPU per call with it). The heap is collected and frozen (`gc.freeze`) before "
            "each measurement, so objects one client keeps do not slow another's garbage collections. The table "
            "gives the median (min–max) CPU time and the median wall time per call. " + pinning,
            "",
            "Clients: **llmclient** `Client.chat(...)` via the `openai-compatible` driver; **raw httpx** "
            "`AsyncClient.post(json=...)` + `.json()` with the same body and httpx's defaults (which llmclient "
            "also uses); **openai SDK** `AsyncOpenAI(...).chat.completions.create(...)` with its defaults (it "
            "runs on httpx2/httpcore2 with a 1000-connection pool). In the concurrent mode most of the CPU per "
            "call is httpcore 1.0's pool bookkeeping: the client is CPU-bound, so 100 calls in flight queue on "
            "a pool httpcore keeps near 20 connections, and every queue change rescans queue × connections, "
            "for llmclient and raw httpx alike.",
            "",
            *rows,
            "",
            f"Target llmclient ≤ {OVERHEAD_TARGET:.2f}× raw httpx: " + ", ".join(verdicts) + ".",
        ]
    )


# -- import time ---------------------------------------------------------------------------------------------------

IMPORT_CASES = (
    ("import httpx", "import httpx"),
    ("import llmclient", "import llmclient"),
    ("from llmclient import Client", "from llmclient import Client"),
)
# Timed inside the fresh interpreter, so interpreter start-up (the same for every case) is left out.
_TIMED = "import time\n_t = time.perf_counter()\n{statement}\nprint(time.perf_counter() - _t)"
_MODULES = (
    "import json, sys\n{statement}\n"
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
    caller = LLMClientCaller(base_url)
    try:
        await _issue(caller, Mode("warm-up", "", 1, 200))
        profile.enable()
        await _issue(caller, Mode("profiled", "", 1, calls))
        profile.disable()
    finally:
        await caller.aclose()


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
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.profile:
        print(run_profile(settings.sequential_calls))
        return 0

    command = _command(argv)
    sections: dict[str, str] = {}
    missed: list[str] = []
    if "overhead" in args.only:
        print("overhead: client CPU time per chat call", flush=True)
        overhead = run_overhead(settings)
        sections["overhead"] = overhead_markdown(overhead, command)
        for mode in modes(settings):
            ratios = {client: overhead.ratio(mode.name, client) for client in overhead.samples[mode.name]}
            print(f"  {mode.name}: " + ", ".join(f"{client} {ratio:.2f}×" for client, ratio in ratios.items()))
            if ratios[LLMClientCaller.name] > OVERHEAD_TARGET:
                missed.append(f"overhead/{mode.name}")
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

    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None and not args.no_write:
        update_markdown(output, sections)
        print(f"updated {output}")
    print("targets missed: " + ", ".join(missed) if missed else "all targets met")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
