"""What a scripted server answers, in llmclient's own terms; each `Wire` says it in its provider's format.

A script is a list of steps, one per model request: a `Reply` (the model answers), a `Failure` (the provider
answers with an error), or a `Reply` with `hang=True` (a stream that stops sending after its first pieces and
keeps the connection open, to test cancellation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

FailureKind = Literal["auth", "model_not_found", "rate_limit", "server", "context_window", "overloaded"]
"""The error answers every wire can give: 401, an unknown model, 429 with a retry delay, a 5xx, a prompt over the
context window, and the provider's "overloaded" answer."""


@dataclass(frozen=True)
class ScriptedUsage:
    """Usage as llmclient normalises it; a wire encodes it in its provider's fields.

    Args:
        input: Prompt tokens neither read from nor written to a cache.
        output: Output tokens, reasoning included.
        cached: Prompt tokens read from a cache.
        cache_write: Prompt tokens written to a cache.
        reasoning: Output tokens spent reasoning (part of `output`).
    """

    input: int = 12
    output: int = 5
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def prompt(self) -> int:
        """The whole prompt: uncached, cached and written."""
        return self.input + self.cached + self.cache_write


@dataclass(frozen=True)
class ScriptedCall:
    """A tool call the scripted model makes."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def raw(self) -> str:
        """The arguments as JSON text."""
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class Reply:
    """One answer of the scripted model.

    Args:
        text: Its text.
        calls: The tool calls it makes (in order).
        reasoning: Its reasoning text, where the wire carries one.
        signature: The signature of its reasoning, where the wire signs it.
        usage: What the provider reports it used.
        finish: Why it stopped ("stop", "length" or "tool_calls"; "tool_calls" when it makes calls).
        pieces: How many pieces a stream splits its text (and each call's arguments) into.
        hang: Streamed: stop after the first piece and keep the connection open (a stream the client cancels).
    """

    text: str = ""
    calls: tuple[ScriptedCall, ...] = ()
    reasoning: str = ""
    signature: str | None = None
    usage: ScriptedUsage = field(default_factory=ScriptedUsage)
    finish: Literal["stop", "length", "tool_calls"] = "stop"
    pieces: int = 3
    hang: bool = False


@dataclass(frozen=True)
class Failure:
    """An error answer.

    Args:
        kind: Which error (see `FailureKind`).
        retry_after: For "rate_limit" (and "overloaded" where the wire sends one): the seconds the answer asks
            the client to wait.
    """

    kind: FailureKind
    retry_after: float | None = None


Step = Reply | Failure


def split(text: str, pieces: int) -> list[str]:
    """`text` in `pieces` roughly equal parts (fewer when it is shorter), none empty unless the text is."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)]


__all__ = ["Failure", "FailureKind", "Reply", "ScriptedCall", "ScriptedUsage", "Step", "split"]
