"""A loopback DeepSeek that answers as DeepSeek's documentation says, and refuses what it says is refused.

Every body is checked against deepseek/chat_request.schema.json (DeepSeek's documented request shape), and the
thinking-mode rule (https://api-docs.deepseek.com/guides/thinking_mode): an assistant message that called tools in
thinking mode must carry its `reasoning_content` back, unchanged, in every later request, or the answer is DeepSeek's
400 "The `reasoning_content` in the thinking mode must be passed back to the API.". This server is stricter than
DeepSeek on one point: it also refuses `reasoning_content` on any other message (DeepSeek ignores it there), so a
test passes only if the client sends it exactly where it is required.

It plays a fixed weather agent: a first call asks for `get_date`, the second for `get_weather`, the third answers.
"""

from __future__ import annotations

import json
from typing import Any

from conformance.schemas import errors
from hostile.server import Reply, Request

MISSING = "The `reasoning_content` in the thinking mode must be passed back to the API."


def _error(message: str) -> Reply:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}
    }
    return Reply(400, (json.dumps(body).encode(),), {"content-type": "application/json"})


class DeepSeekRules:
    """The script of a `HostileServer` (tests/hostile/server.py) that behaves as DeepSeek's docs describe."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refusals: list[str] = []
        self.thinking_calls: dict[str, str] = {}
        """Each tool call id this server made in thinking mode, with the reasoning it came with."""

    def __call__(self, request: Request) -> Reply:
        body = json.loads(request.body)
        self.bodies.append(body)
        problem = "; ".join(errors("deepseek", body)) or self.reasoning_problem(body["messages"])
        if problem:
            self.refusals.append(problem)
            return _error(problem)
        thinking = (body.get("thinking") or {}).get("type", "enabled") == "enabled"
        return self.answer(body, thinking)

    def reasoning_problem(self, messages: list[dict[str, Any]]) -> str | None:
        for number, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            made = [call["id"] for call in message.get("tool_calls") or () if call["id"] in self.thinking_calls]
            if made and "reasoning_content" not in message:
                return MISSING
            if made and message["reasoning_content"] != self.thinking_calls[made[0]]:
                return f"messages[{number}].reasoning_content is not the reasoning_content that came with it"
            if not made and "reasoning_content" in message:
                return f"messages[{number}] carries reasoning_content, which only a thinking-mode tool call needs"
        return None

    def answer(self, body: dict[str, Any], thinking: bool) -> Reply:
        step = sum(message["role"] == "tool" for message in body["messages"])
        reasoning = f"Step {step}: decide what to do next." if thinking else None
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        if step < 2:
            name, arguments = ("get_date", "{}") if step == 0 else ("get_weather", '{"city": "Hangzhou"}')
            call_id = f"call_0{step}_{len(self.bodies)}"
            message["tool_calls"] = [
                {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ]
            if reasoning is not None:
                self.thinking_calls[call_id] = reasoning
            finish = "tool_calls"
        else:
            message["content"] = "Tomorrow in Hangzhou: cloudy, 7-13°C."
            finish = "stop"
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        reply = {
            "id": f"chatcmpl-{len(self.bodies)}",
            "object": "chat.completion",
            "created": 1765094400,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "completion_tokens_details": {"reasoning_tokens": 8 if thinking else 0},
                "prompt_cache_hit_tokens": 64,
                "prompt_cache_miss_tokens": 36,
            },
        }
        return Reply(200, (json.dumps(reply).encode(),), {"content-type": "application/json"})
