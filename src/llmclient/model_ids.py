"""Model ids: `"provider/model"` (or `"provider:model"`), aliases and the default model, parsed in one place.

The client, the price table's callers, the ledger's `reprice`, the CLI and the LangChain adapter all read ids
through `ModelId.parse`, so an id that works in one works in all of them.

```python
from llmclient.model_ids import ModelId, ModelResolver

assert ModelId.parse("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini")
assert ModelId.parse("ollama/qwen2:1.5b") == ModelId("ollama", "qwen2:1.5b")
assert str(ModelId.parse("fake:org/model")) == "fake/org/model"

resolver = ModelResolver(aliases={"fast": "fake/small"}, default_model="fast")
assert resolver.resolve(None) == ("fake", "small")
```
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from llmclient.drivers import is_known_provider, known_providers
from llmclient.errors import ConfigurationError, UnknownProviderError

_MAX_ALIAS_HOPS = 8  # aliases may point at aliases; a cycle stops here
_MAX_RESOLVED = 1024  # resolved ids kept: more than a program names, few enough that a flood of ids stays small


class ModelId(NamedTuple):
    """A provider name and the model name the provider knows (`ModelId("ollama", "qwen2:1.5b")`).

    A tuple, so `provider, model = model_id` and comparisons with `("ollama", "qwen2:1.5b")` work.
    """

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        is_provider: Callable[[str], bool] = is_known_provider,
        providers: Iterable[str] = (),
    ) -> ModelId:
        """Split `"provider/model"` at the first `/`, or `"provider:model"` at the first `:` when the part before it
        is a provider (so `"ollama/qwen2:1.5b"` keeps its tag).

        Args:
            text: The model id.
            is_provider: Whether a name is a provider (built-ins and installed entry points by default).
            providers: Further provider names (those a `Client` configures under names of their own).

        Raises:
            UnknownProviderError: The id names no provider, or one that is not known.
        """
        extra = frozenset(providers)
        for separator in ("/", ":"):
            provider, found, name = text.partition(separator)
            if found and name and (provider in extra or is_provider(provider)):
                return cls(provider, name)
        known = ", ".join(sorted({*known_providers(), *extra}))
        if "/" in text or ":" in text:
            prefix = text.partition("/")[0] if "/" in text else text.partition(":")[0]
            raise UnknownProviderError(f"unknown provider {prefix!r} in {text!r}; known providers: {known}")
        raise UnknownProviderError(f"model id {text!r} names no provider; write 'provider/model', one of: {known}")


class ModelResolver:
    """Turns what a call says (an id, an alias, or nothing) into a `ModelId`, caching each answer.

    Args:
        aliases: Short names for ids; an alias may name another alias.
        default_model: The id used when a call names none; else the `LLMCLIENT_MODEL` environment variable.
        providers: Provider names configured under names of their own (`Client(providers={"gpu-box": ...})`).
    """

    def __init__(
        self,
        *,
        aliases: Mapping[str, str] | None = None,
        default_model: str | None = None,
        providers: Iterable[str] = (),
    ) -> None:
        self.aliases = dict(aliases or {})
        self.default_model = default_model
        self._providers = frozenset(providers)
        self._resolved: dict[str, ModelId] = {}  # at most `_MAX_RESOLVED` ids and aliases, as callers wrote them

    def resolve(self, model: str | None) -> ModelId:
        """The `ModelId` for `model`, an alias, or (for None) the default model.

        Raises:
            ConfigurationError: No model given and no default configured.
            UnknownProviderError: The id names no known provider.
        """
        text = model or self.default_model or os.environ.get("LLMCLIENT_MODEL")
        if not text:
            raise ConfigurationError(
                "no model given: pass model='provider/model', Client(default_model=...) or set LLMCLIENT_MODEL"
            )
        cached = self._resolved.get(text)
        if cached is not None:
            return cached
        if len(self._resolved) >= _MAX_RESOLVED:  # ids may come from a service's own callers: the oldest goes
            self._resolved.pop(next(iter(self._resolved)))
        target = text
        for _ in range(_MAX_ALIAS_HOPS):
            if target not in self.aliases:
                break
            target = self.aliases[target]
        resolved = ModelId.parse(target, providers=self._providers)
        self._resolved[text] = resolved
        return resolved
