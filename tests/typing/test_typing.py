"""The typed surface as a user's type checker sees it: `mypy --strict` on a user script (sync and async) passes,
and the typos a newcomer makes are each flagged."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmclient import Client, SyncClient

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def mypy(*files: str) -> tuple[int, str]:
    """`mypy --strict` with the project's configuration on files in this folder, against this checkout's source."""
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(ROOT / ".mypy_cache"), "--no-error-summary", *files],
        cwd=HERE, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.mark.timeout(300)  # mypy --strict from a cold cache: a minute on two busy cores
def test_a_typed_user_script_passes_mypy_strict() -> None:
    code, output = mypy("user_script.py")
    assert (code, output) == (0, "")


def test_a_users_typos_are_each_flagged() -> None:
    code, output = mypy("typos.py")
    assert code == 1
    flagged = {int(line) for line in re.findall(r"^typos\.py:(\d+): error", output, flags=re.MULTILINE)}
    source = (HERE / "typos.py").read_text().splitlines()
    expected = {number for number, line in enumerate(source, 1) if line.startswith("    ") and "(" in line}
    expected -= {number for number, line in enumerate(source, 1) if line.lstrip().startswith(("async def", "def"))}
    assert flagged == expected, output
    assert 'did you mean "temperature"' in output
    assert 'did you mean "default_model"' in output


def test_the_user_script_runs() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, str(HERE / "user_script.py")], env=env, check=True, capture_output=True)


@pytest.mark.parametrize("name", ["chat", "stream", "run", "embed", "count_tokens", "similarity", "search"])
def test_sync_methods_have_the_async_signatures(name: str) -> None:
    assert inspect.signature(getattr(SyncClient, name)) == inspect.signature(getattr(Client, name))
