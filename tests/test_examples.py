"""The examples run as a user runs them: `python examples/<name>.py`, offline, on the models from the wheels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, env: dict[str, str] | None = None) -> str:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for key in ("OPENAI_API_KEY", "DEEPSEEK_API_KEY", "OLLAMA_HOST"):
        environment.pop(key, None)
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.server
@pytest.mark.timeout(300)  # starts llama.cpp's server first (up to 120 s)
def test_quickstart_against_a_real_server(llama_server: str) -> None:
    lines = run_example("quickstart.py", {"OPENAI_COMPATIBLE_BASE_URL": llama_server}).splitlines()
    assert lines[0].startswith("chat: ") and len(lines[0]) > len("chat: ")
    assert "reported by the server" in lines[1]
    assert lines[2].startswith("stream: ") and len(lines[2]) > len("stream: ")
    assert "estimated locally" in lines[3]
    assert lines[4].startswith("ledger: 2 calls")


def _readme_demo_output() -> str:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    return readme.split("`make demo` prints:\n\n```text\n", 1)[1].split("```\n", 1)[0]


def test_demo_shows_every_step_as_the_readme_shows_it() -> None:
    # One run (the demo loads two models): its output is the README's block, line for line. Nothing in it is
    # normalised: greedy decoding (temperature=0) on SmolLM2 under llama.cpp and MiniLM's scores on the CPU give the
    # same text and figures on every run, and the command-line part uses a fresh ledger each time.
    output = run_example("demo.py")
    assert output.strip("\n") + "\n" == _readme_demo_output()
    for heading in ("== chat", "== stream", "== count tokens", "== embeddings and similarity", "== the ledger"):
        assert heading in output
    assert "Paris" in output
    assert "tokens (exact, SmolLM2-135M-Instruct.Q4_1.gguf)" in output
    assert "total spent: $0" in output
    scores = [line for line in output.splitlines() if "kitten" in line or "stock market" in line]
    assert float(scores[0].split()[0]) > float(scores[-1].split()[0])  # kitten ranks above the stock market
    assert max(len(line) for line in output.splitlines()) <= 88  # the README shows it whole


def test_streaming() -> None:
    output = run_example("streaming.py")
    assert "[stop;" in output or "[length;" in output


def test_tools_loop_runs_the_tool() -> None:
    output = run_example("tools_loop.py")
    assert "assistant calls convert(" in output
    assert "\ntool: " in output


def test_structured_output_is_a_valid_object() -> None:
    assert run_example("structured_output.py").startswith("City(name=")


def test_embeddings_search() -> None:
    output = run_example("embeddings_search.py")
    assert output.splitlines()[0].endswith("The Eiffel Tower is in Paris.")
    assert "Photosynthesis" in output.splitlines()[2]


def test_budgets_refuse_the_call_that_does_not_fit() -> None:
    output = run_example("budgets.py")
    assert output.count("sent:") == 2 and "refused:" in output
    assert "spent $0.026 of $0.10; 2 calls in the ledger" in output


def test_langchain_agent() -> None:
    output = run_example("langchain_agent.py")
    assert "tool call: word_length({'word':" in output and "usage: {'input_tokens'" in output


@pytest.mark.timeout(300)  # loads a model in a new process: 15 s on two busy cores
def test_local_gpu_says_which_device() -> None:
    output = run_example("local_gpu.py")
    assert "'device': 'cpu'" in output and "'reason': 'no CUDA device'" in output


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("openai_quickstart.py", "Set OPENAI_API_KEY"),
        ("deepseek_quickstart.py", "Set DEEPSEEK_API_KEY"),
        ("ollama_quickstart.py", "ollama serve"),
    ],
)
def test_hosted_examples_say_what_they_need(name: str, says: str) -> None:
    # No key and no Ollama here: each says what to set or start, and exits cleanly.
    env = {"OLLAMA_HOST": "http://127.0.0.1:9"} if name.startswith("ollama") else None
    assert says in run_example(name, env)
