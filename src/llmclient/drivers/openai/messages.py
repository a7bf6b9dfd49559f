"""Messages in OpenAI's chat format, as the Chat Completions API takes them
(https://platform.openai.com/docs/api-reference/chat/create#chat-create-messages; the OpenAPI spec's
`ChatCompletionRequestMessage`, checked by tests/conformance).

Each role takes only its own fields: a tool message has no `name`, an assistant's `annotations` and reasoning are
not sent back (DeepSeek's driver adds its `reasoning_content` where DeepSeek asks for it), and an assistant's audio
goes back as its `id` only. llmclient's provider-neutral parts become OpenAI's `image_url`, `input_audio` and
`file` parts.
"""

from __future__ import annotations

from typing import Any

from llmclient.errors import InvalidRequestError
from llmclient.types import AudioPart, ContentPart, FilePart, ImagePart, Message, TextPart

# The audio formats an `input_audio` part takes (the spec's ChatCompletionRequestMessageContentPartAudio).
INPUT_AUDIO_FORMATS = ("wav", "mp3")


def messages_to_wire(messages: list[Message], *, developer: bool = True) -> list[dict[str, Any]]:
    """Messages in OpenAI's chat format.

    A tool message takes text parts only, so the images, audio and files of a tool's result (a screenshot tool's,
    say) go in one user message right after the run of tool results, which is what the model reads next; each
    tool message says that its attachments follow.

    Args:
        messages: The conversation.
        developer: Whether the server knows the `developer` role; else it is sent as `system`.
    """
    wire: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []  # of the current run of tool results
    for message in messages:
        if message.role != "tool" and attachments:
            wire.append({"role": "user", "content": attachments})
            attachments = []
        if message.role == "tool" and isinstance(message.content, list):
            media = [part for part in message.content if not isinstance(part, TextPart)]
            if media:
                note = TextPart(text=f"[the {len(media)} attachment(s) of this result follow in a user message]")
                texts = [part for part in message.content if isinstance(part, TextPart)]
                message = message.model_copy(update={"content": [*texts, note]})
                attachments.append({"type": "text", "text": f"Attachments of tool result {message.tool_call_id}:"})
                attachments.extend(part_to_wire(part) for part in media)
        wire.append(message_to_wire(message, developer=developer))
    if attachments:
        wire.append({"role": "user", "content": attachments})
    return wire


def message_to_wire(message: Message, *, developer: bool = True) -> dict[str, Any]:
    """A message in OpenAI's chat format.

    Args:
        message: The message.
        developer: Whether the server knows the `developer` role; else it is sent as `system`.
    """
    role = message.role if developer or message.role != "developer" else "system"
    wire: dict[str, Any] = {"role": role}
    content = message.content
    if isinstance(content, list):
        wire["content"] = [part_to_wire(part) for part in content]
        if message.role != "user" and any(part["type"] != "text" for part in wire["content"]):
            raise InvalidRequestError(
                f"a {message.role} message takes text parts only (images, audio and files go in user messages)"
            )
    else:
        wire["content"] = content
    if message.name is not None and message.role != "tool":  # the spec gives tool messages no name
        wire["name"] = message.name
    if message.role == "assistant":
        _assistant_fields(message, wire)
    if message.role == "tool":
        wire["tool_call_id"] = message.tool_call_id or ""
        if wire["content"] is None:
            wire["content"] = ""  # a tool message's content is required
    elif wire["content"] is None and message.role != "assistant":
        wire["content"] = ""
    return wire


def _assistant_fields(message: Message, wire: dict[str, Any]) -> None:
    if message.refusal is not None:
        wire["refusal"] = message.refusal
    if message.audio and message.audio.get("id"):  # a previous audio reply is referred to by its id alone
        wire["audio"] = {"id": message.audio["id"]}
    if message.tool_calls:
        wire["tool_calls"] = [call.to_openai() for call in message.tool_calls]


def part_to_wire(part: ContentPart) -> dict[str, Any]:
    """One content part in OpenAI's shape."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        image: dict[str, Any] = {"url": part.image_url.url}
        if part.image_url.detail is not None:
            image["detail"] = part.image_url.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, AudioPart):
        if part.format not in INPUT_AUDIO_FORMATS:
            raise InvalidRequestError(
                f"OpenAI's chat takes {' or '.join(INPUT_AUDIO_FORMATS)} audio, not {part.format!r}; convert it first"
            )
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    return {"type": "file", "file": _file_to_wire(part)}


def _file_to_wire(part: FilePart) -> dict[str, Any]:
    file: dict[str, Any] = {}
    if part.file_id is not None:
        file["file_id"] = part.file_id
    if part.data is not None:
        if not part.media_type:
            raise InvalidRequestError("a file part with data needs its media_type (e.g. 'application/pdf')")
        # OpenAI takes the bytes as a data URL (https://platform.openai.com/docs/guides/pdf-files).
        file["file_data"] = f"data:{part.media_type};base64,{part.data}"
    if part.filename is not None:
        file["filename"] = part.filename
    return file


def text_only(message: Message) -> bool:
    """Whether a message's content is text (a string, or text parts only)."""
    return not isinstance(message.content, list) or all(isinstance(part, TextPart) for part in message.content)
