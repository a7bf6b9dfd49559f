"""Replies in the Gemini API's format: a `GenerateContentResponse`'s first candidate, its finish reason and safety
verdict, `usageMetadata`, and the chunks of `streamGenerateContent` (https://ai.google.dev/api/generate-content,
read 2026-12-07).

- Usage: `promptTokenCount` includes the cached tokens (`cachedContentTokenCount`); `candidatesTokenCount` leaves
  out the thinking (`thoughtsTokenCount`), which is billed as output
  (https://ai.google.dev/gemini-api/docs/tokens and docs/thinking#pricing). So the uncached input is the prompt
  less the cache, plus `toolUsePromptTokenCount`; the output is candidates plus thoughts, the thoughts its
  reasoning. Each stream chunk repeats the running totals; the stream assembler keeps the largest.
- A blocked prompt (`promptFeedback.blockReason`) or reply (`finishReason` SAFETY, RECITATION, BLOCKLIST,
  PROHIBITED_CONTENT, SPII, IMAGE_SAFETY) is a refusal: `finish_reason="content_filter"` and `Message.refusal`
  saying why, so `response_model` raises `RefusalError`.
- Thought parts (`"thought": true`) are the reasoning; a `thoughtSignature` on any part is kept as the
  message's `reasoning_signature`.
"""

from __future__ import annotations

from typing import Any

from llmclient.drivers.gemini.contents import GENERATED_ID
from llmclient.drivers.toolkit import StreamState
from llmclient.types import ChatChunk, FinishReason, Message, ToolCall, ToolCallDelta, Usage, reported_tokens

BLOCKED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"})
FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "OTHER": "error",
}


def usage_from_wire(metadata: dict[str, Any]) -> Usage:
    """`usageMetadata` as llmclient's usage; `Usage(estimated=True)` when a figure is implausible."""
    names = ("promptTokenCount", "cachedContentTokenCount", "toolUsePromptTokenCount", "candidatesTokenCount")
    figures = [reported_tokens(metadata.get(name)) for name in (*names, "thoughtsTokenCount")]
    if any(figure is None for figure in figures):
        return Usage(estimated=True)
    prompt, cached, tool_use, candidates, thoughts = (int(figure or 0) for figure in figures)
    return Usage(
        input_tokens=max(0, prompt - cached) + tool_use,
        cached_input_tokens=cached,
        output_tokens=candidates + thoughts,
        reasoning_tokens=thoughts,
    )


def blocked_prompt(data: dict[str, Any]) -> str | None:
    """Why the prompt was blocked, when it was (no candidates then)."""
    reason = (data.get("promptFeedback") or {}).get("blockReason")
    return f"Gemini blocked the prompt ({reason})" if reason and not data.get("candidates") else None


def finish_from_wire(reason: str | None, called: bool) -> FinishReason:
    """A candidate's `finishReason` as ours."""
    if reason in BLOCKED:
        return "content_filter"
    mapped = FINISH_REASONS.get(reason or "STOP", "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


class Parts:
    """What a candidate's parts say: text, thoughts, calls (numbered in arrival order) and the signature."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self, parts: list[dict[str, Any]]) -> tuple[str, str, list[ToolCall], str | None]:
        """The text, the reasoning, the calls and the last thought signature of some parts."""
        text, reasoning, calls, signature = [], [], [], None
        for part in parts:
            signature = part.get("thoughtSignature") or signature
            if "functionCall" in part:
                function = part["functionCall"]
                call_id = function.get("id") or f"{GENERATED_ID}{self.calls}"
                self.calls += 1
                calls.append(
                    ToolCall.model_validate(
                        {"id": call_id, "name": function["name"], "arguments": function.get("args") or {}}
                    )
                )
            elif part.get("thought"):
                reasoning.append(part.get("text") or "")
            elif "text" in part:
                text.append(part["text"])
        return "".join(text), "".join(reasoning), calls, signature


def message_from_wire(data: dict[str, Any]) -> tuple[Message, FinishReason]:
    """The first candidate's message and why it stopped (KeyError/TypeError on a malformed reply)."""
    blocked = blocked_prompt(data)
    if blocked is not None:
        return Message(role="assistant", refusal=blocked), "content_filter"
    candidate = data["candidates"][0]
    text, reasoning, calls, signature = Parts().read((candidate.get("content") or {}).get("parts") or [])
    reason = candidate.get("finishReason")
    finish = finish_from_wire(reason, bool(calls))
    return (
        Message(
            role="assistant",
            content=text if text or not calls else None,
            tool_calls=calls or None,
            reasoning=reasoning or None,
            reasoning_signature=signature,
            refusal=f"Gemini blocked the reply ({reason})" if finish == "content_filter" else None,
        ),
        finish,
    )


class StreamChunks(StreamState):
    """The chunks of `streamGenerateContent`'s events; it has finished once a candidate gave its finish reason."""

    finish: FinishReason | None = None

    def __init__(self, model: str, request_id: str | None = None) -> None:
        super().__init__(model, request_id)
        self.parts = Parts()

    def take(self, event: str, payload: dict[str, Any]) -> ChatChunk | None:
        """The chunk of one event (None when it carries nothing); KeyError/TypeError on a malformed one."""
        self.model = payload.get("modelVersion") or self.model
        usage = usage_from_wire(payload["usageMetadata"]) if payload.get("usageMetadata") else None
        blocked = blocked_prompt(payload)
        if blocked is not None:
            self.finish, self.finished = "content_filter", True
            return ChatChunk(refusal_delta=blocked, finish_reason="content_filter", usage=usage, model=self.model)
        candidate = (payload.get("candidates") or [{}])[0]
        first = self.parts.calls
        text, reasoning, calls, signature = self.parts.read((candidate.get("content") or {}).get("parts") or [])
        reason = candidate.get("finishReason")
        if reason:
            self.finish, self.finished = finish_from_wire(reason, self.parts.calls > 0), True
        self.text.append(text)
        self.started = self.started or bool(text or reasoning or calls)
        deltas = [
            ToolCallDelta(index=first + n, id=c.id, name=c.name, arguments=c.raw_arguments) for n, c in enumerate(calls)
        ]
        refusal = f"Gemini blocked the reply ({reason})" if self.finish == "content_filter" else ""
        if not (text or reasoning or deltas or signature or reason or usage):
            return None
        return ChatChunk(
            delta=text,
            reasoning_delta=reasoning,
            reasoning_signature=signature,
            refusal_delta=refusal,
            tool_call_deltas=deltas,
            finish_reason=self.finish if reason else None,
            usage=usage,
            model=self.model,
            request_id=self.request_id or payload.get("responseId"),
        )


__all__ = [
    "BLOCKED",
    "Parts",
    "StreamChunks",
    "blocked_prompt",
    "finish_from_wire",
    "message_from_wire",
    "usage_from_wire",
]
