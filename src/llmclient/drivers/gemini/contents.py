"""Requests in the Gemini API's format, from llmclient's provider-neutral messages and tools
(https://ai.google.dev/api/generate-content and https://ai.google.dev/api/caching#Content, read 2026-12-07;
`GenerateContentRequest` in google/ai/generativelanguage/v1beta/generative_service.proto; checked by
tests/conformance/gemini).

- System and developer messages become `systemInstruction`; the turns are `contents` with roles `user` and
  `model`, each a list of `parts`.
- Images, audio and documents become `inlineData` (base64 with its MIME type), or `fileData` for a URL or an
  uploaded file's URI.
- An assistant's tool calls are `functionCall` parts; tool results are `functionResponse` parts (`{"result": ...}`)
  in one user turn, answering the calls by name and, where the model gave one, id
  (https://ai.google.dev/gemini-api/docs/function-calling).
- Thought signatures go back where they came (https://ai.google.dev/gemini-api/docs/thought-signatures): on the
  first function call of the turn, else on its last part; Gemini 3 refuses a function-calling turn without its
  signature. Ids this driver made up for calls the model sent without one (`GENERATED_ID`) are not sent back.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from llmclient.drivers.toolkit import json_schema_of
from llmclient.errors import InvalidRequestError
from llmclient.types import AudioPart, ContentPart, FilePart, ImagePart, Message, TextPart, Tool

GENERATED_ID = "gemini-call-"
"""The prefix of the ids given to function calls that came without one."""

# OpenAI's reasoning efforts as Gemini 3's `thinkingLevel` (https://ai.google.dev/gemini-api/docs/thinking).
THINKING_LEVELS = {
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}


def system_to_wire(messages: list[Message]) -> dict[str, Any] | None:
    """The system and developer messages' text as `systemInstruction`, or None."""
    texts = [message.text for message in messages if message.role in ("system", "developer") and message.text]
    return {"parts": [{"text": text} for text in texts]} if texts else None


def contents_to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation (without system messages) as `contents`; consecutive user-side turns (tool results and the
    user's own) form one turn, as Gemini wants every response to a turn's calls together."""
    names: dict[str, str] = {}  # call id → function name, for the responses
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        if message.role == "assistant":
            names.update((call.id, call.name) for call in message.tool_calls or ())
            parts, role = _model_parts(message), "model"
        elif message.role == "tool":
            parts, role = [_function_response(message, names)], "user"
        else:
            parts, role = _parts(message), "user"
        if contents and contents[-1]["role"] == role == "user":
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _model_parts(message: Message) -> list[dict[str, Any]]:
    parts = _parts(message) if message.content else []
    calls: list[dict[str, Any]] = []
    for call in message.tool_calls or ():
        function: dict[str, Any] = {"name": call.name, "args": call.arguments}
        if not call.id.startswith(GENERATED_ID):
            function["id"] = call.id
        calls.append({"functionCall": function})
    parts += calls
    if not parts:
        parts = [{"text": message.refusal or ""}]
    if message.reasoning_signature:
        signed = calls[0] if calls else parts[-1]
        signed["thoughtSignature"] = message.reasoning_signature
    return parts


def _function_response(message: Message, names: dict[str, str]) -> dict[str, Any]:
    call_id = message.tool_call_id or ""
    name = message.name or names.get(call_id)
    if not name:
        raise InvalidRequestError(
            "a tool result for Gemini needs its tool's name: set Message.name or keep the assistant turn that "
            "made the call",
            provider="gemini",
        )
    response: dict[str, Any] = {"name": name, "response": {"result": message.text}}
    if call_id and not call_id.startswith(GENERATED_ID):
        response["id"] = call_id
    return {"functionResponse": response}


def _parts(message: Message) -> list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return [{"text": content or ""}]
    parts = [_part(part) for part in content if not (isinstance(part, TextPart) and not part.text)]
    return parts or [{"text": ""}]


def _part(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, ImagePart):
        return _url_part(part.image_url.url)
    if isinstance(part, AudioPart):
        return {"inlineData": {"mimeType": f"audio/{part.format}", "data": part.data}}
    return _file_part(part)


def _url_part(url: str) -> dict[str, Any]:
    header, found, data = url.partition(",")
    if found and header.startswith("data:") and header.endswith(";base64"):
        return {"inlineData": {"mimeType": header[len("data:") : -len(";base64")], "data": data}}
    mime = mimetypes.guess_type(url.split("?")[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _file_part(part: FilePart) -> dict[str, Any]:
    if not part.media_type:
        raise InvalidRequestError("a file part for Gemini needs its media_type (e.g. 'application/pdf')")
    if part.file_id is not None:  # an uploaded file's URI (Files API)
        return {"fileData": {"mimeType": part.media_type, "fileUri": part.file_id}}
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


def tools_to_wire(tools: list[Tool]) -> list[dict[str, Any]]:
    """Function declarations, their parameters as JSON Schema (`parametersJsonSchema`)."""
    declarations = [_declaration(tool) for tool in tools]
    return [{"functionDeclarations": declarations}]


def _declaration(tool: Tool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name, "parametersJsonSchema": tool.parameters}
    if tool.description:
        declaration["description"] = tool.description
    return declaration


def tool_config(choice: str | None) -> dict[str, Any] | None:
    """`toolConfig.functionCallingConfig`: AUTO, ANY ("required"), NONE, or ANY restricted to one function."""
    if choice is None:
        return None
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    config: dict[str, Any] = {"mode": modes.get(choice, "ANY")}
    if choice not in modes:
        config["allowedFunctionNames"] = [choice]
    return {"functionCallingConfig": config}


def response_format_to_wire(response_format: dict[str, Any]) -> dict[str, Any]:
    """A `response_format` as generation settings: JSON out (`responseMimeType`), shaped by `responseJsonSchema`
    (https://ai.google.dev/gemini-api/docs/structured-output)."""
    schema = json_schema_of(response_format, provider="gemini")
    if schema is not None:
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    return {"responseMimeType": "application/json"} if response_format.get("type") == "json_object" else {}


__all__ = [
    "GENERATED_ID",
    "THINKING_LEVELS",
    "contents_to_wire",
    "response_format_to_wire",
    "system_to_wire",
    "tool_config",
    "tools_to_wire",
]
