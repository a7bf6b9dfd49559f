"""The driver contract, the one seam between the call pipeline and a backend, and the registry of drivers.

A driver turns a `ChatRequest` into its backend's wire format and back (`_to_wire` / `_from_wire`) and raises
typed errors. It never retries, prices, records, limits or routes: the pipeline does those once, for every driver.
Subclass `BaseDriver` and implement `chat` (and whatever else the backend has); its `capabilities` tell the
pipeline what the driver can do and how to treat it:

```python
from llmclient import ChatRequest, ChatResponse, Message, Usage
from llmclient.drivers import BaseDriver, Capabilities


class Shout(BaseDriver):
    name = "shout"
    capabilities = Capabilities(self_hosted=True, params=frozenset({"max_tokens"}))

    async def chat(self, request: ChatRequest) -> ChatResponse:
        text = request.messages[-1].text.upper()
        return ChatResponse(
            message=Message(role="assistant", content=text),
            finish_reason="stop",
            usage=Usage(input_tokens=1, output_tokens=1),
            model=request.model,
            provider=self.provider,
        )
```

A driver is constructed as `cls(provider=name, **options)`, where `options` are the user's
`Client(providers={name: {...}})` entry, plus `transport=` and `timeouts=` when its capabilities say `http`.
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
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from llmclient import tokens
from llmclient.errors import ConfigurationError, UnknownProviderError, UnsupportedCapabilityError, did_you_mean
from llmclient.types import CHAT_PARAMS, ChatChunk, TokenCount, ToolCallDelta

if TYPE_CHECKING:  # the contract's signatures only
    from pydantic import SecretStr

    from llmclient.types import ChatRequest, ChatResponse, EmbedResponse, Message, Tool


@dataclass(frozen=True)
class EmbeddingLimits:
    """What one embeddings request of a provider may hold; `Client.embed` splits its inputs to fit.

    Args:
        max_inputs_per_request: The most inputs in one request.
        max_tokens_per_request: The most tokens summed over one request's inputs (None: no limit).
        max_input_tokens: The most tokens in one input (None: no limit known; a price entry's
            `max_input_tokens` applies too, and the smaller wins).
        allow_empty_inputs: Whether an empty string is a valid input.
    """

    max_inputs_per_request: int = 2048
    max_tokens_per_request: int | None = None
    max_input_tokens: int | None = None
    allow_empty_inputs: bool = True


DEFAULT_LIMITS = EmbeddingLimits()


StructuredOutputMode = Literal["json_schema", "json_object", "prompt"]


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do; the pipeline decides from these, never from a provider's name.

    Args:
        http: The driver speaks HTTP: it is built with the client's `transport=` and `timeouts=`.
        self_hosted: It runs models on the user's own hardware or server, so an unpriced model costs 0 (not None)
            and budgets admit it.
        stream: It streams replies (else `stream` raises `UnsupportedCapabilityError` before sending).
        tools: It accepts tool definitions.
        embed: It has an embeddings API.
        embed_dimensions: Its `embed` honours `dimensions=` (else the client refuses the option).
        structured_output: How `response_model` is enforced: "json_schema" (the backend validates a schema),
            "json_object" (JSON mode plus the schema in the prompt), or "prompt" (the schema in the prompt only).
        params: The request parameters (`llmclient.types.CHAT_PARAMS`) the backend accepts; others are dropped
            with a warning, or refused under `strict_params`. A driver receives only these.
        embedding_encoding: The encoding its embeddings are requested in on the wire (`"float"`, `"base64"`),
            where the request names one; traces report it as `gen_ai.request.encoding_formats`.
        default_max_tokens: The output cap the driver sends when a call gives no `max_tokens` (Anthropic's API
            requires one); a budget reserves for it instead of refusing the call. None: the driver sends none,
            and the model's own maximum (the catalog's `max_output_tokens`) bounds the output.
        max_output_tokens: The most output any call to the backend can produce, when the backend has one ceiling
            for every model; a budget falls back to it when neither the call nor the catalog bounds the output.
    """

    http: bool = False
    self_hosted: bool = False
    stream: bool = True
    tools: bool = True
    embed: bool = False
    embed_dimensions: bool = True
    structured_output: StructuredOutputMode = "json_schema"
    params: frozenset[str] = field(default_factory=lambda: frozenset(CHAT_PARAMS))
    embedding_encoding: str | None = None
    default_max_tokens: int | None = None
    max_output_tokens: int | None = None


