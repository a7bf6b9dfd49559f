"""LangChain messages to llmclient's and back: every content-block format LangChain's standard suite sends, usage
and response metadata, and the JSON schemas `with_structured_output` sends.

Content blocks accepted (https://docs.langchain.com/oss/python/langchain/messages#standard-content-blocks, checked
2026-12-07): text; OpenAI's `image_url`; LangChain's standard `image` blocks in the v1 form (`url`, or `base64`
with `mime_type`) and the v0 form (`source_type` "url" or "base64"); Anthropic's `image` blocks (`source`);
reasoning as LangChain v1 `reasoning` or Anthropic `thinking` blocks; tool calls in an assistant message as v1
`tool_call` or Anthropic `tool_use` blocks (used only when `AIMessage.tool_calls` is empty, which otherwise
holds the same calls). File, audio and video blocks have no llmclient part: they are refused with
`InvalidRequestError`, which names the block.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata

from llmclient.errors import InvalidRequestError
from llmclient.types import ChatChunk, ChatResponse, ImagePart, ImageURL, Message, TextPart, ToolCall, Usage

_CALL_BLOCKS = ("tool_call", "tool_use", "tool_call_chunk", "invalid_tool_call")
_REASONING_BLOCKS = ("reasoning", "thinking", "redacted_thinking")
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def to_messages(messages: list[BaseMessage]) -> list[Message]:
    """llmclient messages from LangChain ones (every content-block form listed in the module docstring)."""
    converted: list[Message] = []
    for message in messages:
        parts, reasoning, calls = _content(message.content, message.type)
        content: str | list[TextPart | ImagePart] = parts
        if isinstance(message, SystemMessage):
            converted.append(Message(role="system", content=_flat(content)))
        elif isinstance(message, HumanMessage):
            converted.append(Message(role="user", content=content, name=message.name))
        elif isinstance(message, AIMessage):
            listed = [
                ToolCall(id=call.get("id") or f"call_{index}", name=call["name"], arguments=call["args"])
                for index, call in enumerate(message.tool_calls)
            ]
            text = _flat(content)
            converted.append(
                Message(
                    role="assistant",
                    content=text or None,
                    tool_calls=(listed or calls) or None,
                    reasoning=reasoning or message.additional_kwargs.get("reasoning_content") or None,
                )
            )
        elif isinstance(message, ToolMessage):
            converted.append(Message(role="tool", content=content, tool_call_id=message.tool_call_id))
        else:
            raise InvalidRequestError(f"unsupported LangChain message type {type(message).__name__}")
    return converted


def _flat(content: str | list[TextPart | ImagePart]) -> Any:
    """Text-only content as one string (system and assistant messages take no images)."""
    if isinstance(content, str) or any(isinstance(part, ImagePart) for part in content):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))


def _content(content: str | list[Any], role: str) -> tuple[str | list[TextPart | ImagePart], str, list[ToolCall]]:
    """A message's parts, its reasoning text, and the tool calls its blocks hold."""
    if isinstance(content, str):
        return content, "", []
    parts: list[TextPart | ImagePart] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if isinstance(block, str):
            parts.append(TextPart(text=block))
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(TextPart(text=block["text"]))
        elif kind in ("image_url", "image"):
            parts.append(ImagePart(image_url=ImageURL(url=_image_url(block))))
        elif kind in _REASONING_BLOCKS:
            reasoning.append(block.get("reasoning") or block.get("thinking") or "")
        elif kind in _CALL_BLOCKS and role == "ai":
            if kind in ("tool_call", "tool_use"):
                arguments = block.get("args") if kind == "tool_call" else block.get("input")
                calls.append(ToolCall(id=block.get("id") or "", name=block["name"], arguments=arguments or {}))
        else:
            raise InvalidRequestError(
                f"unsupported content block {kind!r}: llmclient messages hold text, images, reasoning and tool calls"
            )
    return parts, "".join(reasoning), calls


