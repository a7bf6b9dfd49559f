"""The options of a chat call, declared once: `chat`, `stream`, `run` and their `SyncClient` twins all take them.

They are keyword arguments typed by `ChatOptions` (PEP 692), so a type checker flags `temprature=0.2` or
`max_tokens="ten"`, and at run time an unknown name raises `TypeError` as a misspelt keyword would. The sampling
parameters among them are `llmclient.types.SAMPLING_PARAMS`: their types and ranges are `ChatRequest`'s fields, and
each driver's `Capabilities.params` says which it accepts (the rest are dropped with a warning).

```python
from llmclient import Client

async with Client() as client:
    reply = await client.chat("one two", model="fake/echo", temperature=0.2, max_tokens=8, tags=["demo"])
    assert reply.applied_params == {"temperature": 0.2, "max_tokens": 8}
```
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

ToolChoice = Literal["auto", "none", "required"] | str
"""`"auto"`, `"none"`, `"required"`, or the name of one of the tools given (hence also any `str`)."""


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
    response_format: Mapping[str, Any] | None
    """The provider's response format object, e.g. `{"type": "json_object"}`."""
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
