"""The suite's per-test timeout (pytest-timeout): a test that hangs fails within it, with a traceback, and the run
goes on, instead of holding CI until its own limit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import llmclient

ROOT = Path(__file__).resolve().parent.parent

HANGING = """
import asyncio
import time

from llmclient import RetryPolicy, ServerError


async def test_endless_retries():
    # What a mutant of RetryPolicy.run does: retry a provider that never recovers, for ever.
    async def attempt():
        raise ServerError("down", status=503)

    await RetryPolicy(max_retries=10**9, initial_backoff=0.001, max_backoff=0.001).run(attempt)


def test_blocked():
    time.sleep(600)


def test_after_the_hangs():
    assert True
"""


def test_every_test_has_a_timeout(pytestconfig: pytest.Config) -> None:
    assert float(pytestconfig.getini("timeout")) == 60


def test_a_hanging_test_fails_within_its_timeout(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(textwrap.dedent(HANGING), encoding="utf-8")
    command = [sys.executable, "-m", "pytest", "test_hangs.py", "-c", str(ROOT / "pyproject.toml")]
    command += ["--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-o", "timeout=2"]
    started = time.monotonic()
    finished = subprocess.run(
        command,
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(llmclient.__file__).parent.parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    output = finished.stdout + finished.stderr
    assert finished.returncode == 1, output
    assert "2 failed, 1 passed" in output, output  # the run went on after each hang
    for test in ("test_endless_retries", "test_blocked"):
        assert f"FAILED test_hangs.py::{test} - Failed: Timeout (>2.0s)" in output, output
    assert "test_hangs.py:17: Failed" in output, output  # the traceback points at the line that hung
    assert elapsed < 60, output  # two 2-second timeouts and pytest's start, not the 600 s sleep
