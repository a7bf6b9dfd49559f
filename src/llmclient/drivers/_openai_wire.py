"""What the HTTP drivers (openai.py, ollama.py) share about OpenAI-style wire data: tool calls as stream deltas."""

from __future__ import annotations

from collections.abc import Sequence

from llmclient.types import ToolCall, ToolCallDelta


def call_deltas(calls: Sequence[ToolCall], first: int = 0) -> list[ToolCallDelta]:
    """Whole tool calls as stream deltas (one per call, numbered from `first`), for backends that send each call in
    one piece."""
    return [
        ToolCallDelta(index=first + n, id=call.id, name=call.name, arguments=call.raw_arguments)
        for n, call in enumerate(calls)
    ]
