"""Typed values that cross the public API: messages, tools, requests, responses, usage and cost.

This module imports nothing else from llmclient, so every other module can depend on it.
OpenAI-format dicts are accepted wherever a `Message`, `ToolCall` or `Tool` is expected:

```python
from llmclient import Message

msg = Message.model_validate({"role": "user", "content": "Hello"})
assert msg.text == "Hello"
```
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from typing_extensions import TypeVar

# Re-exported: these live in modules of their own to keep this one readable; `llmclient.types` names them all.
from llmclient.content import AudioPart as AudioPart
from llmclient.content import FilePart as FilePart
from llmclient.content import TokenLogprob as TokenLogprob
from llmclient.content import parts_from_openai
from llmclient.options import Modality, PromptCacheRetention, ReasoningEffort, ServiceTier, Verbosity
from llmclient.usage import MAX_REPORTED_TOKENS as MAX_REPORTED_TOKENS
from llmclient.usage import Cost as Cost
from llmclient.usage import TokenCount as TokenCount
from llmclient.usage import Usage as Usage
from llmclient.usage import reported_tokens as reported_tokens

if TYPE_CHECKING:
    import numpy as np

    FloatMatrix = np.ndarray[Any, np.dtype[np.float32]]
else:
    FloatMatrix = Any  # numpy is imported on first use, keeping `import llmclient` light

Role = Literal["system", "developer", "user", "assistant", "tool"]
"""`developer` is OpenAI's name for instructions to reasoning models; drivers of providers without it send `system`."""
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]


class _Model(BaseModel):
    # defer_build: validators are built on first use, not at import (about 15 ms of `import llmclient`).
    model_config = ConfigDict(extra="forbid", frozen=False, defer_build=True)


class TextPart(_Model):
    """A text part of a message's content."""

    type: Literal["text"] = "text"
    text: str


class ImageURL(_Model):
    """An image given by URL or as a `data:` URL with base64 bytes."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Model):
    """An image part of a message's content, in OpenAI's shape."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]


