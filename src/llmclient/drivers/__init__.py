"""The driver protocol, the one seam between the `Client` and a backend, and the registry of drivers.

A driver turns a `ChatRequest` into its backend's wire format and back (`_to_wire` / `_from_wire`) and raises
typed errors. It never retries, prices or records: the `Client` does those once, for every driver.

Third-party drivers register under the entry-point group `llmclient.drivers`:

```toml
[project.entry-points."llmclient.drivers"]
mybackend = "mypackage.driver:MyDriver"
```
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from llmclient.errors import ConfigurationError, UnknownProviderError
from llmclient.types import ChatChunk, ChatRequest, ChatResponse, EmbedResponse, Message, TokenCount, Tool


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do, and which uniform sampling parameters its backend accepts."""

    chat: bool = True
    stream: bool = True
    tools: bool = True
    embed: bool = False
    exact_tokens: bool = False
    stream_usage: bool = True
    structured_output: str = "json_schema"
    """How `response_model` is enforced: "json_schema" (the provider validates a schema), "json_object" (JSON
    mode plus the schema in the prompt), or "prompt" (the schema in the prompt only)."""
    params: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {"temperature", "top_p", "top_k", "max_tokens", "stop", "seed", "response_format"}
        )
    )


@runtime_checkable
class Driver(Protocol):
    """The interface every backend implements."""

    name: ClassVar[str]
    capabilities: Capabilities

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One complete reply."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The reply as chunks; the last carries `finish_reason` (and `usage` where the backend reports it)."""
        ...

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        """One vector per input, in input order; `dimensions` shortens them where the model supports it.

        An empty `inputs` returns a (0, d) array without any I/O (d = the model's length where known, else 0).
        The `Client` batches, caches, prices and records; a driver may declare `embedding_limits`
        (`llmclient.embedding.EmbeddingLimits`) so that batches fit its provider, and is passed `dimensions` only
        when the caller gives it.
        """
        ...

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """The prompt tokens `messages` and `tools` would take on `model`."""
        ...

    async def aclose(self) -> None:
        """Release connections, models and threads."""
        ...


_BUILTINS: dict[str, str] = {
    "openai": "llmclient.drivers.openai:OpenAIDriver",
    "deepseek": "llmclient.drivers.deepseek:DeepSeekDriver",
    "openai-compatible": "llmclient.drivers.openai:OpenAICompatibleDriver",
    "ollama": "llmclient.drivers.ollama:OllamaDriver",
    "transformers": "llmclient.drivers.hf:TransformersDriver",
    "llamacpp": "llmclient.drivers.llamacpp:LlamaCppDriver",
    "fake": "llmclient.drivers.fake:FakeDriver",
}

ENTRY_POINT_GROUP = "llmclient.drivers"


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points  # slow to import; only needed for names that are not built in

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_providers() -> list[str]:
    """Every provider name a model id may start with: built-ins plus installed entry points."""
    return sorted({*_BUILTINS, *_entry_points()})


def is_known_provider(name: str) -> bool:
    """Whether `name` is a built-in or installed provider."""
    return name in _BUILTINS or name in _entry_points()


def driver_class(name: str) -> type[Any]:
    """The driver class registered as `name` (imported on first use, so heavy libraries load only when needed)."""
    target = _BUILTINS.get(name)
    if target is not None:
        module_name, _, attr = target.partition(":")
        cls: type[Any] = getattr(importlib.import_module(module_name), attr)
        return cls
    plugin = _entry_points().get(name)
    if plugin is None:
        raise UnknownProviderError(
            f"unknown provider {name!r}; known providers: {', '.join(known_providers())} "
            "(or register one under the 'llmclient.drivers' entry-point group)"
        )
    loaded: type[Any] = plugin.load()
    return loaded


def create_driver(name: str, options: Mapping[str, Any]) -> Driver:
    """Build the driver for provider `name` from its options (`Client(providers={name: options})`)."""
    options = dict(options)
    kind = options.pop("driver", name)
    cls = driver_class(kind)
    try:
        driver: Driver = cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"bad options for provider {name!r}: {exc}", provider=name) from exc
    return driver
