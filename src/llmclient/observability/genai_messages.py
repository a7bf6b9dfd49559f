"""Messages in the shape the OpenTelemetry GenAI conventions capture them: `gen_ai.input.messages` and
`gen_ai.output.messages` as JSON arrays of `{"role", "parts": [...]}` (output messages add `finish_reason`).

The shapes are the conventions' JSON schemas `gen-ai-input-messages.json` and `gen-ai-output-messages.json`
(open-telemetry/semantic-conventions v1.41.1, docs/gen-ai/, checked 2026-12-07; vendored under
tests/conformance/otel/, which validates what this module writes against them):

```python
from llmclient import Message, ToolCall
from llmclient.observability.genai_messages import input_messages

called = Message(role="assistant", tool_calls=[ToolCall(id="c1", name="add", arguments={"a": 1})])
assert input_messages([Message(role="user", content="2 + 3?"), called]) == [
    {"role": "user", "parts": [{"type": "text", "content": "2 + 3?"}]},
    {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "add", "arguments": {"a": 1}}]},
]
```
"""

from __future__ import annotations

from typing import Any

from llmclient.types import AudioPart, ChatResponse, ContentPart, FilePart, Message, TextPart

FINISH_REASONS = {"tool_calls": "tool_call", "cancelled": "error"}
"""Our finish reasons that the conventions name otherwise (theirs: stop, length, content_filter, tool_call, error)."""


def input_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """A request's messages as the conventions' input messages."""
    return [_message(message) for message in messages]


def output_messages(response: ChatResponse) -> list[dict[str, Any]]:
    """A reply as the conventions' output messages (one, with its finish reason)."""
    message = _message(response.message)
    reason = response.finish_reason or "stop"
    message["finish_reason"] = FINISH_REASONS.get(reason, reason)
    return [message]


def _message(message: Message) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if message.reasoning:
        parts.append({"type": "reasoning", "content": message.reasoning})
    if message.role == "tool":
        parts.append({"type": "tool_call_response", "id": message.tool_call_id, "response": message.text})
    elif isinstance(message.content, str):
        parts.append({"type": "text", "content": message.content})
    elif message.content is not None:
        parts.extend(_part(part) for part in message.content)
    for call in message.tool_calls or ():
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
    captured: dict[str, Any] = {"role": message.role, "parts": parts}
    if message.name is not None and message.role != "tool":
        captured["name"] = message.name
    return captured


def _part(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "content": part.text}
    if isinstance(part, AudioPart):
        return {"type": "blob", "modality": "audio", "mime_type": f"audio/{part.format}", "content": part.data}
    if isinstance(part, FilePart):  # a document: the conventions' modality is open ("document" is not listed)
        if part.file_id is not None:
            return {"type": "file", "modality": "document", "mime_type": part.media_type, "file_id": part.file_id}
        return {"type": "blob", "modality": "document", "mime_type": part.media_type, "content": part.data}
    url = part.image_url.url
    header, found, data = url.partition(",")
    if url.startswith("data:") and header.endswith(";base64") and found:
        mime = header[len("data:") : -len(";base64")] or None
        return {"type": "blob", "modality": "image", "mime_type": mime, "content": data}
    return {"type": "uri", "modality": "image", "uri": url}
