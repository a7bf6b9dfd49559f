"""Replies in Anthropic's Messages format: a message's content blocks, stop reason and usage, and the events of a
stream (https://platform.claude.com/docs/en/api/messages and build-with-claude/streaming, read 2026-12-07).

- Usage: `input_tokens` counts the prompt tokens neither read from nor written to the cache; the cache's are
  `cache_read_input_tokens` and `cache_creation_input_tokens` (https://platform.claude.com/docs/en/
  build-with-claude/prompt-caching#tracking-cache-performance). Thinking is billed as output and not reported
  apart, so `reasoning_tokens` stays 0.
- A stream's usage comes in two events: `message_start` (the input and the cache's, and a first output count) and
  `message_delta` (the cumulative output). Each becomes a chunk's usage; the stream assembler keeps the largest of
  each figure (`llmclient.drivers.streams`).
- Streamed blocks are numbered by `index`, text and thinking blocks included; a tool call keeps its block's index.
"""

from __future__ import annotations

import json
from typing import Any

from llmclient.drivers.toolkit import StreamState
from llmclient.types import ChatChunk, FinishReason, Message, ToolCall, ToolCallDelta, Usage, reported_tokens

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool's long turn paused; the reply so far is whole
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic's stop reasons (https://platform.claude.com/docs/en/build-with-claude/handling-stop-reasons)."""


def usage_from_wire(usage: dict[str, Any]) -> Usage:
    """A message's usage; `Usage(estimated=True)` when a figure is implausible (to be counted instead)."""
    figures = [
        reported_tokens(usage.get(name))
        for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")
    ]
    if any(figure is None for figure in figures):
        return Usage(estimated=True)
    uncached, cached, written, output = (int(figure or 0) for figure in figures)
    return Usage(input_tokens=uncached, cached_input_tokens=cached, cache_write_tokens=written, output_tokens=output)


def message_from_wire(data: dict[str, Any]) -> tuple[Message, FinishReason]:
    """The assistant message of a reply and why it stopped (KeyError/TypeError on a malformed one)."""
    texts: list[str] = []
    reasoning: list[str] = []
    signature: str | None = None
    calls: list[ToolCall] = []
    for block in data["content"]:
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
        elif kind == "thinking":
            reasoning.append(block["thinking"])
            signature = block.get("signature") or signature
        elif kind == "redacted_thinking":
            signature = block["data"]
        elif kind == "tool_use":
            raw = json.dumps(block["input"], ensure_ascii=False)
            calls.append(ToolCall(id=block["id"], name=block["name"], arguments=block["input"], raw_arguments=raw))
    finish = STOP_REASONS.get(data.get("stop_reason") or "", "stop")
    text = "".join(texts)
    message = Message(
        role="assistant",
        content=text if text or not calls else None,
        tool_calls=calls or None,
        reasoning="".join(reasoning) if reasoning else None,
        reasoning_signature=signature,
        refusal=(text or "Claude declined to answer") if finish == "content_filter" else None,
    )
    return message, finish


class StreamEvents(StreamState):
    """A stream's events as chunks; it has finished at `message_stop`."""

    finish: FinishReason | None = None

    def take(self, event: str, payload: dict[str, Any]) -> ChatChunk | None:
        """The chunk of one event (None when it carries nothing); KeyError/TypeError on a malformed one."""
        kind = payload.get("type", event)
        if kind == "message_start":
            message = payload["message"]
            self.model = message.get("model") or self.model
            usage = usage_from_wire(message["usage"]) if message.get("usage") else None
            return ChatChunk(usage=usage, model=self.model, request_id=self.request_id or message.get("id"))
        if kind == "content_block_start":
            return self._block_start(int(payload["index"]), payload["content_block"])
        if kind == "content_block_delta":
            return self._delta(int(payload["index"]), payload["delta"])
        if kind == "message_delta":
            reason = (payload.get("delta") or {}).get("stop_reason")
            self.finish = STOP_REASONS.get(reason or "", "stop")
            usage = usage_from_wire(payload["usage"]) if payload.get("usage") else None
            refusal = ("".join(self.text) or "Claude declined to answer") if self.finish == "content_filter" else ""
            return ChatChunk(finish_reason=self.finish, usage=usage, refusal_delta=refusal)
        if kind == "message_stop":
            self.stopped = self.finished = True
        return None  # ping, content_block_stop, and events this version does not know

    def _block_start(self, index: int, block: dict[str, Any]) -> ChatChunk | None:
        kind = block.get("type")
        if kind == "tool_use":
            self.started = True
            delta = ToolCallDelta(index=index, id=block["id"], name=block["name"], arguments="")
            return ChatChunk(tool_call_deltas=[delta])
        if kind == "redacted_thinking":
            return ChatChunk(reasoning_signature=block["data"])
        if kind == "text" and block.get("text"):
            return self._text(block["text"])
        return None

    def _delta(self, index: int, delta: dict[str, Any]) -> ChatChunk | None:
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta["text"])
        if kind == "input_json_delta":
            self.started = True
            return ChatChunk(tool_call_deltas=[ToolCallDelta(index=index, arguments=delta["partial_json"])])
        if kind == "thinking_delta":
            self.started = True
            return ChatChunk(reasoning_delta=delta["thinking"])
        if kind == "signature_delta":
            return ChatChunk(reasoning_signature=delta["signature"])
        return None  # citations_delta and what this version does not know

    def _text(self, text: str) -> ChatChunk:
        self.started = True
        self.text.append(text)
        return ChatChunk(delta=text)


__all__ = ["STOP_REASONS", "StreamEvents", "message_from_wire", "usage_from_wire"]
