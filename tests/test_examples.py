"""The examples run as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.server
def test_quickstart_against_a_real_server(llama_server: str) -> None:
    env = {**os.environ, "OPENAI_COMPATIBLE_BASE_URL": llama_server}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("chat: ") and len(lines[0]) > len("chat: ")
    assert "reported by the server" in lines[1]
    assert lines[2].startswith("stream: ") and len(lines[2]) > len("stream: ")
    assert "estimated locally" in lines[3]
    assert lines[4].startswith("ledger: 2 calls")
