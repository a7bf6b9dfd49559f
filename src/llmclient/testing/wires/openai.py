"""OpenAI's Chat Completions wire, as its API reference documents it, for the scripted server; and DeepSeek's.

Replies follow https://platform.openai.com/docs/api-reference/chat/object, streams
https://platform.openai.com/docs/api-reference/chat-streaming (`stream_options.include_usage`: a last chunk with
no choices and the usage), errors https://platform.openai.com/docs/guides/error-codes (read 2026-12-07).
DeepSeek's differences (https://api-docs.deepseek.com/api/create-chat-completion, guides/kv_cache and
quick_start/error_codes): cache hits as `prompt_cache_hit_tokens`, an unknown model as 400 "Model Not Exist".
"""

from __future__ import annotations

import json
from typing import Any

from llmclient.testing.script import Failure, Reply, ScriptedUsage, split
from llmclient.testing.server import Answer, Request

_CREATED = 1765094400


class OpenAIWire:
    """OpenAI's chat completions (also what OpenAI-compatible servers speak)."""

    reports = frozenset({"cached", "cache_write", "reasoning"})

    def side(self, request: Request) -> Answer | None:
        return None

    def usage(self, usage: ScriptedUsage) -> dict[str, Any]:
        return {
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.output,
            "total_tokens": usage.prompt + usage.output,
            "prompt_tokens_details": {"cached_tokens": usage.cached, "cache_write_tokens": usage.cache_write},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
        }

    def reply(self, reply: Reply, request: Request, number: int) -> Answer:
        body = request.json()
        headers = {"x-request-id": f"req_{number}"}
        if body.get("stream"):
            events = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in self._chunks(reply, body, number)]
            if reply.hang:
                return Answer(200, events[:2], {"content-type": "text/event-stream", **headers}, hang=True)
            return Answer(200, [*events, b"data: [DONE]\n\n"], {"content-type": "text/event-stream", **headers})
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw}} for c in reply.calls
            ]
        completion = {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}],
            "usage": self.usage(reply.usage),
        }
        return Answer.json(completion, headers=headers)

    def _chunks(self, reply: Reply, body: dict[str, Any], number: int) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**base, "choices": [choice]}

        base = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "created": _CREATED}
        base["model"] = body["model"]
        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": piece}) for piece in split(reply.text, reply.pieces) if piece]
        for index, call in enumerate(reply.calls):
            opening = {"index": index, "id": call.id, "type": "function"}
            chunks.append(chunk({"tool_calls": [{**opening, "function": {"name": call.name, "arguments": ""}}]}))
            for piece in split(call.raw, reply.pieces):
                chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        chunks.append(chunk({}, _finish(reply)))
        chunks.append({**base, "choices": [], "usage": self.usage(reply.usage)})
        return chunks

    def failure(self, failure: Failure, request: Request) -> Answer:
        status, error = _OPENAI_ERRORS[failure.kind]
        headers = {"x-request-id": "req_failed"}
        if failure.retry_after is not None:
            headers["retry-after"] = str(failure.retry_after)
        return Answer.json({"error": {"param": None, **error}}, status, headers)

    def tool_results(self, request: Request) -> list[tuple[str, str]]:
        messages = request.json()["messages"]
        return [(m["tool_call_id"], _text(m.get("content"))) for m in messages if m["role"] == "tool"]


class DeepSeekWire(OpenAIWire):
    """DeepSeek's chat completions: OpenAI's, with its own usage fields and unknown-model answer."""

    reports = frozenset({"cached", "reasoning"})

    def usage(self, usage: ScriptedUsage) -> dict[str, Any]:
        return {
            "prompt_tokens": usage.prompt,
            "completion_tokens": usage.output,
            "total_tokens": usage.prompt + usage.output,
            "prompt_cache_hit_tokens": usage.cached,
            "prompt_cache_miss_tokens": usage.input,
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
        }

    def failure(self, failure: Failure, request: Request) -> Answer:
        if failure.kind == "model_not_found":
            body = {"error": {"message": "Model Not Exist", "type": "invalid_request_error", "param": None}}
            return Answer.json({**body}, 400)
        return super().failure(failure, request)


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.calls else reply.finish


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


_OPENAI_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "auth": (
        401,
        {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"},
    ),
    "model_not_found": (
        404,
        {"message": "The model `m` does not exist.", "type": "invalid_request_error", "code": "model_not_found"},
    ),
    "rate_limit": (
        429,
        {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"},
    ),
    "server": (500, {"message": "The server had an error while processing your request.", "type": "server_error"}),
    "context_window": (
        400,
        {
            "message": "This model's maximum context length is 128000 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        },
    ),
    "overloaded": (
        503,
        {"message": "The engine is currently overloaded, please try again later.", "type": "server_error"},
    ),
}

__all__ = ["DeepSeekWire", "OpenAIWire"]
