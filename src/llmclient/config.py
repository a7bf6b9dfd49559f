"""The optional configuration file: aliases, providers, prices, the default model and the ledger, in TOML.

Looked up at `LLMCLIENT_CONFIG`, else `~/.config/llmclient/config.toml` (`$XDG_CONFIG_HOME` respected). The
`llmclient` command reads it always; a library reads it only when asked, so no program changes behaviour because a
file appeared in a home directory:

```python
from llmclient import Client
from llmclient.config import client_options

client = Client(**client_options())        # {} when there is no file
```

```toml
default_model = "ollama/qwen2:1.5b"
ledger = "~/.local/share/llmclient/ledger.db"   # a path or "sqlite:///…"; also LLMCLIENT_LEDGER

[aliases]
fast = "ollama/qwen2:1.5b"
smart = "deepseek/deepseek-chat"

[providers.ollama]
host = "http://gpu-box:11434"

[providers.vllm]
driver = "openai-compatible"
base_url = "http://gpu-box:8000/v1"

[prices."vllm/*"]
input_cost_per_token = "0"
output_cost_per_token = "0"

[[routes.chat]]                  # a model group: `llmclient chat -m chat`, `client.chat(..., model="chat")`
model = "deepseek/deepseek-chat"
rpm = 60
tpm = 100000

[[routes.chat]]
model = "vllm/qwen2.5-7b"
weight = 2
```

A group with a strategy or fallbacks is a table: `[routes.chat]` with `strategy = "latency"`, `fallbacks = [...]`
and `[[routes.chat.deployments]]` (see the Routing page).

Keys belong in the environment (`OPENAI_API_KEY`, `DEEPSEEK_API_KEY`, …); a file that holds an `api_key` is read,
but only when it is not readable by other users.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from llmclient.errors import ConfigurationError

KNOWN_KEYS = frozenset({"default_model", "aliases", "providers", "prices", "ledger", "timeout", "retry", "routes"})


def config_path() -> Path:
    """Where the configuration file is looked for."""
    explicit = os.environ.get("LLMCLIENT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "llmclient" / "config.toml"


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The parsed file, or {} when there is none; unknown keys and bad TOML are a `ConfigurationError`."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    target = Path(path).expanduser() if path is not None else config_path()
    if not target.exists():
        if path is not None or os.environ.get("LLMCLIENT_CONFIG"):
            raise ConfigurationError(f"configuration file {target} does not exist")
        return {}
    try:
        data: dict[str, Any] = tomllib.loads(target.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read configuration file {target}: {exc}") from exc
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigurationError(f"{target}: unknown keys {unknown}; known: {sorted(KNOWN_KEYS)}")
    holds_key = any("api_key" in options for options in data.get("providers", {}).values()) or any(
        "api_key" in deployment for deployment in _deployments(data.get("routes", {}))
    )
    if holds_key and os.name == "posix" and target.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ConfigurationError(f"{target} holds an api_key but other users can read it: chmod 600 {target}")
    return data


def client_options(path: str | Path | None = None) -> dict[str, Any]:
    """Keyword arguments for `Client` from the configuration file (and `LLMCLIENT_LEDGER`)."""
    data = load_config(path)
    options: dict[str, Any] = {}
    for key in ("default_model", "aliases", "providers", "prices", "timeout", "retry", "routes"):
        if key in data:
            options[key] = data[key]
    ledger = os.environ.get("LLMCLIENT_LEDGER") or data.get("ledger")
    if ledger:
        text = str(ledger)
        path_part = text.removeprefix("sqlite:///")
        options["ledger"] = f"sqlite:///{Path(path_part).expanduser()}"
    return options


def _deployments(routes: Any) -> list[Any]:
    """Every deployment table of the file's `routes` (a group is a list of them, or a table with `deployments`)."""
    groups = routes.values() if isinstance(routes, dict) else []
    found = [g.get("deployments", []) if isinstance(g, dict) else g for g in groups]
    return [d for group in found if isinstance(group, list) for d in group if isinstance(d, dict)]
