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
    with pytest.raises(ConfigurationError, match="unknown keys"):
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
