"""Ollama's chat format: OpenAI's shape with fields of its own, as Ollama's Go types define it
(https://github.com/ollama/ollama/blob/main/api/types.go: `ChatRequest`, `Message`, `ToolCall`, `ThinkValue`,
`Logprob`; docs/api.md and docs/openapi.yaml describe the same fields, checked by tests/conformance).

- Content is one string (text parts joined; left out when empty); images go as base64 `images`.
- A tool call carries its `id` and an object of arguments; a tool result names its call (`tool_call_id`) and its
  tool (`tool_name`), which older servers match by.
- An assistant's reasoning goes back as `thinking` (Ollama asks for it in tool loops).
- `think` is a bool or a level (`"low"`, `"medium"`, `"high"`, `"max"`).
"""

from __future__ import annotations

from typing import Any

from llmclient.drivers.toolkit import call_deltas, json_schema_of
from llmclient.errors import InvalidRequestError, UnsupportedCapabilityError
from llmclient.types import (
    AudioPart,
    ChatChunk,
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    TokenLogprob,
    ToolCall,
)

# OpenAI's reasoning efforts as Ollama's think levels (`ThinkValue.IsValid`: high, medium, low, max).
THINK_LEVELS: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
    "max": "max",
}


def ollama_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in Ollama's chat format."""
    wire: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool-call id → tool name, for the results' `tool_name`
    for message in messages:
        parts = message.content if isinstance(message.content, list) else ()
        if any(isinstance(part, (AudioPart, FilePart)) for part in parts):
            raise UnsupportedCapabilityError(
                "Ollama's chat takes text and images only, not audio or file parts", provider="ollama"
            )
        text = "".join(part.text for part in parts if isinstance(part, TextPart)) if parts else message.content
        # Ollama's roles are system, user, assistant and tool: developer instructions go as system.
        item: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role}
        if text:  # an empty content is left out, as Ollama's own client does (the server reads it as "")
            item["content"] = text
        if message.reasoning and message.role == "assistant":
            # Sent back: Ollama asks for thinking in tool-loop history (docs/capabilities/streaming.mdx).
            item["thinking"] = message.reasoning
        if images := [_ollama_image(part) for part in parts if isinstance(part, ImagePart)]:
            item["images"] = images
        if message.tool_calls:
            item["tool_calls"] = [
                {"id": call.id, "function": {"name": call.name, "arguments": call.arguments}}
                for call in message.tool_calls
            ]
            names.update((call.id, call.name) for call in message.tool_calls)
        if message.role == "tool":
            if tool_name := message.name or names.get(message.tool_call_id or ""):
                item["tool_name"] = tool_name
            if message.tool_call_id:
                item["tool_call_id"] = message.tool_call_id
        wire.append(item)
    return wire


def _ollama_image(part: ImagePart) -> str:
    header, found, data = part.image_url.url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and found):
        # Ollama takes base64 image bytes only (docs/api.md, "Chat request (with images)"); nothing is downloaded.
        raise InvalidRequestError("Ollama takes images as base64 data: URLs (data:image/png;base64,...)")
    return data


def ollama_think(request: ChatRequest, default: bool | str | None) -> bool | str | None:
    """The call's `think`: its `reasoning_effort` as a level, else its `thinking`, else the driver's default."""
    if request.reasoning_effort is not None:
        return THINK_LEVELS[request.reasoning_effort]
    if request.thinking is not None:
        return request.thinking
    return default


def ollama_format(response_format: dict[str, Any]) -> str | dict[str, Any] | None:
    """A `response_format` as Ollama's `format`: a JSON schema, "json", or None for plain text."""
    kind = response_format.get("type")
    schema = json_schema_of(response_format, provider="ollama")
    if schema is not None:
        return schema
    if kind in ("json_object", "text"):
        return "json" if kind == "json_object" else None
    return response_format  # Ollama's own form: a JSON schema given as it is


def ollama_tool_call(call: dict[str, Any], index: int) -> ToolCall:
    """A tool call from Ollama (arguments as an object)."""
    # Newer Ollama sends ids (`call_p7o2gz50`); older ones do not, so calls are numbered here.
    return ToolCall.model_validate({"id": call.get("id") or f"call_{index}", "function": call["function"]})


def ollama_logprobs(data: dict[str, Any]) -> list[TokenLogprob] | None:
    """A reply's or chunk's `logprobs` (Ollama's `Logprob` list: token, logprob, bytes, top_logprobs)."""
    logprobs = data.get("logprobs")
    return [TokenLogprob.model_validate(item) for item in logprobs] if logprobs else None


def ollama_chunk(payload: dict[str, Any], calls_so_far: int) -> ChatChunk | None:
    """The chunk of one streamed Ollama line (None when it carries nothing)."""
    message = payload.get("message") or {}
    content, thinking = message.get("content") or "", message.get("thinking") or ""
    # Ollama streams each tool call whole, in one chunk, with arguments as an object.
    parsed = [ollama_tool_call(call, calls_so_far + n) for n, call in enumerate(message.get("tool_calls") or ())]
    logprobs = ollama_logprobs(payload)
    if not (content or thinking or parsed or logprobs):
        return None
    return ChatChunk(
        delta=content,
        reasoning_delta=thinking,
        tool_call_deltas=call_deltas(parsed, calls_so_far),
        logprobs=logprobs,
    )
