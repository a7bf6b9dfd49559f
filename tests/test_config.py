"""The configuration file: where it is, what it may hold, and what the Client gets from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmclient import Client, ConfigurationError
from llmclient.config import client_options, config_path, load_config

CONFIG = """
default_model = "fast"
ledger = "{ledger}"

[aliases]
fast = "fake/quick"

[providers.local]
driver = "openai-compatible"
base_url = "http://127.0.0.1:8080/v1"

[prices."local/*"]
input_cost_per_token = "0"
output_cost_per_token = "0"
"""


def test_the_file_configures_a_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(ledger=tmp_path / "ledger.db"))
    monkeypatch.setenv("LLMCLIENT_CONFIG", str(path))
    assert config_path() == path
    options = client_options()
    assert options["ledger"] == f"sqlite:///{tmp_path / 'ledger.db'}"
    client = Client(**options)
    assert client.resolve(None) == ("fake", "quick")
    assert client.prices.lookup("local", "any-model") is not None


def test_no_file_means_no_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMCLIENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_path() == tmp_path / "llmclient" / "config.toml"
    assert client_options() == {}


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("default_model = ")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('default_modle = "x"')
    with pytest.raises(ConfigurationError, match=r"unknown key 'default_modle' \(did you mean 'default_model'\?\)"):
        load_config(unknown)
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_a_key_in_a_readable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text('[providers.openai]\napi_key = "sk-from-file"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_config(path)
    path.chmod(0o600)
    assert load_config(path)["providers"]["openai"]["api_key"] == "sk-from-file"


def test_a_misspelt_retry_key_names_the_closest_one(tmp_path: Path) -> None:
    path = tmp_path / "retry.toml"
    path.write_text("retry = {max_retry = 1}\n")
    with pytest.raises(ConfigurationError, match=r"retry.max_retry: unknown key \(did you mean 'max_retries'\?\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        (
            '[prices."vllm/*"]\ninput_cost_per_tokn = 0.000001\n',
            "price for 'vllm/*': unknown field 'input_cost_per_tokn' (did you mean 'input_cost_per_token'?)",
        ),
        ('[prices."vllm/*"]\ninput_cost_per_token = "cheap"\n', "has input_cost_per_token 'cheap', not a price"),
        ('[prices]\n"vllm/*" = "cheap"\n', "price for 'vllm/*': 'cheap' is not a price"),
        ('[prices]\n"vllm" = 1\n', "price key 'vllm': write 'provider/model'"),
        (
            '[providers.vllm]\ndriver = "openai-compat"\nbase_url = "http://127.0.0.1:8000/v1"\n',
            "unknown driver 'openai-compat' (did you mean 'openai-compatible'?)",
        ),
    ],
)
def test_bad_prices_and_providers_in_the_file_are_refused_when_loaded(tmp_path: Path, table: str, says: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(table)
    with pytest.raises(ConfigurationError) as raised:
        Client(**client_options(path))
    assert says in str(raised.value)