class ToolCall(_Model):
    """A call the model asks for: `arguments` parsed, `raw_arguments` exactly as the model sent them.

    Accepts the OpenAI wire shape too:

    ```python
    from llmclient import ToolCall

    call = ToolCall.model_validate(
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    )
    assert call.arguments == {"a": 1}
    ```
    """

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_wire(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "function" in data:  # OpenAI {"function": {"arguments": "<json>"}}, Ollama {"arguments": {...}}
            function = data["function"]
            data = {"id": data.get("id") or "", "name": function.get("name", ""), **_arguments(function)}
        elif "arguments" in data:
            data = {**data, **_arguments(data)}
        return data

    def to_openai(self) -> dict[str, Any]:
        """This call in OpenAI's wire format (arguments as a JSON string)."""
        raw = self.raw_arguments or json.dumps(self.arguments, ensure_ascii=False)
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": raw}}


def _arguments(data: dict[str, Any]) -> dict[str, Any]:
    arguments = data.get("arguments")
    if isinstance(arguments, str):
        return {"arguments": _parse_arguments(arguments), "raw_arguments": arguments}
    if isinstance(arguments, dict):
        raw = data.get("raw_arguments") or json.dumps(arguments, ensure_ascii=False)
        return {"arguments": arguments, "raw_arguments": raw}
    return {"arguments": {}, "raw_arguments": data.get("raw_arguments", "")}


def _parse_arguments(raw: str) -> dict[str, Any]:
    # Malformed arguments are kept raw (and parsed as {}) so the tool loop can tell the model what was wrong.
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply for the decoder
        return {}
    return value if isinstance(value, dict) else {}


class Message(_Model):
    """One chat message. `content` is text, a list of parts, or None (an assistant message with tool calls).

    OpenAI-format dicts are accepted as they are, including openai-python's own `message.model_dump()` of a reply
    (with `refusal`, `annotations`, `audio` and `function_call`), `input_audio` and `file` parts (kept as
    `AudioPart` and `FilePart`) and DeepSeek's `reasoning_content`.
    """

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning: str | None = None
    """The model's reasoning (DeepSeek's `reasoning_content`, Ollama's `thinking`). Each driver sends it back only
    where its provider asks for it (DeepSeek: in a turn that called tools in thinking mode; Ollama: as `thinking`)."""
    reasoning_signature: str | None = None
    """An opaque signature some providers attach to the reasoning and want back with it, unchanged."""
    refusal: str | None = None
    """An assistant's refusal to answer (OpenAI's `refusal`), instead of content."""
    annotations: list[dict[str, Any]] | None = None
    """Citations and other notes on an assistant's content (OpenAI's `url_citation` annotations), as sent."""
    audio: dict[str, Any] | None = None
    """An assistant's audio reply (`id`, `data`, `expires_at`, `transcript`); its `id` is sent back in history."""

    @model_validator(mode="before")
    @classmethod
    def _from_openai(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "reasoning_content" in data:
            data.setdefault("reasoning", data.pop("reasoning_content"))
        function_call = data.pop("function_call", None)  # openai-python dumps it as None on every message
        if isinstance(function_call, dict) and not data.get("tool_calls"):  # the deprecated single-call form
            data["tool_calls"] = [{"id": "call_0", "function": function_call}]
        if isinstance(data.get("content"), list):
            data["content"], refusal = parts_from_openai(data["content"])
            if refusal is not None and data.get("refusal") is None:
                data["refusal"] = refusal
            if not data["content"] and refusal is not None:
                data["content"] = None
        return data

    @property
    def text(self) -> str:
        """The text of the content, parts joined; empty when there is none."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class Tool(_Model):
    """A tool the model may call, described by a JSON schema of its parameters.

    ```python
    from llmclient import Tool

    weather = Tool(
        name="get_weather",
        description="Current weather in a city.",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    assert weather.to_openai()["function"]["name"] == "get_weather"
    ```
    """

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_openai(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") == "function" and "function" in data:
            return data["function"]
        return data

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI function-tool shape: `{"type": "function", "function": {...}}`."""
        function: dict[str, Any] = {"name": self.name, "description": self.description}
        function["parameters"] = self.parameters
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


ToolChoice = Literal["auto", "none", "required"] | str


class ChatRequest(_Model):
    """A validated chat request as a driver receives it (`model` without the provider prefix).

    The optional parameters are declared here once, with their types and ranges (OpenAI's names, as openai-python
    takes them); `CHAT_PARAMS` lists them, each driver's `Capabilities.params` says which it accepts, and
    `llmclient.options.ChatOptions` types them for `chat`, `stream` and `run`.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: str
    messages: list[Message]
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    n: int | None = Field(default=None, ge=1, le=128)
    reasoning_effort: ReasoningEffort | None = None
    verbosity: Verbosity | None = None
    thinking: bool | None = None
    service_tier: ServiceTier | None = None
    user: str | None = None
    safety_identifier: str | None = Field(default=None, max_length=64)
    prompt_cache_key: str | None = None
    prompt_cache_retention: PromptCacheRetention | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    modalities: list[Modality] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    extra_body: dict[str, Any] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[Message]) -> list[Message]:
        if not value:
            raise ValueError("messages must not be empty")
        return value


SAMPLING_PARAMS: tuple[str, ...] = ("temperature", "top_p", "top_k", "max_tokens", "stop", "seed", "response_format")
"""The sampling parameters nearly every backend has (local engines included)."""

CHAT_PARAMS: tuple[str, ...] = (
    *SAMPLING_PARAMS,
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "n",
    "reasoning_effort",
    "verbosity",
    "thinking",
    "service_tier",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "metadata",
    "store",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
)
"""Every optional parameter of a chat request that a driver may accept or lack (see `Capabilities.params`); one
that a provider lacks is dropped with a warning, or refused under `strict_params`."""


ParsedT = TypeVar("ParsedT", default=Any)
ModelT = TypeVar("ModelT", bound=BaseModel, default=Any)
"""A `response_model` type (Any when none is given)."""
"""What `ChatResponse.parsed` holds: the `response_model` type for `chat(response_model=City)`, else Any (None)."""


class Choice(_Model):
    """One of several replies to one request (`n > 1`)."""

    index: int = 0
    message: Message
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] | None = None


class ChatResponse(_Model, Generic[ParsedT]):
    """A complete reply: the assistant message plus what it cost and how it was made.

    With `chat(..., response_model=City)` a type checker sees `ChatResponse[City]`, so `reply.parsed` is a `City`.
    """

    message: Message
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] | None = None
    """The generated tokens' log probabilities, when asked for (`logprobs=True`)."""
    choices: list[Choice] = Field(default_factory=list)
    """Every reply, in order, when the provider returned several (`n > 1`); `message`, `finish_reason` and
    `logprobs` are the first's. Empty for a single reply."""
    service_tier: str | None = None
    """The processing tier that served the call, as the provider reports it (OpenAI's `"default"`, `"flex"`,
    `"priority"`); the call is priced at that tier's rates where the price table has them."""
    system_fingerprint: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost: Cost | None = None
    model: str = ""
    provider: str = ""
    request_id: str | None = None
    applied_params: dict[str, Any] = Field(default_factory=dict)
    dropped_params: list[str] = Field(default_factory=list)
    parsed: ParsedT = None  # type: ignore[assignment]  # None unless a response_model was asked for
    """The validated `response_model` object when one was asked for (None otherwise)."""
    deployment: str | None = None
    """For a model group's call: the deployment that served it (`"chat@1"` or the name it was given)."""
    rate_limits: dict[str, str] | None = Field(default=None, repr=False)
    """The provider's `x-ratelimit-*` headers, where it sends them (routing learns limits from them)."""
    raw: dict[str, Any] | None = Field(default=None, repr=False)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # What a reader of `print(reply)` looks for; every field stays an attribute (and in `model_dump()`).
        yield "text", self.text
        if self.tool_calls:
            yield "tool_calls", self.tool_calls
        if self.parsed is not None:
            yield "parsed", self.parsed
        yield "finish_reason", self.finish_reason
        yield "model", f"{self.provider}/{self.model}" if self.provider else self.model
        yield "usage", self.usage
        yield "cost", None if self.cost is None else self.cost.total
        for name in ("dropped_params", "deployment"):
            if getattr(self, name):
                yield name, getattr(self, name)

    @property
    def text(self) -> str:
        """The reply's text ("" when the model only called tools)."""
        return self.message.text

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls the model asked for, in order (empty when none)."""
        return self.message.tool_calls or []

    @property
    def reasoning(self) -> str | None:
        """The model's reasoning text where the provider returns it (DeepSeek's thinking mode, Ollama's `think`)."""
        return self.message.reasoning

    @property
    def refusal(self) -> str | None:
        """The model's refusal to answer, where the provider reports one apart from content (OpenAI)."""
        return self.message.refusal


class ToolCallDelta(_Model):
    """A fragment of a streamed tool call; fragments with the same `index` join into one `ToolCall`.

    `index` is the driver's own number for the call (OpenAI's `index`, Anthropic's content-block index): it need not
    be dense, and calls come out in its order (`llmclient.drivers.streams.StreamAssembler`).
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ChatChunk(_Model):
    """One streamed piece of a reply. The last chunk carries `finish_reason` and `usage`.

    Usage may also come in several chunks, each figure a running total (see `llmclient.drivers.streams`).

    With `n > 1`, `choice` says which reply a chunk belongs to; each reply's last chunk carries its
    `finish_reason`, and the very last chunk (of reply 0) the usage of all of them.
    """

    delta: str = ""
    reasoning_delta: str = ""
    reasoning_signature: str | None = None
    """The signature of the reasoning so far, where the provider signs it (Anthropic's `signature_delta`, Gemini's
    `thoughtSignature`); the last one sent is the reply's `Message.reasoning_signature`."""
    refusal_delta: str = ""
    """A piece of the model's refusal (OpenAI's `refusal` deltas)."""
    tool_call_deltas: list[ToolCallDelta] = Field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    """The log probabilities of this chunk's tokens, when asked for."""
    choice: int = 0
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model: str | None = None
    request_id: str | None = None
    service_tier: str | None = None


class EmbedResponse(_Model):
    """Embeddings for a list of inputs: `vectors` is a float32 array of shape (len(inputs), dimensions).

    `usage` and `cost` cover only what was sent; `cached` counts the inputs answered without a request (found in
    the embedding cache, or repeating an earlier input of the same call), which cost nothing.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    vectors: FloatMatrix
    usage: Usage = Field(default_factory=Usage)
    cost: Cost | None = None
    model: str = ""
    provider: str = ""
    cached: int = Field(default=0, ge=0)

    @field_validator("vectors", mode="before")
    @classmethod
    def _float32_matrix(cls, value: Any) -> FloatMatrix:
        import numpy as np

        array = np.asarray(value, dtype=np.float32)
        if array.ndim != 2:
            raise ValueError(f"vectors must be 2-D (n, d), got shape {array.shape}")
        return array


def to_messages(value: Any) -> list[Message]:
    """A string (one user message), a Message, an OpenAI-format dict, or a list of those, as a list of messages."""
    if isinstance(value, str):
        return [Message(role="user", content=value)]
    if isinstance(value, (Message, dict)):
        return [Message.model_validate(value)]
    if isinstance(value, (bytes, bytearray)):
        raise TypeError("messages must be str, Message, dict or a list of those, not bytes; decode them first")
    if not isinstance(value, Iterable):
        raise TypeError(f"messages must be str, Message, dict or a list of those, not {type(value).__name__}")
    return [item if isinstance(item, Message) else Message.model_validate(item) for item in value]


def build_validators() -> None:
    """Build the validators of the models every call uses, once per process. They are deferred at import, which
    keeps `import llmclient` light; a `Client` builds them when it is made, so its first calls do not pay (about
    20 ms, all of them waiting on it when they start together)."""
    for model in (Message, ChatRequest, Usage, Cost, ChatResponse, ChatChunk, TokenCount, Choice):
        model.model_rebuild()