def _image_url(block: dict[str, Any]) -> str:
    """The URL (or `data:` URL) of an image block in any of the forms the module docstring lists."""
    if block.get("type") == "image_url":
        image = block["image_url"]
        return str(image["url"] if isinstance(image, dict) else image)
    source = block.get("source")
    if isinstance(source, dict):  # Anthropic: {"source": {"type": "base64", "media_type", "data"} | {"type": "url"}}
        if source.get("type") == "url":
            return str(source["url"])
        return f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
    mime = block.get("mime_type") or "image/png"
    if block.get("source_type") == "base64" or (block.get("source_type") is None and "data" in block):
        return f"data:{mime};base64,{block['data']}"  # v0: {"source_type": "base64", "data": ...}
    if "base64" in block:
        return f"data:{mime};base64,{block['base64']}"
    if "url" in block:
        return str(block["url"])
    raise InvalidRequestError(f"an image block needs a url or base64 data (got keys {sorted(block)})")


def usage_metadata(usage: Usage) -> UsageMetadata:
    """LangChain's usage shape (input counts cached tokens too, as LangChain defines it)."""
    metadata: dict[str, Any] = {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cached_input_tokens:
        metadata["input_token_details"] = {"cache_read": usage.cached_input_tokens}
    if usage.reasoning_tokens:
        metadata["output_token_details"] = {"reasoning": usage.reasoning_tokens}
    result: UsageMetadata = UsageMetadata(**metadata)  # type: ignore[typeddict-item]
    return result


def response_metadata(response: ChatResponse) -> dict[str, Any]:
    """What `AIMessage.response_metadata` carries: the served model's name (LangChain's usage callbacks key by it),
    the provider, the finish reason, and llmclient's cost."""
    return {
        "model_name": response.model,
        "model_provider": response.provider,
        "finish_reason": response.finish_reason,
        "usage_estimated": response.usage.estimated,
        "cost_usd": None if response.cost is None else str(response.cost.total),
    }


def _extra(message: Message) -> dict[str, Any]:
    # Where LangChain's OpenAI-compatible integrations keep reasoning (DeepSeek, Ollama, Groq); content_blocks reads
    # it back as a `reasoning` block.
    return {"reasoning_content": message.reasoning} if message.reasoning else {}


def ai_message(response: ChatResponse) -> AIMessage:
    """The `AIMessage` of a complete reply."""
    return AIMessage(
        content=response.text,
        tool_calls=[
            {"name": call.name, "args": call.arguments, "id": call.id, "type": "tool_call"}
            for call in response.tool_calls
        ],
        additional_kwargs=_extra(response.message),
        usage_metadata=usage_metadata(response.usage),
        response_metadata=response_metadata(response),
        id=response.request_id,
    )


def chunk_message(chunk: ChatChunk) -> AIMessageChunk:
    """A streamed piece of text, reasoning or tool call (usage and metadata come once, in `last_chunk`)."""
    return AIMessageChunk(
        content=chunk.delta,
        tool_call_chunks=[
            {"name": d.name, "args": d.arguments, "id": d.id, "index": d.index, "type": "tool_call_chunk"}
            for d in chunk.tool_call_deltas
        ],
        additional_kwargs={"reasoning_content": chunk.reasoning_delta} if chunk.reasoning_delta else {},
    )


def last_chunk(response: ChatResponse) -> AIMessageChunk:
    """The stream's closing chunk: the assembled reply's usage and metadata, exactly as `ai_message` has them, so
    `get_usage_metadata_callback()` counts a stream as it counts an invoke."""
    return AIMessageChunk(
        content="",
        usage_metadata=usage_metadata(response.usage),
        response_metadata=response_metadata(response),
        chunk_position="last",
    )


def schema_name(title: Any) -> str:
    """A response-format name OpenAI accepts (`^[a-zA-Z0-9_-]{1,64}$`) from a schema's title."""
    name = _SCHEMA_NAME.sub("_", str(title or ""))[:64]
    return name or "output"
