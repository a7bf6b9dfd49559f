"""The options of a chat call, declared once: `chat`, `stream`, `run` and their `SyncClient` twins all take them.

They are keyword arguments typed by `ChatOptions` (PEP 692), so a type checker flags `temprature=0.2` or
`max_tokens="ten"`, and at run time an unknown name raises `TypeError` as a misspelt keyword would. The request
parameters among them are `llmclient.types.CHAT_PARAMS`, with OpenAI's names (as openai-python takes them): their
types and ranges are `ChatRequest`'s fields, and each driver's `Capabilities.params` says which it accepts (the
rest are dropped with a warning, or refused under `strict_params`), as do a model's rules in the price catalog
(OpenAI's reasoning models take no `temperature`, for one).

```python
from llmclient import Client

async with Client() as client:
    reply = await client.chat("one two", model="fake/echo", temperature=0.2, max_tokens=8, tags=["demo"])
    assert reply.applied_params == {"temperature": 0.2, "max_tokens": 8}
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

ToolChoice = Literal["auto", "none", "required"] | str
"""`"auto"`, `"none"`, `"required"`, or the name of one of the tools given (hence also any `str`)."""
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
"""How much a reasoning model thinks (OpenAI's values; DeepSeek maps them onto its own, Ollama onto `think`)."""
ServiceTier = Literal["auto", "default", "flex", "scale", "priority", "fast"]
"""OpenAI's processing tiers; `flex` and `priority` are priced at their own rates."""
Verbosity = Literal["low", "medium", "high"]
PromptCacheRetention = Literal["in_memory", "24h"]
Modality = Literal["text", "audio"]


class RunStepOptions(TypedDict, total=False):
    """What every step of `Client.run` passes to `chat` (the tools are `run`'s own argument)."""

    model: str | None
    """`"provider/model"`, `"provider:model"` or an alias; else the client's default."""
    tool_choice: ToolChoice | None
    """`"auto"`, `"none"`, `"required"` or the name of one tool."""
    temperature: float | None
    """Sampling temperature (0–2)."""
    top_p: float | None
    """Nucleus sampling mass (0–1]."""
    top_k: int | None
    """Sample from the k most likely tokens (dropped where the provider lacks it)."""
    max_tokens: int | None
    """The most tokens to generate."""
    stop: str | Sequence[str] | None
    """A stop string or a list of them."""
    seed: int | None
    """A seed for reproducible sampling where the provider supports it."""
    max_completion_tokens: int | None
    """OpenAI's newer name for `max_tokens` (give one of them)."""
    response_format: Mapping[str, Any] | None
    """The provider's response format object, e.g. `{"type": "json_object"}`."""
    frequency_penalty: float | None
    """Penalise tokens by how often they appeared so far (-2 to 2)."""
    presence_penalty: float | None
    """Penalise tokens that appeared at all so far (-2 to 2)."""
    logit_bias: Mapping[str, int] | None
    """Token id (as a string) → bias from -100 to 100."""
    logprobs: bool | None
    """Return the log probability of each output token (`reply.logprobs`, `chunk.logprobs`)."""
    top_logprobs: int | None
    """With `logprobs`: also the k most likely tokens at each position (0–20)."""
    n: int | None
    """How many replies to generate (`reply.choices`); each is billed."""
    reasoning_effort: ReasoningEffort | None
    """How much a reasoning model thinks before it answers."""
    verbosity: Verbosity | None
    """How long the answer should be (OpenAI's GPT-5 and later)."""
    thinking: bool | None
    """Thinking on or off, where the model can do both (DeepSeek's `thinking`, Ollama's `think`)."""
    service_tier: ServiceTier | None
    """OpenAI's processing tier; the reply's `service_tier` says which served it (and priced it)."""
    user: str | None
    """A stable id of your end user (OpenAI now prefers `safety_identifier` and `prompt_cache_key`)."""
    safety_identifier: str | None
    """A stable id of your end user, for the provider's abuse detection (at most 64 characters)."""
    prompt_cache_key: str | None
    """Groups requests that share a prompt prefix, for better cache hits."""
    prompt_cache_retention: PromptCacheRetention | None
    """How long a cached prompt prefix is kept (`"in_memory"`, `"24h"`)."""
    metadata: Mapping[str, str] | None
    """Up to 16 string pairs stored with the completion (with `store`)."""
    store: bool | None
    """Let the provider store the completion (OpenAI's distillation and evals)."""
    modalities: Sequence[Modality] | None
    """Output modalities, e.g. `["text", "audio"]` (with `audio`)."""
    audio: Mapping[str, Any] | None
    """Audio output options: `{"voice": "alloy", "format": "wav"}`."""
    prediction: Mapping[str, Any] | None
    """A predicted output (`{"type": "content", "content": ...}`) that speeds up regenerating known text."""
    web_search_options: Mapping[str, Any] | None
    """Web search for search models (`{"search_context_size": "low"}`)."""
    parallel_tool_calls: bool | None
    """Whether the model may call several tools in one reply (where supported)."""
    extra_body: Mapping[str, Any] | None
    """Provider-specific fields merged into the request body as they are."""
    max_retries: int | None
    """Overrides the client's retry count for this call."""
    timeout: float | None
    """This call's overall deadline in seconds (admission, retries and the whole stream included); None: the
    client's `timeout`."""
    tags: Sequence[str]
    """Labels stored with the ledger record."""


class ChatOptions(RunStepOptions, total=False):
    """The keyword arguments of `Client.chat` and `Client.stream` (each optional)."""

    tools: Iterable[Any] | None
    """`Tool`s, functions or OpenAI tool dicts the model may call."""


CHAT_OPTIONS: frozenset[str] = frozenset(ChatOptions.__annotations__) | frozenset(RunStepOptions.__annotations__)
"""Every option name `chat` and `stream` accept."""


def chat_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option by name, None (or no tags) where not given; an unknown name is a `TypeError`, as it would be
    for an explicit keyword parameter."""
    unknown = sorted(set(options) - CHAT_OPTIONS)
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")
    given: dict[str, Any] = dict.fromkeys(CHAT_OPTIONS)
    given["tags"] = ()
    given.update(options)
    return given


def list_options(method: Callable[..., Any], options: type[Any]) -> None:
    """Give `method`, whose options arrive as `**options: Unpack[<TypedDict>]`, a signature that lists each option
    as a keyword (default None), so `help()` and `inspect.signature` show `temperature` and the rest. Type checkers
    read the TypedDict itself; this is for the people reading the help."""
    import inspect
    import typing

    signature = inspect.signature(method)
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    listed = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in typing.get_type_hints(options).items()
        if name not in signature.parameters
    ]
    method.__signature__ = signature.replace(parameters=[*kept, *listed])  # type: ignore[attr-defined]
