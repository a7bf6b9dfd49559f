"""Stream assembly, part of the driver toolkit: streamed chunks joined into one reply, as every wire sends them.

`StreamAssembler` is what `Client.stream` uses to build `ChatStream.response`, and what a driver may use to build
its `chat` reply from its own stream. It takes chunks as drivers yield them:

- Tool calls are joined by `ToolCallDelta.index`, the driver's own number for the call: OpenAI's `index`,
  Anthropic's content-block index (which counts the text blocks too, so a reply's calls may be numbered 1 and 3),
  or a counter of the driver's own. Numbers need not be dense nor start at 0; calls come out in number order.
  A fragment's `id` and `name` may arrive in any fragment of the call; its arguments are joined in order.
- Usage may arrive in several chunks. Each figure of a chunk's `usage` is the running total the provider reports
  for it so far (Anthropic's `message_start` carries the input, its `message_delta` the cumulative output; Gemini
  repeats the whole `usageMetadata` in each chunk); a figure a chunk does not report is 0. The assembler keeps the
  largest value seen of each figure, so the reply's usage is complete whichever chunks carried which figures.
- With `n > 1` each chunk names its reply (`choice`); each reply is assembled on its own.

```python
from llmclient import ChatChunk, ChatRequest, ToolCallDelta, Usage
from llmclient.drivers.streams import StreamAssembler

assembler = StreamAssembler()
assembler.add(ChatChunk(delta="Checking.", usage=Usage(input_tokens=40, cached_input_tokens=8)))
assembler.add(ChatChunk(tool_call_deltas=[ToolCallDelta(index=1, id="toolu_1", name="get_weather")]))
assembler.add(ChatChunk(tool_call_deltas=[ToolCallDelta(index=1, arguments='{"city": "Paris"}')]))
assembler.add(ChatChunk(finish_reason="tool_calls", usage=Usage(output_tokens=12)))
reply = assembler.response(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]), "p")
assert reply.tool_calls[0].arguments == {"city": "Paris"}
assert reply.usage == Usage(input_tokens=40, cached_input_tokens=8, output_tokens=12)
```
"""

from __future__ import annotations

from typing import Any

from llmclient.types import ChatChunk, ChatRequest, ChatResponse, Choice, Message, TokenLogprob, ToolCall, Usage

_FIGURES = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "cache_write_tokens")


class _Reply:
    """What has arrived of one reply (one choice)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.signature: str | None = None
        self.refusal: list[str] = []
        self.logprobs: list[TokenLogprob] | None = None
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: Any = None

    def add(self, chunk: ChatChunk) -> None:
        if chunk.delta:
            self.text.append(chunk.delta)
        if chunk.reasoning_delta:
            self.reasoning.append(chunk.reasoning_delta)
        if chunk.reasoning_signature:
            self.signature = chunk.reasoning_signature
        if chunk.refusal_delta:
            self.refusal.append(chunk.refusal_delta)
        if chunk.logprobs:
            self.logprobs = (self.logprobs or []) + chunk.logprobs
        for delta in chunk.tool_call_deltas:
            call = self.calls.setdefault(delta.index, {"id": "", "name": "", "arguments": []})
            if delta.id:
                call["id"] = delta.id
            if delta.name:
                call["name"] += delta.name
            call["arguments"].append(delta.arguments)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason

    def message(self) -> Message:
        calls = [
            ToolCall.model_validate({"id": c["id"], "name": c["name"], "arguments": "".join(c["arguments"])})
            for _, c in sorted(self.calls.items())
        ]
        refusal = "".join(self.refusal) or None
        return Message(
            role="assistant",
            content="".join(self.text) if self.text or not (calls or refusal) else None,
            tool_calls=calls or None,
            reasoning="".join(self.reasoning) or None,
            reasoning_signature=self.signature,
            refusal=refusal,
        )

    def generated(self) -> str:
        return (
            "".join(self.text) + "".join(self.refusal) + "".join("".join(c["arguments"]) for c in self.calls.values())
        )


class StreamAssembler:
    """Joins streamed chunks into one reply (one per choice, with `n > 1`); see the module doc for the rules."""

    def __init__(self) -> None:
        self.replies: dict[int, _Reply] = {}
        self.usage: Usage | None = None
        """The usage so far: the largest value seen of each figure (None until a chunk carries usage)."""
        self.model: str | None = None
        self.request_id: str | None = None
        self.service_tier: str | None = None
        self.received = False
        """Whether any chunk has arrived."""

    def add(self, chunk: ChatChunk) -> None:
        """Take in one chunk."""
        self.received = True
        reply = self.replies.get(chunk.choice)
        if reply is None:
            reply = self.replies[chunk.choice] = _Reply()
        reply.add(chunk)
        if chunk.usage is not None:
            self.usage = chunk.usage if self.usage is None else accumulate(self.usage, chunk.usage)
        self.model = chunk.model or self.model
        self.request_id = chunk.request_id or self.request_id
        self.service_tier = chunk.service_tier or self.service_tier

    def text(self) -> str:
        """The first reply's text so far."""
        first = self.replies.get(0)
        return "".join(first.text) if first else ""

    def generated(self) -> str:
        """Everything generated so far, every reply's (to estimate the output of a cut stream)."""
        return "".join(reply.generated() for reply in self.replies.values())

    def response(self, request: ChatRequest, provider: str) -> ChatResponse:
        """The assembled reply (usage flagged as estimated when the stream carried none)."""
        replies = [(index, self.replies[index]) for index in sorted(self.replies)] or [(0, _Reply())]
        choices = [
            Choice(index=index, message=reply.message(), finish_reason=reply.finish_reason, logprobs=reply.logprobs)
            for index, reply in replies
        ]
        return reply_of(
            choices,
            usage=self.usage or Usage(estimated=True),
            model=self.model or request.model,
            provider=provider,
            request_id=self.request_id,
            service_tier=self.service_tier,
        )


def reply_of(choices: list[Choice], **fields: Any) -> ChatResponse:
    """A reply from its choices (the first is `message`, `finish_reason` and `logprobs`; `choices` is kept only
    when there are several) and its other `fields`."""
    first = choices[0]
    several = choices if len(choices) > 1 else []
    return ChatResponse(
        message=first.message, finish_reason=first.finish_reason, logprobs=first.logprobs, choices=several, **fields
    )


def accumulate(so_far: Usage, reported: Usage) -> Usage:
    """Usage reported in several chunks, each figure a running total: the largest value of each, estimated when
    either was."""
    figures = {name: max(getattr(so_far, name), getattr(reported, name)) for name in _FIGURES}
    return Usage(**figures, estimated=so_far.estimated or reported.estimated)


__all__ = ["StreamAssembler", "accumulate", "reply_of"]
