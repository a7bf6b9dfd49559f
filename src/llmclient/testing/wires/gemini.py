"""The Gemini API's wire, as its reference documents it, for the scripted server.

Responses follow https://ai.google.dev/api/generate-content (`GenerateContentResponse`, `UsageMetadata`), streams
`streamGenerateContent?alt=sse` (each event a `GenerateContentResponse` with the running usage), errors
https://ai.google.dev/gemini-api/docs/troubleshooting with Google's error model (https://cloud.google.com/apis/
design/errors: `code`, `message`, `status`, `details`), counts https://ai.google.dev/api/tokens (read 2026-12-07).
Gemini reports cached and thinking tokens, and no cache writes.
"""

from __future__ import annotations

import json
from typing import Any

from llmclient.testing.script import Failure, Reply, ScriptedUsage, split
from llmclient.testing.server import Answer, Request

_MISSING_MODEL = (
    "models/{model} is not found for API version v1beta, or is not supported for generateContent. "
    "Call ListModels to see the list of available models and their supported methods."
)
_ERRORS: dict[str, tuple[int, str, str]] = {
    "auth": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
    "model_not_found": (404, "NOT_FOUND", _MISSING_MODEL),
    "rate_limit": (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing."),
    "server": (
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    "context_window": (
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    ),
    "overloaded": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
}


def usage_to_wire(usage: ScriptedUsage, *, final: bool = True) -> dict[str, Any]:
    """`usageMetadata`: the prompt count includes the cache, the candidates count leaves out the thoughts."""
    metadata: dict[str, Any] = {"promptTokenCount": usage.prompt}
    if usage.cached:
        metadata["cachedContentTokenCount"] = usage.cached
    if final:
        metadata["candidatesTokenCount"] = usage.output - usage.reasoning
        metadata["totalTokenCount"] = usage.prompt + usage.output
        if usage.reasoning:
            metadata["thoughtsTokenCount"] = usage.reasoning
    return metadata


class GeminiWire:
    """The Gemini API (`models/*:generateContent`, `:streamGenerateContent`, `:countTokens`)."""

    reports = frozenset({"cached", "reasoning"})

    def __init__(self, counted_tokens: int = 21) -> None:
        self.counted_tokens = counted_tokens

    def side(self, request: Request) -> Answer | None:
        if request.path.endswith(":countTokens"):
            return Answer.json({"totalTokens": self.counted_tokens})
        return None

    def reply(self, reply: Reply, request: Request, number: int) -> Answer:
        model = request.path.rsplit("/", 1)[-1].split(":")[0]
        if request.path.endswith(":streamGenerateContent"):
            events = [f"data: {json.dumps(event)}\r\n\r\n".encode() for event in self._events(reply, model, number)]
            if reply.hang:
                return Answer(200, events[:1], {"content-type": "text/event-stream"}, hang=True)
            return Answer(200, events, {"content-type": "text/event-stream"})
        parts = self._parts(reply, reply.text)
        return Answer.json(self._response(reply, model, number, parts, final=True))

    def _parts(self, reply: Reply, text: str, *, calls: bool = True) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if reply.reasoning:
            parts.append({"text": reply.reasoning, "thought": True})
        if text:
            parts.append({"text": text})
        if calls:
            for call in reply.calls:
                function = {"id": call.id, "name": call.name, "args": call.arguments} if call.id else {}
                parts.append({"functionCall": function or {"name": call.name, "args": call.arguments}})
        if reply.signature and parts:
            parts[-1]["thoughtSignature"] = reply.signature
        return parts

    def _response(
        self, reply: Reply, model: str, number: int, parts: list[dict[str, Any]], *, final: bool
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if final:
            candidate["finishReason"] = "MAX_TOKENS" if reply.finish == "length" else "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": usage_to_wire(reply.usage, final=final),
            "modelVersion": model,
            "responseId": f"resp-{number}",
        }

    def _events(self, reply: Reply, model: str, number: int) -> list[dict[str, Any]]:
        pieces = [piece for piece in split(reply.text, reply.pieces) if piece]
        events = [self._response(reply, model, number, [{"text": piece}], final=False) for piece in pieces]
        # Function calls arrive whole, after the text; the last event carries the finish reason and full usage.
        closing = self._parts(Reply(calls=reply.calls, signature=reply.signature), "")
        if reply.reasoning:
            events.insert(
                0, self._response(reply, model, number, [{"text": reply.reasoning, "thought": True}], final=False)
            )
        events.append(self._response(reply, model, number, closing or [{"text": ""}], final=True))
        return events

    def failure(self, failure: Failure, request: Request) -> Answer:
        status, code, message = _ERRORS[failure.kind]
        model = request.path.rsplit("/", 1)[-1].split(":")[0]
        details: list[dict[str, Any]] = []
        if failure.kind == "auth":
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            )
        if failure.retry_after is not None:
            details.append(
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{int(failure.retry_after)}s"}
            )
        error = {"code": status, "message": message.format(model=model), "status": code}
        if details:
            error["details"] = details
        return Answer.json({"error": error}, status)

    def tool_results(self, request: Request) -> list[tuple[str, str]]:
        results = []
        for content in request.json()["contents"]:
            for part in content["parts"]:
                if "functionResponse" in part:
                    response = part["functionResponse"]
                    results.append((response.get("id") or response["name"], str(response["response"].get("result"))))
        return results


__all__ = ["GeminiWire", "usage_to_wire"]
