"""What the HTTP drivers (OpenAI's family and Ollama) share: finish reasons, tool calls as stream deltas, stream
payloads that are JSON objects or errors, embedding vectors, and which tokenizer counts a model's tokens. OpenAI's
chat format is in `messages.py` (out) and `replies.py` (in); Ollama's in `llmclient.drivers.ollama.wire`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llmclient import tokens
from llmclient.errors import StreamDecodeError, StreamError, loads
from llmclient.types import FinishReason, Message, TokenCount, Tool, ToolCall, ToolCallDelta

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

E = TypeVar("E", bound=StreamError)

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "insufficient_system_resource": "error",  # DeepSeek: the reply was cut by a server-side shortage
}


def finish_from_wire(reason: str | None, *, called: bool = False) -> FinishReason:
    """A provider's finish reason as ours ("stop" for one it does not document).

    Args:
        reason: The reason on the wire.
        called: Whether the reply called tools, for backends that say "stop" after tool calls too (Ollama).
    """
    mapped = FINISH_REASONS.get(reason, "stop") if reason else "stop"
    return "tool_calls" if called and mapped == "stop" else mapped


def call_deltas(calls: Sequence[ToolCall], first: int = 0) -> list[ToolCallDelta]:
    """Whole tool calls as stream deltas (one per call, numbered from `first`), for backends that send each call in
    one piece."""
    return [
        ToolCallDelta(index=first + n, id=call.id, name=call.name, arguments=call.raw_arguments)
        for n, call in enumerate(calls)
    ]


# -- streams -------------------------------------------------------------------------------------------------------


def stream_error(
    kind: type[E], what: str, *, provider: str, model: str, partial: Sequence[str], request_id: str | None = None
) -> E:
    """A stream error that says which provider `what` happened to and carries the text received so far."""
    message = f"{provider} {what}"
    return kind(message, partial_text="".join(partial), provider=provider, model=model, request_id=request_id)


def stream_payload(data: bytes, *, unit: str, provider: str, model: str, partial: Sequence[str]) -> dict[str, Any]:
    """One stream event (`unit`: "stream event", "line") as a JSON object, else `StreamDecodeError`."""
    try:
        payload = loads(data)
    except ValueError as exc:
        problem: str | None = str(exc)
    else:
        problem = None
    if problem is not None:  # raised outside the `except`: nothing that holds the event is chained
        what = f"sent a {unit} that is not JSON ({problem})"
        raise stream_error(StreamDecodeError, what, provider=provider, model=model, partial=partial)
    if not isinstance(payload, dict):
        what = f"sent a {unit} that is not an object"
        raise stream_error(StreamDecodeError, what, provider=provider, model=model, partial=partial)
    return payload


# -- embeddings and counting ---------------------------------------------------------------------------------------


def vectors_from_wire(items: list[dict[str, Any]], expected: int) -> npt.NDArray[np.float32]:
    """OpenAI's embedding items (float lists or base64 little-endian float32) as rows in input order."""
    import numpy as np  # only embeddings need it: a chat does not import numpy

    indices = [int(item["index"]) for item in items]
    if sorted(indices) != list(range(expected)):
        raise ValueError(f"embedding indices {sorted(indices)[:10]}… do not match {expected} inputs")
    ordered = [item["embedding"] for _, item in sorted(zip(indices, items, strict=True), key=lambda pair: pair[0])]
    if all(isinstance(embedding, list) for embedding in ordered):
        # Float lists: one conversion for the whole matrix (numpy refuses ragged rows with a ValueError).
        matrix = np.array(ordered, dtype=np.float32) if ordered else np.empty((0, 0), dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError("embeddings have different dimensions")
        return matrix
    rows = [
        np.frombuffer(base64.b64decode(embedding), dtype="<f4")
        if isinstance(embedding, str)
        else np.asarray(embedding, dtype=np.float32)
        for embedding in ordered
    ]
    if len({row.shape for row in rows}) != 1:
        raise ValueError("embeddings have different dimensions")
    return np.stack(rows).astype(np.float32, copy=False)


class TokenCounting:
    """Which tokenizer counts a model's tokens: the configured Hugging Face tokenizer (`tokenizer=`), exactly and by
    its chat template where it has one; else the one `fallback(model)` picks, exact or not as it says.

    Args:
        configured: The tokenizer from the driver's `tokenizer=` option, if any.
        fallback: The tokenizer for a model and whether its counts are exact (tiktoken for OpenAI's models).
    """

    def __init__(
        self, configured: tokens.HFTokenizer | None, fallback: Callable[[str], tuple[tokens.Tokenizer, bool]]
    ) -> None:
        self.configured = configured
        self._fallback = fallback
        self._chosen: dict[str, tuple[tokens.Tokenizer, bool]] = {}  # per model the driver serves (shared tokenizers)
        self._pending: dict[str, asyncio.Future[tuple[tokens.Tokenizer, bool]]] = {}

    async def tokenizer(self, model: str) -> tuple[tokens.Tokenizer, bool]:
        """The tokenizer for `model` and whether its counts are exact, loaded once, off the event loop."""
        configured = self.configured
        if configured is not None:
            if not configured.loaded:  # seconds for a GGUF

                def load_configured() -> tuple[tokens.Tokenizer, bool]:
                    configured.load()
                    return configured, True

                await self._load_once("", load_configured)
            return configured, True
        found = self._chosen.get(model)
        if found is None:
            found = self._chosen[model] = await self._load_once(model, lambda: self._fallback(model))
        return found

    async def _load_once(
        self, key: str, load: Callable[[], tuple[tokens.Tokenizer, bool]]
    ) -> tuple[tokens.Tokenizer, bool]:
        # One worker thread per cold key, however many calls arrive before it finishes: the rest await the same
        # future instead of each taking an executor thread to wait on the loader's lock. Shielded, so a cancelled
        # caller does not cancel the load the others wait for. A future from another (closed) loop is not reused.
        loop = asyncio.get_running_loop()
        pending = self._pending.get(key)
        if pending is None or pending.get_loop() is not loop:
            pending = self._pending[key] = asyncio.ensure_future(asyncio.to_thread(load))
            pending.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(pending)

    def _forget(self, key: str, done: asyncio.Future[tuple[tokens.Tokenizer, bool]]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so a load that failed with no one waiting is not logged as lost

    def fallback(self, model: str) -> tokens.Tokenizer | None:
        """The fallback tokenizer `model` was counted with, if it was."""
        found = self._chosen.get(model)
        return found[0] if found else None

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """Prompt tokens: exact by the configured tokenizer's chat template, else by the framing rules of
        `tokens.count_messages` (an estimate unless the fallback is the model's own tokenizer)."""
        tokenizer, exact = await self.tokenizer(model)
        if self.configured is not None:
            rendered = self.configured.count_chat(messages, tools)
            if rendered is not None:
                return TokenCount(tokens=rendered, exact=True, tokenizer=self.configured.name)
            exact = False  # the model's tokens, but framed by rules that are not its template
        return tokens.count_messages(messages, model, tools, tokenizer=tokenizer, exact=exact)

    async def count_text(self, model: str, text: str) -> TokenCount:
        """Tokens in plain text (no chat framing)."""
        tokenizer, exact = await self.tokenizer(model)
        return tokens.count_text(text, model, tokenizer=tokenizer, exact=exact)
