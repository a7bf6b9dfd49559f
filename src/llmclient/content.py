"""Message parts and reply details in llmclient's own, provider-neutral shapes.

Each driver translates these into its wire format in its own `_to_wire` (OpenAI's `input_audio` and `file` parts,
Anthropic's and Gemini's blocks), so a conversation moves between providers unchanged. OpenAI-format parts are
accepted wherever a `Message` is built from a dict (see `llmclient.types.Message`):

```python
from llmclient import AudioPart, FilePart, Message

message = Message.model_validate(
    {
        "role": "user",
        "content": [
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        ],
    }
)
assert message.content == [
    AudioPart(data="UklGRg==", format="wav"),
    FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf"),
]
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class AudioPart(_Part):
    """Audio in a user message: base64-encoded bytes and their format (`"wav"`, `"mp3"`, …)."""

    type: Literal["audio"] = "audio"
    data: str
    """The audio file's bytes, base64-encoded (no `data:` prefix)."""
    format: str
    """The container format, as the file's extension names it: `"wav"`, `"mp3"`, `"flac"`, …"""


class FilePart(_Part):
    """A document (a PDF, say) in a user message: its bytes, or the id of a file uploaded to the provider."""

    type: Literal["file"] = "file"
    data: str | None = None
    """The file's bytes, base64-encoded (no `data:` prefix)."""
    media_type: str | None = None
    """Its MIME type (`"application/pdf"`); needed with `data` by every provider that takes bytes."""
    filename: str | None = None
    file_id: str | None = None
    """The id of a file uploaded to the provider beforehand (instead of `data`)."""

    @model_validator(mode="after")
    def _bytes_or_id(self) -> FilePart:
        if (self.data is None) == (self.file_id is None):
            raise ValueError("a file part takes either data (base64 bytes) or file_id, not both or neither")
        return self


def parts_from_openai(parts: list[Any]) -> tuple[list[Any], str | None]:
    """OpenAI's content parts with `input_audio` and `file` parts in llmclient's shapes, and the text of any
    `refusal` parts (an assistant message's), which are taken out of the list."""
    converted: list[Any] = []
    refusals: list[str] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            converted.append({"type": "audio", **part["input_audio"]})
        elif kind == "file" and isinstance(part.get("file"), dict):
            converted.append(_file_from_openai(part["file"]))
        elif kind == "refusal":
            refusals.append(str(part.get("refusal") or ""))
        else:
            converted.append(part)
    return converted, ("".join(refusals) if refusals else None)


def _file_from_openai(file: dict[str, Any]) -> dict[str, Any]:
    data = file.get("file_data")
    part: dict[str, Any] = {"type": "file", "filename": file.get("filename"), "file_id": file.get("file_id")}
    if isinstance(data, str):
        header, found, payload = data.partition(",")
        if found and header.startswith("data:") and header.endswith(";base64"):
            part.update(data=payload, media_type=header[len("data:") : -len(";base64")] or None)
        else:  # bare base64: OpenAI's SDK examples send data URLs, but the field is a string
            part["data"] = data
    return part


class TopLogprob(_Part):
    """One candidate token at a position, with its log probability."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    """The token's UTF-8 bytes (a token may hold part of a character)."""


class TokenLogprob(TopLogprob):
    """The log probability of one generated token, with the most likely alternatives when they were asked for
    (`logprobs=True, top_logprobs=k`)."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


__all__ = ["AudioPart", "FilePart", "TokenLogprob", "TopLogprob", "parts_from_openai"]
