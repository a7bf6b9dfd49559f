"""LangChain messages to llmclient's and back: every content-block format LangChain's standard suite sends, usage
and response metadata, and the JSON schemas `with_structured_output` sends.

Content blocks accepted (https://docs.langchain.com/oss/python/langchain/messages#standard-content-blocks, checked
2026-12-07): text; OpenAI's `image_url`; LangChain's standard `image` blocks in the v1 form (`url`, or `base64`
with `mime_type`) and the v0 form (`source_type` "url" or "base64"); Anthropic's `image` blocks (`source`);
reasoning as LangChain v1 `reasoning` or Anthropic `thinking` blocks; tool calls in an assistant message as v1
`tool_call` or Anthropic `tool_use` blocks (used only when `AIMessage.tool_calls` is empty, which otherwise
holds the same calls); files (PDFs and other documents) as v1/v0 `file` blocks, OpenAI's `file` parts and
Anthropic's `document` blocks, as base64 data or a provider's file id; audio as v1/v0 `audio` blocks and OpenAI's
`input_audio`. A file or audio block given only by URL, and video, have no llmclient part: they are refused with
`InvalidRequestError`, which names the block (download the file and pass its bytes).
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata

from llmclient.errors import InvalidRequestError
from llmclient.types import (
    AudioPart,
    ChatChunk,
    ChatResponse,
    ContentPart,
    FilePart,
    ImagePart,
    ImageURL,
    Message,
    TextPart,
    ToolCall,
    Usage,
)

_CALL_BLOCKS = ("tool_call", "tool_use", "tool_call_chunk", "invalid_tool_call")
_REASONING_BLOCKS = ("reasoning", "thinking", "redacted_thinking")
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def to_messages(messages: list[BaseMessage]) -> list[Message]:
    """llmclient messages from LangChain ones (every content-block form listed in the module docstring)."""
    converted: list[Message] = []
    for message in messages:
        parts, reasoning, calls = _content(message.content, message.type)
        content: str | list[ContentPart] = parts
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


def _flat(content: str | list[ContentPart]) -> Any:
    """Text-only content as one string (system and assistant messages take no images)."""
    if isinstance(content, str) or any(not isinstance(part, TextPart) for part in content):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))


def _content(content: str | list[Any], role: str) -> tuple[str | list[ContentPart], str, list[ToolCall]]:
    """A message's parts, its reasoning text, and the tool calls its blocks hold."""
    if isinstance(content, str):
        return content, "", []
    parts: list[ContentPart] = []
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
        elif kind in ("file", "document"):
            parts.append(_file_part(block))
        elif kind in ("audio", "input_audio"):
            parts.append(_audio_part(block))
        elif kind in _REASONING_BLOCKS:
            reasoning.append(block.get("reasoning") or block.get("thinking") or "")
        elif kind in _CALL_BLOCKS and role == "ai":
            if kind in ("tool_call", "tool_use"):
                arguments = block.get("args") if kind == "tool_call" else block.get("input")
                calls.append(ToolCall(id=block.get("id") or "", name=block["name"], arguments=arguments or {}))
        else:
            raise InvalidRequestError(
                f"unsupported content block {kind!r}: llmclient messages hold text, images, files, audio, reasoning "
                "and tool calls"
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


def _base64_and_mime(block: dict[str, Any]) -> tuple[str | None, str | None]:
    """The base64 data and MIME type of a v1 (`base64`), v0 (`source_type: "base64"`, `data`) or Anthropic
    (`source: {"type": "base64", ...}`) block, or of a `data:` URL in OpenAI's `file_data`."""
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        return source.get("data"), source.get("media_type")
    inner = block.get("file")
    if isinstance(inner, dict) and isinstance(inner.get("file_data"), str):
        header, _, data = inner["file_data"].partition(",")
        mime = header[len("data:") :].split(";")[0] if header.startswith("data:") else None
        return data, mime
    data = block.get("base64") or (block.get("data") if block.get("source_type") in (None, "base64") else None)
    return data, block.get("mime_type")


def _file_part(block: dict[str, Any]) -> FilePart:
    """A file (a PDF, say) block in any of the forms the module docstring lists."""
    inner: dict[str, Any] = block["file"] if isinstance(block.get("file"), dict) else {}
    v0_id = block.get("id") if block.get("source_type") == "id" else None
    file_id = block.get("file_id") or inner.get("file_id") or v0_id
    data, mime = _base64_and_mime(block)
    filename = inner.get("filename") or block.get("filename") or (block.get("extras") or {}).get("filename")
    if data:
        return FilePart(data=data, media_type=mime or "application/pdf", filename=filename)
    if file_id:
        return FilePart(file_id=str(file_id), media_type=mime, filename=filename)
    raise InvalidRequestError(
        f"unsupported content block {block.get('type')!r} without base64 data or a file id: download the file "
        "and pass its bytes"
    )


def _audio_part(block: dict[str, Any]) -> AudioPart:
    """An audio block: LangChain's v1/v0 `audio` (base64 and a MIME type) or OpenAI's `input_audio`."""
    if block.get("type") == "input_audio":
        inner = block.get("input_audio") or {}
        return AudioPart(data=inner["data"], format=inner["format"])
    data, mime = _base64_and_mime(block)
    if not data:
        raise InvalidRequestError(
            "unsupported content block 'audio' without base64 data: download the audio and pass its bytes"
        )
    subtype = (mime or "audio/wav").split("/")[-1].lower()
    return AudioPart(data=data, format={"mpeg": "mp3", "x-wav": "wav", "wave": "wav"}.get(subtype, subtype))


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
