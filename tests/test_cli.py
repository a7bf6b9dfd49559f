"""The `llmclient` command, run as a user runs it: a subprocess, its output, its exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text('[prices."fake/paid"]\ninput_cost_per_token = "0.000001"\noutput_cost_per_token = "0.000002"\n')
    return {
        **os.environ,
        "LLMCLIENT_CONFIG": str(config),
        "LLMCLIENT_LEDGER": str(tmp_path / "ledger.db"),
        "HF_HUB_OFFLINE": "1",
    }


def llmclient(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmclient.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_chat_streams_and_json_is_valid(env: dict[str, str]) -> None:
    result = llmclient("chat", "你好 there", "-m", "fake/echo", "--usage", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "You said: 你好 there"
    assert lines[1] == "[2 in, 4 out (reported), $0.000000]"
    as_json = llmclient("chat", "hi", "-m", "fake/echo", "-s", "Be brief.", "--json", env=env)
    data = json.loads(as_json.stdout)
    assert data["message"]["content"] == "You said: hi"
    assert data["usage"]["input_tokens"] == 3  # "Be brief." + "hi"


def test_count_says_exact_or_estimated(env: dict[str, str], tmp_path: Path) -> None:
    exact = llmclient("count", "Hello, world!", "-m", "openai/gpt-4", env=env)
    assert exact.stdout == "4 tokens (exact, cl100k_base)\n"
    o200k = llmclient("count", "some text", "-m", "openai/gpt-4o", env=env)
    assert o200k.stdout == "2 tokens (exact, o200k_base)\n"  # as docs/cli.md shows
    deepseek = llmclient("count", "Hello, world!", "-m", "deepseek/deepseek-chat", env=env)
    assert deepseek.stdout == "4 tokens (exact, deepseek-v4)\n"
    local = {**env, "OPENAI_COMPATIBLE_BASE_URL": "http://127.0.0.1:9/v1"}  # counting sends nothing
    estimated = llmclient("count", "Hello, world!", "-m", "openai-compatible/some-model", env=local)
    assert estimated.stdout == "4 tokens (estimated, cl100k_base (estimate))\n"
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Hello!"}]))
    assert llmclient("count", "--messages", str(messages), "-m", "openai/gpt-4", env=env).stdout.startswith("9 tokens")
    text_file = tmp_path / "text.txt"
    text_file.write_text("one two three")
    assert llmclient("count", "-f", str(text_file), "-m", "fake/x", env=env).stdout.startswith("3 tokens")
    assert llmclient("count", "-m", "fake/x", env=env, stdin="from stdin").stdout.startswith("2 tokens")


def test_embed_and_similarity(env: dict[str, str]) -> None:
    embedded = llmclient("embed", "cat", "dog", "-m", "fake/e", "--json", env=env)
    data = json.loads(embedded.stdout)
    assert len(data["vectors"]) == 2 and len(data["vectors"][0]) == 8
    same = llmclient("similarity", "cat", "cat", "-m", "fake/e", env=env)
    assert same.returncode == 0, same.stderr
    assert float(same.stdout) == pytest.approx(1.0)


def test_models_lists_providers_aliases_and_prices(env: dict[str, str]) -> None:
    listing = json.loads(llmclient("models", "--json", env=env).stdout)
    assert {"openai", "deepseek", "fake"} <= set(listing["providers"])
    models = {price["model"]: price for price in listing["prices"]}
    assert models["deepseek/deepseek-chat"]["input_per_million"] == "0.28"
    assert models["fake/paid"]["output_per_million"] == "2"
    table = llmclient("models", env=env).stdout
    assert "openai/gpt-4o" in table


def test_cost_reports_the_ledger_earlier_commands_wrote(env: dict[str, str]) -> None:
    llmclient("chat", "one two", "-m", "fake/paid", "--tag", "demo", env=env)
    llmclient("chat", "three", "-m", "fake/paid", env=env)
    llmclient("chat", "four", "-m", "fake/free", env=env)
    report = json.loads(llmclient("cost", "--format", "json", env=env).stdout)
    paid = report["groups"]["fake/paid"]
    # "one two" → 2 in, 4 out; "three" → 1 in, 3 out; at 1 µ$ in, 2 µ$ out.
    assert (paid["calls"], paid["input_tokens"], paid["output_tokens"]) == (2, 3, 7)
    assert paid["cost_usd"] == "0.000017"
    assert report["total_usd"] == "0.000017"
    by_tag = json.loads(llmclient("cost", "--by", "tag", "--format", "json", env=env).stdout)
    assert set(by_tag["groups"]) == {"demo", "(untagged)"}
    table = llmclient("cost", "--by", "provider", env=env).stdout
    assert table.splitlines()[1].startswith("fake")
    assert llmclient("cost", "--by", "day", env=env).returncode == 0
    assert llmclient("cost", "--format", "csv", env=env).stdout.startswith("timestamp,provider,model")


def test_compare_scores_models_side_by_side(env: dict[str, str], tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "Paris", "expected": "You said: Paris"})
        + "\n"
        + json.dumps({"prompt": "2+2", "expected": "4"})
        + "\n"
    )
    result = llmclient("compare", "-m", "fake/a", "-m", "fake/b", str(prompts), "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["results"]) == 4
    assert data["summary"]["fake/a"]["correct"] == 1 and data["summary"]["fake/a"]["scored"] == 2
    assert data["summary"]["fake/b"]["accuracy"] == 0.5
    table = llmclient("compare", "-m", "fake/a", str(prompts), env=env).stdout
    assert "1/2" in table


def test_errors_print_one_line_and_set_the_exit_code(env: dict[str, str], tmp_path: Path) -> None:
    unknown = llmclient("chat", "hi", "-m", "nope/model", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: unknown provider 'nope'")
    assert len(unknown.stderr.splitlines()) == 1
    verbose = llmclient("-v", "chat", "hi", "-m", "nope/model", env=env)
    assert "Traceback" in verbose.stderr
    assert llmclient("chat", env=env).returncode == 2  # usage error from argparse
    missing = llmclient("--ledger", str(tmp_path / "none.db"), "cost", env=env)
    assert missing.returncode == 1 and "no ledger" in missing.stderr
    bad_lines = tmp_path / "bad.jsonl"
    bad_lines.write_text('{"question": "x"}\n')
    assert (
        "must be a JSON object with a 'prompt'" in llmclient("compare", "-m", "fake/a", str(bad_lines), env=env).stderr
    )


def test_chat_and_similarity_on_the_embedded_models(env: dict[str, str]) -> None:
    chat = llmclient("chat", "What is 2 + 2?", "-m", "llamacpp/smollm2", "-t", "0", "--max-tokens", "16", env=env)
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert chat.stdout.strip()
    close = llmclient("similarity", "A cat sleeps.", "A kitten naps.", "-m", "transformers/all-MiniLM-L6-v2", env=env)
    far = llmclient("similarity", "A cat sleeps.", "Stocks fell.", "-m", "transformers/all-MiniLM-L6-v2", env=env)
    assert close.returncode == 0, close.stderr[-2000:]
    assert float(close.stdout) > float(far.stdout)
    count = llmclient("count", "Hello there", "-m", "llamacpp/smollm2", env=env)
    assert count.stdout.endswith("tokens (exact, SmolLM2-135M-Instruct.Q4_1.gguf)\n")
