"""What every benchmark in bench/run.py shares: settings, the machine's description, CPU pinning, the server."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = ROOT / "bench" / "server.py"


@dataclass(frozen=True)
class Settings:
    """How much work each measurement does."""

    sequential_calls: int = 1500
    concurrency: int = 100
    concurrent_rounds: int = 15
    stream_calls: int = 400
    embed_calls: int = 600
    embed_texts: int = 16
    repeats: int = 3
    warmup_calls: int = 200
    import_runs: int = 15
    job_texts: int = 100_000
    job_repeats: int = 5


FULL = Settings()
QUICK = Settings(
    sequential_calls=200,
    concurrent_rounds=2,
    stream_calls=50,
    embed_calls=50,
    repeats=1,
    warmup_calls=20,
    import_runs=5,
    job_texts=10_000,
    job_repeats=1,
)


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
        f"aiohttp {_version('aiohttp')}, openai {_version('openai')}, litellm {_version('litellm')}"
    )


def pin(cpus: set[int]) -> None:
    # Server and client on separate cores so neither steals the other's cycles or caches mid-measurement.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, cpus)


def cpu_split() -> tuple[set[int], set[int]] | None:
    """(client cores, server core) when there are at least two cores to split, else None."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    if len(allowed) < 2:
        return None
    return set(allowed[:-1]), {allowed[-1]}


@contextlib.contextmanager
def exported_source(revision: str | None) -> Iterator[Path | None]:
    """The `src` folder of another git revision of this checkout (`git archive`), in a temporary folder, so its
    llmclient can be measured beside this one's; None for no revision."""
    if revision is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="llmclient-baseline-") as folder:
        archive = subprocess.run(["git", "archive", revision, "src"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        yield Path(folder) / "src"


# -- the server process --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def bench_server(server_cpus: set[int] | None, attempts: int = 3) -> Iterator[str]:
    """Run bench/server.py on a free port and yield its base URL; retried if another process takes the port."""
    for _ in range(attempts):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=(lambda: pin(server_cpus)) if server_cpus else None,  # before exec: no threads exist yet
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
