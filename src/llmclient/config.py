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
smart = "deepseek/deepseek-flash"

[providers.ollama]
host = "http://gpu-box:11434"

[providers.vllm]
driver = "openai-compatible"
base_url = "http://gpu-box:8000/v1"

[prices."vllm/*"]
input_cost_per_token = "0"
output_cost_per_token = "0"

[[routes.chat]]                  # a model group: `llmclient chat -m chat`, `client.chat(..., model="chat")`
model = "deepseek/deepseek-flash"
rpm = 60
tpm = 100000

[[routes.chat]]
model = "vllm/qwen2.5-7b"
weight = 2
```

A group with a strategy or fallbacks is a table: `[routes.chat]` with `strategy = "latency"`, `fallbacks = [...]`
and `[[routes.chat.deployments]]` (see the Routing page).

Keys belong in the environment (`OPENAI_API_KEY`, `DEEPSEEK_API_KEY`, …); a file that holds an `api_key` is read,
but only when it is not readable by other users. `timeout` is seconds (> 0), `retry` a retry count or a table of
`RetryPolicy` fields (`retry = {max_retries = 1, initial_backoff = 0.2}`). Values are checked when the file is read:
a wrong one is a `ConfigurationError` naming the key and what it should be.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from llmclient.errors import ConfigurationError, did_you_mean


class RetrySettings(BaseModel):
    """`retry = {…}`: the `RetryPolicy` fields a file may set."""

    model_config = ConfigDict(extra="forbid")

    max_retries: NonNegativeInt = 2
    initial_backoff: float = Field(default=0.5, ge=0)
    max_backoff: float = Field(default=8.0, ge=0)
    jitter: bool = True
    max_retry_after: float = Field(default=60.0, ge=0)


class ConfigFile(BaseModel):
    """The configuration file's schema: every key optional, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    default_model: str | None = None
    aliases: dict[str, str] = Field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    prices: dict[str, Any] = Field(default_factory=dict)
    """Checked by `PriceTable` when the client is made (entries may be tables, numbers or strings)."""
    ledger: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    retry: Any = None
    """A retry count, or a table of `RetrySettings`: checked by `check`, so an error names one branch only."""
    routes: dict[str, Any] = Field(default_factory=dict)
    """Model groups: checked by `Client(routes=...)` when the client is made (see the Routing page)."""

    def check(self) -> None:
        """The checks a plain field cannot express; raises `ValidationError` like field validation."""
        if isinstance(self.retry, dict):
            RetrySettings.model_validate(self.retry)
        elif self.retry is not None:
            _RetryCount.model_validate({"retry": self.retry})


class _RetryCount(BaseModel):
    model_config = ConfigDict(strict=True)

    retry: NonNegativeInt


KNOWN_KEYS = frozenset(ConfigFile.model_fields)
_FIELDS = {"retry": frozenset(RetrySettings.model_fields)}  # the tables whose keys are checked, for suggestions


def _problems(target: Path, error: ValidationError, prefix: str = "") -> str:
    """One line per bad value: `key.sub: what is wrong (got …)`."""
    lines = []
    for problem in error.errors(include_url=False):
        loc = [str(part) for part in problem["loc"]]
        where = ".".join(dict.fromkeys([prefix, *loc] if prefix and loc[:1] != [prefix] else loc))
        got = f" (got {problem['input']!r})" if problem["type"] != "extra_forbidden" else ""
        if problem["type"] == "extra_forbidden":
            message = "unknown key" + did_you_mean(loc[-1], _FIELDS.get(prefix or loc[0], ()))
        else:
            message = problem["msg"].lower()
        lines.append(f"  {where or '(file)'}: {message}{got}")
    unique = list(dict.fromkeys(lines))
    return f"{target}: {len(unique)} bad value{'s' if len(unique) > 1 else ''}\n" + "\n".join(unique)


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
        named = ", ".join(f"{key!r}{did_you_mean(key, KNOWN_KEYS)}" for key in unknown)
        raise ConfigurationError(f"{target}: unknown key {named}; known: {', '.join(sorted(KNOWN_KEYS))}")
    try:
        ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(_problems(target, exc)) from None
    try:
        ConfigFile.model_validate(data).check()
    except ValidationError as exc:
        raise ConfigurationError(_problems(target, exc, prefix="retry")) from None
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
    for key in ("default_model", "aliases", "providers", "prices", "timeout", "routes"):
        if key in data:
            options[key] = data[key]
    if isinstance(data.get("retry"), dict):
        from llmclient.lifecycle.retry import RetryPolicy

        options["retry"] = RetryPolicy(**RetrySettings.model_validate(data["retry"]).model_dump())
    elif "retry" in data:
        options["retry"] = data["retry"]
    ledger = os.environ.get("LLMCLIENT_LEDGER") or data.get("ledger")
    if ledger:
        text = str(ledger)
        if text.startswith(("postgresql://", "postgres://")):  # the fleet's shared ledger, as it is
            options["ledger"] = text
        else:
            options["ledger"] = f"sqlite:///{Path(text.removeprefix('sqlite:///')).expanduser()}"
    return options


def _deployments(routes: Any) -> list[Any]:
    """Every deployment table of the file's `routes` (a group is a list of them, or a table with `deployments`)."""
    groups = routes.values() if isinstance(routes, dict) else []
    found = [g.get("deployments", []) if isinstance(g, dict) else g for g in groups]
    return [d for group in found if isinstance(group, list) for d in group if isinstance(d, dict)]
