"""Requests in Anthropic's Messages format, from llmclient's provider-neutral messages and tools
(https://platform.claude.com/docs/en/api/messages, read 2026-12-07; checked by tests/conformance/anthropic).

- System and developer messages become the top-level `system` (there is no system role in `messages`).
- Content becomes blocks: `text`, `image` (base64 or URL), `document` (a PDF or plain text as base64, or an
  uploaded file's id); audio has no block, so an audio part is refused before sending.
- An assistant's tool calls are `tool_use` blocks; tool results are `tool_result` blocks at the head of the next
  user turn (consecutive results, and a user message right after them, form one turn, results first).
- An assistant's reasoning goes back as its `thinking` block with its `signature`, unchanged, before its tool
  calls: the API requires it in a tool loop with thinking on (https://platform.claude.com/docs/en/build-with-claude/
  extended-thinking#preserving-thinking-blocks). A redacted block (`Message.reasoning` None, the signature kept)
  goes back as `redacted_thinking`. Reasoning without a signature (another provider's) is not sent.
- `prompt_cache` marks the system prompt, the last tool and the last message as cache breakpoints
  (`cache_control`, https://platform.claude.com/docs/en/build-with-claude/prompt-caching).
"""

from __future__ import annotations

from typing import Any

from llmclient.drivers.toolkit import json_schema_of
from llmclient.errors import InvalidRequestError, UnsupportedCapabilityError
from llmclient.types import AudioPart, ContentPart, FilePart, ImagePart, Message, TextPart, Tool

# `output_config.effort` levels (https://platform.claude.com/docs/en/build-with-claude/effort): OpenAI's names
# mapped onto them; "none" turns thinking off instead.
EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}


def system_to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    """The text of every system and developer message, in order, as `system` text blocks."""
    texts = [message.text for message in messages if message.role in ("system", "developer")]
    return [{"type": "text", "text": text} for text in texts if text]


def messages_to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation (without its system messages) as Anthropic's `messages`: user and assistant turns, tool
    results folded into the user turn that follows the calls."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _assistant_blocks(message) if role == "assistant" else _user_blocks(message)
        if wire and wire[-1]["role"] == role == "user":
            wire[-1]["content"].extend(blocks)  # tool results first, then what the user adds
        else:
            wire.append({"role": role, "content": blocks})
    for item in wire:  # a lone text block goes as a string, as Anthropic's own examples send it
        content = item["content"]
        if len(content) == 1 and content[0]["type"] == "text" and set(content[0]) == {"type", "text"}:
            item["content"] = content[0]["text"]
    return wire


def _user_blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
        parts = _content_blocks(message)
        if parts:
            result["content"] = parts
        return [result]
    blocks = _content_blocks(message)
    if not blocks:
        raise InvalidRequestError("Anthropic refuses an empty user message; give it some content", provider="anthropic")
    return blocks


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    signature = message.reasoning_signature
    if signature is not None and message.reasoning is not None:
        blocks.append({"type": "thinking", "thinking": message.reasoning, "signature": signature})
    elif signature is not None:
        blocks.append({"type": "redacted_thinking", "data": signature})
    blocks += _content_blocks(message)
    for call in message.tool_calls or ():
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    if not blocks:  # an assistant turn with nothing in it: Anthropic wants content
        blocks.append({"type": "text", "text": message.refusal or "(no content)"})
    return blocks


def _content_blocks(message: Message) -> list[dict[str, Any]]:
    content = message.content
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [_part(part) for part in content if not (isinstance(part, TextPart) and not part.text)]


def _part(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image", "source": _source(part.image_url.url)}
    if isinstance(part, AudioPart):
        raise UnsupportedCapabilityError("Claude takes no audio input; transcribe it first", provider="anthropic")
    return {"type": "document", "source": _file_source(part)}


def _source(url: str) -> dict[str, Any]:
    header, found, data = url.partition(",")
    if found and header.startswith("data:") and header.endswith(";base64"):
        return {"type": "base64", "media_type": header[len("data:") : -len(";base64")], "data": data}
    return {"type": "url", "url": url}


def _file_source(part: FilePart) -> dict[str, Any]:
    if part.file_id is not None:
        return {"type": "file", "file_id": part.file_id}
    if not part.media_type:
        raise InvalidRequestError("a file part with data needs its media_type (e.g. 'application/pdf')")
    if part.media_type == "text/plain":  # plain text documents go as text, not base64
        import base64

        return {"type": "text", "media_type": "text/plain", "data": base64.b64decode(part.data or "").decode()}
    return {"type": "base64", "media_type": part.media_type, "data": part.data}


def tools_to_wire(tools: list[Tool]) -> list[dict[str, Any]]:
    """Tool definitions: name, description and the parameters' JSON schema as `input_schema`; `strict` asks for
    strict tool use (the input is guaranteed to match the schema)."""
    return [
        {"name": tool.name, "input_schema": tool.parameters}
        | ({"description": tool.description} if tool.description else {})
        | ({"strict": True} if tool.strict else {})
        for tool in tools
    ]


def tool_choice_to_wire(choice: str | None, parallel: bool | None) -> dict[str, Any] | None:
    """A `tool_choice`: "auto", "required" (Anthropic's "any"), "none", or a tool's name; `parallel=False` asks for
    one call at a time (`disable_parallel_tool_use`)."""
    if choice is None and parallel is None:
        return None
    if choice in (None, "auto"):
        wire: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        wire = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    else:
        wire = {"type": "tool", "name": choice}
    if parallel is False:
        wire["disable_parallel_tool_use"] = True
    return wire


def output_format(response_format: dict[str, Any]) -> dict[str, Any] | None:
    """A `response_format` as `output_config.format` (structured outputs,
    https://platform.claude.com/docs/en/build-with-claude/structured-outputs): a JSON schema, or any JSON object for
    `json_object`; None for plain text."""
    schema = json_schema_of(response_format, provider="anthropic")
    if schema is None and response_format.get("type") == "json_object":
        schema = {"type": "object"}
    return None if schema is None else {"type": "json_schema", "schema": schema}


def mark_cache(body: dict[str, Any], ttl: str) -> None:
    """Put cache breakpoints on the system prompt, the last tool and the last message's last block."""
    control = {"type": "ephemeral", "ttl": ttl}
    system = body.get("system")
    if isinstance(system, list) and system:
        system[-1]["cache_control"] = control
    if body.get("tools"):
        body["tools"][-1]["cache_control"] = control
    last = body["messages"][-1]
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    blocks = [block for block in last["content"] if block["type"] not in ("thinking", "redacted_thinking")]
    if blocks:
        blocks[-1]["cache_control"] = control


__all__ = [
    "EFFORTS",
    "mark_cache",
    "messages_to_wire",
    "output_format",
    "system_to_wire",
    "tool_choice_to_wire",
    "tools_to_wire",
]
