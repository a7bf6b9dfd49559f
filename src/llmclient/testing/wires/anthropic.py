"""Anthropic's Messages wire, as its API reference documents it, for the scripted server.

Messages follow https://platform.claude.com/docs/en/api/messages, streams the event flow of
https://platform.claude.com/docs/en/build-with-claude/streaming (`message_start`, `content_block_start`, `ping`,
`content_block_delta`, `content_block_stop`, `message_delta` with the cumulative usage, `message_stop`), errors
https://platform.claude.com/docs/en/api/errors, token counts build-with-claude/token-counting (read 2026-12-07).
Anthropic reports cache reads and writes but no reasoning tokens apart from the output.
"""

from __future__ import annotations

import json
from typing import Any

from llmclient.testing.script import Failure, Reply, ScriptedUsage, split
from llmclient.testing.server import Answer, Request

_ERRORS: dict[str, tuple[int, str, str]] = {
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "model_not_found": (404, "not_found_error", "model: claude-nonexistent"),
    "rate_limit": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "server": (500, "api_error", "Internal server error"),
    "context_window": (400, "invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}


def usage_to_wire(usage: ScriptedUsage) -> dict[str, Any]:
    """Anthropic's usage object: `input_tokens` excludes what was read from or written to the cache."""
    return {
        "input_tokens": usage.input,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cached,
        "output_tokens": usage.output,
    }


def content_to_wire(reply: Reply) -> list[dict[str, Any]]:
    """A reply's content blocks: thinking (with its signature), text, then each tool call."""
    blocks: list[dict[str, Any]] = []
    if reply.reasoning:
        blocks.append({"type": "thinking", "thinking": reply.reasoning, "signature": reply.signature or ""})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in reply.calls]
    return blocks


def stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.calls else {"stop": "end_turn", "length": "max_tokens"}.get(reply.finish, "end_turn")


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


class AnthropicWire:
    """Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`)."""

    reports = frozenset({"cached", "cache_write"})

    def __init__(self, counted_tokens: int = 21) -> None:
        self.counted_tokens = counted_tokens
        """What the count-tokens endpoint answers."""

    def side(self, request: Request) -> Answer | None:
        if request.path.endswith("/messages/count_tokens"):
            return Answer.json({"input_tokens": self.counted_tokens})
        return None

    def reply(self, reply: Reply, request: Request, number: int) -> Answer:
        body = request.json()
        headers = {"request-id": f"req_{number:024d}"}
        if body.get("stream"):
            events = self._events(reply, body, number)
            if reply.hang:
                return Answer(200, events[:4], {"content-type": "text/event-stream", **headers}, hang=True)
            return Answer(200, events, {"content-type": "text/event-stream", **headers})
        message = self._message(reply, body, number)
        message.update(content=content_to_wire(reply), stop_reason=stop_reason(reply), usage=usage_to_wire(reply.usage))
        return Answer.json(message, headers=headers)

    def _message(self, reply: Reply, body: dict[str, Any], number: int) -> dict[str, Any]:
        return {
            "id": f"msg_{number:024d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }

    def _events(self, reply: Reply, body: dict[str, Any], number: int) -> list[bytes]:
        usage = usage_to_wire(reply.usage)
        start = {**self._message(reply, body, number), "usage": {**usage, "output_tokens": 1}}
        events = [
            _event("message_start", {"type": "message_start", "message": start}),
            _event("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(content_to_wire(reply)):
            events += self._block(index, block, reply.pieces)
        final = {"type": "message_delta", "delta": {"stop_reason": stop_reason(reply), "stop_sequence": None}}
        events.append(_event("message_delta", {**final, "usage": {"output_tokens": reply.usage.output}}))
        events.append(_event("message_stop", {"type": "message_stop"}))
        return events

    def _block(self, index: int, block: dict[str, Any], pieces: int) -> list[bytes]:
        kind = block["type"]
        opening = {**block, "thinking": ""} if kind == "thinking" else {**block, "text": ""} if kind == "text" else {}
        if kind == "tool_use":
            opening = {**block, "input": {}}
        if kind == "thinking":
            opening.pop("signature")
        events = [
            _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
        ]
        if kind == "text":
            deltas = [{"type": "text_delta", "text": piece} for piece in split(block["text"], pieces)]
        elif kind == "thinking":
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in split(block["thinking"], pieces)]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            raw = json.dumps(block["input"], separators=(",", ":"))
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in split(raw, pieces)]
        events += [
            _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
        ]
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        return events

    def failure(self, failure: Failure, request: Request) -> Answer:
        status, kind, message = _ERRORS[failure.kind]
        headers = {"request-id": "req_failed"}
        if failure.retry_after is not None:
            headers["retry-after"] = str(int(failure.retry_after))
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_failed"}
        return Answer.json(body, status, headers)

    def tool_results(self, request: Request) -> list[tuple[str, str]]:
        results = []
        for message in request.json()["messages"]:
            content = message["content"]
            for block in content if isinstance(content, list) else ():
                if block["type"] == "tool_result":
                    results.append((block["tool_use_id"], _text(block.get("content"))))
        return results


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return content or ""


__all__ = ["AnthropicWire", "content_to_wire", "stop_reason", "usage_to_wire"]
