"""Replies in OpenAI's chat format: a chat completion's choices, usage and log probabilities, and stream chunks
(https://platform.openai.com/docs/api-reference/chat/object, `chat/streaming`; the OpenAPI spec's
`CreateChatCompletionResponse` and `CreateChatCompletionStreamResponse`, checked by tests/conformance).

Every choice is kept (`n > 1`), with its refusal, annotations, audio and log probabilities; a legacy
`function_call` reply becomes a tool call; DeepSeek's `reasoning_content` (and the `reasoning` some compatible
servers send) becomes the message's `reasoning`, an empty one kept as "" (it tells a thinking-mode reply).
"""

from __future__ import annotations

from typing import Any

from llmclient.drivers.toolkit import finish_from_wire
from llmclient.types import (
    ChatChunk,
    Choice,
    FinishReason,
    Message,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
    reported_tokens,
)


def choices_from_wire(data: dict[str, Any]) -> list[Choice]:
    """Every choice of a chat completion, in index order (KeyError/TypeError/ValueError on a malformed one)."""
    wire_choices = data["choices"]
    if not wire_choices:
        raise ValueError("a chat completion without choices")
    choices = [_choice(choice) for choice in wire_choices]
    return sorted(choices, key=lambda choice: choice.index)


def _choice(choice: dict[str, Any]) -> Choice:
    message = message_from_wire(choice["message"])
    reason = choice.get("finish_reason")
    return Choice(
        index=int(choice.get("index") or 0),
        message=message,
        finish_reason=finish_from_wire(reason, called=bool(message.tool_calls)) if reason else None,
        logprobs=logprobs_from_wire(choice.get("logprobs")),
    )


def message_from_wire(wire: dict[str, Any]) -> Message:
    """An assistant message from a reply (only the fields the API documents are read)."""
    calls = [ToolCall.model_validate(call) for call in wire.get("tool_calls") or ()]
    legacy = wire.get("function_call")
    if legacy and not calls:  # the deprecated single function call: one tool call, so `run` can answer it
        calls = [ToolCall.model_validate({"id": "call_0", "function": legacy})]
    reasoning = wire.get("reasoning_content")
    if reasoning is None:
        reasoning = wire.get("reasoning")
    return Message(
        role="assistant",
        content=wire.get("content"),
        tool_calls=calls or None,
        reasoning=reasoning if isinstance(reasoning, str) else None,
        refusal=wire.get("refusal"),
        annotations=wire.get("annotations") or None,
        audio=wire.get("audio") or None,
    )


def logprobs_from_wire(logprobs: Any) -> list[TokenLogprob] | None:
    """A choice's `logprobs.content` (or, for a refusal, `logprobs.refusal`) as `TokenLogprob`s; None without."""
    if not isinstance(logprobs, dict):
        return None
    tokens = logprobs.get("content") or logprobs.get("refusal")
    return [TokenLogprob.model_validate(token) for token in tokens] if tokens else None


def usage_from_wire(usage: dict[str, Any]) -> Usage:
    """OpenAI's usage; `Usage(estimated=True)` when any figure is implausible (`reported_tokens`), so the caller
    counts it locally instead of pricing a server's `prompt_tokens: 1e30`."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    prompt = reported_tokens(usage.get("prompt_tokens"))
    cached = reported_tokens(prompt_details.get("cached_tokens"))
    written = reported_tokens(prompt_details.get("cache_write_tokens"))
    reasoning = reported_tokens((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    output = reported_tokens(usage.get("completion_tokens"))
    if prompt is None or cached is None or written is None or reasoning is None or output is None:
        return Usage(estimated=True)
    return Usage(
        input_tokens=max(0, prompt - cached - written),
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=output,
        reasoning_tokens=reasoning,
    )


def chunks_from_wire(payload: dict[str, Any]) -> list[tuple[ChatChunk | None, int, FinishReason | None]]:
    """Each choice of an OpenAI stream event: its chunk (None when it carries nothing), its index and its finish
    reason."""
    out: list[tuple[ChatChunk | None, int, FinishReason | None]] = []
    for choice in payload.get("choices") or ():
        index = int(choice.get("index") or 0)
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        refusal = delta.get("refusal") or ""
        calls = delta.get("tool_calls")
        if not calls and delta.get("function_call"):  # the deprecated single function call, streamed
            calls = [{"index": 0, "id": "call_0", "function": delta["function_call"]}]
        logprobs = logprobs_from_wire(choice.get("logprobs"))
        chunk = None
        if content or reasoning or refusal or calls or logprobs:
            chunk = ChatChunk(
                delta=content,
                reasoning_delta=reasoning,
                refusal_delta=refusal,
                tool_call_deltas=[_tool_call_delta(call) for call in calls] if calls else [],
                logprobs=logprobs,
                choice=index,
            )
        reason = choice.get("finish_reason")
        out.append((chunk, index, finish_from_wire(reason) if reason else None))
    return out


def _tool_call_delta(call: dict[str, Any]) -> ToolCallDelta:
    function = call.get("function") or {}
    return ToolCallDelta(
        index=int(call.get("index", 0)),
        id=call.get("id"),
        name=function.get("name"),
        arguments=function.get("arguments") or "",
    )


class StreamState:
    """What a streamed chat completion has sent so far: each choice's finish reason, the usage, the model, the
    service tier, and the text (the first choice's, for a cut stream's partial text; every choice's, to count)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.generated: list[str] = []
        self.reasons: dict[int, FinishReason] = {}
        self.usage: Usage | None = None
        self.service_tier: str | None = None
        self.started = False

    def take(self, payload: dict[str, Any], usage_of: Any) -> list[ChatChunk]:
        """The chunks of one stream event, its usage and finish reasons noted (`usage_of` reads a usage object)."""
        self.model = payload.get("model") or self.model
        self.service_tier = payload.get("service_tier") or self.service_tier
        if payload.get("usage"):
            usage = usage_of(payload["usage"])
            self.usage = None if usage.estimated else usage  # implausible: counted at the end
        chunks = []
        for chunk, index, reason in chunks_from_wire(payload):
            if reason is not None:
                self.reasons[index] = reason
            if chunk is not None:
                if index == 0:
                    self.text.append(chunk.delta)
                self.generated += [chunk.delta, chunk.refusal_delta, *(d.arguments for d in chunk.tool_call_deltas)]
                self.started = True
                chunks.append(chunk)
        return chunks

    def final_chunks(self, usage: Usage, request_id: str | None) -> list[ChatChunk]:
        """Each other choice's finish, then the first choice's with the usage of the whole reply."""
        others = [
            ChatChunk(choice=index, finish_reason=reason) for index, reason in sorted(self.reasons.items()) if index
        ]
        last = ChatChunk(
            finish_reason=self.reasons.get(0),
            usage=usage,
            model=self.model,
            request_id=request_id,
            service_tier=self.service_tier,
        )
        return [*others, last]