class DeprecatedModelWarning(FutureWarning):
    """A model name its provider has retired or renamed; the driver sends the name the provider says it became."""


@runtime_checkable
class Driver(Protocol):
    """The interface every backend implements; `BaseDriver` supplies the defaults."""

    name: ClassVar[str]
    """The provider name the driver registers as (`"ollama"`)."""
    capabilities: Capabilities
    """Read from the class (`http`, when building the driver) and from the instance (everything else)."""
    embedding_limits: ClassVar[EmbeddingLimits]
    """What one embeddings request may hold; the client splits batches to fit."""
    provider: str
    """The provider name this instance serves (the driver's name, or the user's own: `"gpu-box"`)."""
    api_key: SecretStr | None
    """The key the driver sends, if any: the client redacts it from tool errors and messages."""
    endpoint: str | None
    """The base URL requests go to (None for in-process engines); traces report it as `server.address`/`.port`."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One complete reply."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The reply as chunks; the last carries `finish_reason` (and `usage` where the backend reports it)."""
        ...

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        """One vector per input, in input order; `dimensions` shortens them where the model supports it.

        An empty `inputs` returns a (0, d) array without any I/O (d = the model's length where known, else 0).
        The client batches (within `embedding_limits`), caches, prices and records.
        """
        ...

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """The prompt tokens `messages` and `tools` would take on `model`."""
        ...

    async def count_text(self, model: str, text: str) -> TokenCount:
        """The tokens of plain text on `model` (no chat framing)."""
        ...

    async def aclose(self) -> None:
        """Release connections, models and threads."""
        ...


class BaseDriver:
    """Defaults for every part of the contract but `chat`: no embeddings, tiktoken-estimated counts, a stream of
    one chunk made from `chat`, nothing to close.

    Args:
        provider: The provider name this instance serves (defaults to the driver's `name`).
    """

    name: ClassVar[str] = "base"
    capabilities: Capabilities = Capabilities()
    embedding_limits: ClassVar[EmbeddingLimits] = DEFAULT_LIMITS
    api_key: SecretStr | None = None
    endpoint: str | None = None

    def __init__(self, *, provider: str | None = None) -> None:
        self.provider = provider or self.name

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One complete reply; every driver implements this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement chat()")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The reply of `chat` as one chunk: drivers whose backend streams override this."""
        response = await self.chat(request)
        yield ChatChunk(
            delta=response.text,
            reasoning_delta=response.message.reasoning or "",
            reasoning_signature=response.message.reasoning_signature,
            tool_call_deltas=[
                ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.raw_arguments)
                for i, c in enumerate(response.tool_calls)
            ],
            finish_reason=response.finish_reason,
            usage=response.usage,
            model=response.model,
            request_id=response.request_id,
        )

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        """No embeddings unless the driver has them."""
        raise UnsupportedCapabilityError(f"{self.provider} has no embeddings API", provider=self.provider, model=model)

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """tiktoken's count with OpenAI's chat framing, flagged as an estimate."""
        estimate = tokens.count_messages(messages, model, tools)
        return TokenCount(tokens=estimate.tokens, exact=False, tokenizer=estimate.tokenizer)

    async def count_text(self, model: str, text: str) -> TokenCount:
        """tiktoken's count of `text` with the encoding its model name implies (OpenAI's own models count exactly),
        or the flagged character-ratio estimate for other names or without tiktoken's files."""
        return tokens.count_text(text, model)

    async def aclose(self) -> None:
        """Nothing to release."""
        return None


_BUILTINS: dict[str, str] = {
    "openai": "llmclient.drivers.openai:OpenAIDriver",
    "deepseek": "llmclient.drivers.openai.deepseek:DeepSeekDriver",
    "openai-compatible": "llmclient.drivers.openai:OpenAICompatibleDriver",
    "ollama": "llmclient.drivers.ollama:OllamaDriver",
    "anthropic": "llmclient.drivers.anthropic:AnthropicDriver",
    "gemini": "llmclient.drivers.gemini:GeminiDriver",
    "transformers": "llmclient.drivers.local.hf:TransformersDriver",
    "llamacpp": "llmclient.drivers.local.llamacpp:LlamaCppDriver",
    "fake": "llmclient.drivers.fake:FakeDriver",
}

