"""Ollama's native wire (`/api/chat` as one body or NDJSON lines, `/api/show`), as its API docs describe it
(https://github.com/ollama/ollama/blob/main/docs/api.md and docs/api/errors.mdx, read 2026-12-07), for the
scripted server. Ollama reports no cached or reasoning tokens (`Metrics` in api/types.go)."""

from __future__ import annotations

import json
from typing import Any

from llmclient.testing.script import Failure, Reply, split
from llmclient.testing.server import Answer, Request

_CREATED = "2026-12-07T09:00:00.000000Z"
_SHOW = {
    "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
    "capabilities": ["completion", "tools", "thinking"],
}


class OllamaWire:
    """Ollama's chat API."""

    reports: frozenset[str] = frozenset()

    def side(self, request: Request) -> Answer | None:
        return Answer.json(_SHOW) if request.path == "/api/show" else None

    def reply(self, reply: Reply, request: Request, number: int) -> Answer:
        body = request.json()
        done = {
            "done": True,
            "done_reason": "length" if reply.finish == "length" else "stop",
            "prompt_eval_count": reply.usage.prompt,
            "eval_count": reply.usage.output,
        }
        if not body.get("stream", True):
            return Answer.json({**self._line(body, reply.text, reply), **done})
        lines = [self._line(body, piece, None) for piece in _pieces(reply.text, reply.pieces)]
        lines.append(self._line(body, "", reply))  # Ollama sends each tool call whole, in one line
        lines.append({**self._line(body, "", None), **done})
        encoded = [(json.dumps(line) + "\n").encode() for line in lines]
        if reply.hang:
            return Answer(200, encoded[:1], {"content-type": "application/x-ndjson"}, hang=True)
        return Answer(200, encoded, {"content-type": "application/x-ndjson"})

    def _line(self, body: dict[str, Any], text: str, calls_of: Reply | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls_of is not None and calls_of.calls:
            message["tool_calls"] = [
                {"id": c.id, "function": {"index": i, "name": c.name, "arguments": c.arguments}}
                for i, c in enumerate(calls_of.calls)
            ]
        if calls_of is not None and calls_of.reasoning:
            message["thinking"] = calls_of.reasoning
        return {"model": body["model"], "created_at": _CREATED, "message": message, "done": False}

    def failure(self, failure: Failure, request: Request) -> Answer:
        model = (request.json() or {}).get("model", "m")
        status, message = {
            "auth": (401, "unauthorized"),
            "model_not_found": (404, f'model "{model}" not found, try pulling it first'),
            "rate_limit": (429, "too many requests"),
            "server": (500, "llama runner process has terminated: exit status 2"),
            "context_window": (400, "the input length exceeds the context length"),
            "overloaded": (503, "server busy, please try again.  maximum pending requests exceeded"),
        }[failure.kind]
        headers = {} if failure.retry_after is None else {"retry-after": str(failure.retry_after)}
        return Answer.json({"error": message}, status, headers)

    def tool_results(self, request: Request) -> list[tuple[str, str]]:
        messages = request.json()["messages"]
        return [(m.get("tool_call_id", ""), m.get("content", "")) for m in messages if m["role"] == "tool"]


def _pieces(text: str, pieces: int) -> list[str]:
    return [piece for piece in split(text, pieces) if piece]


__all__ = ["OllamaWire"]