ENTRY_POINT_GROUP = "llmclient.drivers"

# Drivers registered in this process with `register_driver` (an application's own, or a test's).
_REGISTERED: dict[str, type[Any]] = {}


def register_driver(cls: type[Any], *, name: str | None = None) -> type[Any]:
    """Make a driver class available under `name` (its `name` attribute by default) in this process.

    The in-process twin of the `llmclient.drivers` entry point, for a driver that lives in an application rather
    than in a package; it may also replace a built-in. Returns the class, so it works as a decorator.
    """
    _REGISTERED[name or cls.name] = cls
    return cls


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points  # slow to import; only needed for names that are not built in

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_providers() -> list[str]:
    """Every provider name a model id may start with: built-ins, registered drivers and installed entry points."""
    return sorted({*_BUILTINS, *_REGISTERED, *_entry_points()})


def is_known_provider(name: str) -> bool:
    """Whether `name` is a built-in, registered or installed provider."""
    return name in _BUILTINS or name in _REGISTERED or name in _entry_points()


def driver_class(name: str) -> type[Any]:
    """The driver class registered as `name` (imported on first use, so heavy libraries load only when needed)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
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


def is_self_hosted(provider: str) -> bool:
    """Whether a registered provider's driver runs models the user hosts (False for unknown names)."""
    try:
        return bool(driver_class(provider).capabilities.self_hosted)
    except (UnknownProviderError, ImportError):
        return False


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse now what `create_driver` would refuse on the provider's first call: a driver name that is not
    registered, and an option its driver does not take, each with the closest name there is.

    Raises:
        UnknownProviderError: `driver = "openai-compat"`, or a provider name of your own without a `driver`.
        ConfigurationError: An option the driver does not take (`api_kee`).
    """
    kind = options.get("driver", name)
    try:
        cls = driver_class(kind)
    except UnknownProviderError:
        known = known_providers()
        if "driver" in options:
            raise UnknownProviderError(
                f"provider {name!r}: unknown driver {kind!r}{did_you_mean(str(kind), known)}; the drivers: "
                f"{', '.join(known)}",
                provider=name,
            ) from None
        raise UnknownProviderError(
            f"provider {name!r} is not a driver's name{did_you_mean(name, known)}: give its options a driver "
            f"(driver = 'openai-compatible' for a server that speaks OpenAI's API); the drivers: {', '.join(known)}",
            provider=name,
        ) from None
    accepted = _options_taken(cls)
    if accepted is None:
        return  # a driver that takes any option checks them itself
    for key in options:
        if key != "driver" and key not in accepted:
            raise ConfigurationError(
                f"provider {name!r}: unknown option {key!r}{did_you_mean(str(key), accepted)}; the {kind} driver "
                f"takes: {', '.join(sorted(accepted - {'provider', 'transport', 'timeouts'}))}",
                provider=name,
            )


def _options_taken(cls: type[Any]) -> set[str] | None:
    """The keyword options a driver class's constructor takes, following `**options` up to the base class that
    names them (a driver built on `HTTPDriver` passes its options on); None when the driver takes any option and
    checks them itself (its `**options` reach no base class but `BaseDriver`, which takes only `provider`)."""
    import inspect  # the constructors' own parameters are the options a driver takes

    taken: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is BaseDriver or klass is object:
            return None
        parameters = inspect.signature(init).parameters
        taken |= {
            key
            for key, parameter in parameters.items()
            if key != "self" and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        }
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters.values()):
            return taken
    return taken


def create_driver(name: str, options: Mapping[str, Any], *, transport: Any = None, timeouts: Any = None) -> Driver:
    """Build the driver for provider `name` from its options (`Client(providers={name: options})`).

    `options["driver"]` names the registered driver when `name` is the user's own (`"gpu-box"`); a driver whose
    capabilities say `http` also receives the client's `transport` and `timeouts` unless the options set them.
    """
    options = dict(options)
    kind = options.pop("driver", name)
    cls = driver_class(kind)
    options.setdefault("provider", name)
    if cls.capabilities.http:
        options.setdefault("transport", transport)
        options.setdefault("timeouts", timeouts)
    try:
        driver: Driver = cls(**options)
    except TypeError as exc:
        raise ConfigurationError(f"bad options for provider {name!r}: {exc}", provider=name) from exc
    return driver
