"""What the HTTP drivers (openai.py, ollama.py) share about OpenAI-style wire data: messages and stream chunks in
OpenAI's chat format and in Ollama's variant of it, tool calls as stream deltas, finish reasons, stream payloads that
are JSON objects or errors, embedding vectors, and which tokenizer counts a model's tokens.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llmclient import tokens
from llmclient.errors import InvalidRequestError, StreamDecodeError, StreamError, loads
from llmclient.types import (
    ChatChunk,
    FinishReason,
    ImagePart,
    Message,
    TextPart,
    TokenCount,
    Tool,
    ToolCall,
    ToolCallDelta,
)

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


# -- OpenAI's chat format ------------------------------------------------------------------------------------------


def message_to_wire(message: Message) -> dict[str, Any]:
    """A message in OpenAI's chat format."""
    wire: dict[str, Any] = {"role": message.role}
    content = message.content
    if isinstance(content, list):
        wire["content"] = [_part_to_wire(part) for part in content]
    else:
        wire["content"] = content
    if message.name is not None:
        wire["name"] = message.name
    if message.tool_calls:
        wire["tool_calls"] = [call.to_openai() for call in message.tool_calls]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    # `reasoning` is never sent back: DeepSeek rejects reasoning_content in input messages
    # (https://api-docs.deepseek.com/guides/reasoning_model).
    return wire


def _part_to_wire(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.image_url.url}
    if part.image_url.detail is not None:
        image["detail"] = part.image_url.detail
    return {"type": "image_url", "image_url": image}


def chunks_from_wire(payload: dict[str, Any]) -> list[tuple[ChatChunk | None, FinishReason | None]]:
    """Each choice of an OpenAI stream event: its chunk (None when it carries nothing) and its finish reason."""
    out: list[tuple[ChatChunk | None, FinishReason | None]] = []
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        calls = delta.get("tool_calls")
        chunk = None
        if content or reasoning or calls:
            chunk = ChatChunk(
                delta=content,
                reasoning_delta=reasoning,
                tool_call_deltas=[_tool_call_delta(call) for call in calls] if calls else [],
            )
        reason = choice.get("finish_reason")
        out.append((chunk, finish_from_wire(reason) if reason else None))
    return out


def _tool_call_delta(call: dict[str, Any]) -> ToolCallDelta:
    function = call.get("function") or {}
    return ToolCallDelta(
        index=int(call.get("index", 0)),
        id=call.get("id"),
        name=function.get("name"),
        arguments=function.get("arguments") or "",
    )


def call_deltas(calls: Sequence[ToolCall], first: int = 0) -> list[ToolCallDelta]:
    """Whole tool calls as stream deltas (one per call, numbered from `first`), for backends that send each call in
    one piece."""
    return [
        ToolCallDelta(index=first + n, id=call.id, name=call.name, arguments=call.raw_arguments)
        for n, call in enumerate(calls)
    ]


# -- Ollama's chat format: OpenAI's shape with fields of its own ------------------------------------------------


def ollama_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in Ollama's chat format: text content, base64 `images`, `thinking`, calls with object arguments."""
    wire: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool-call id → tool name: Ollama matches a result by `tool_name`, not by id
    for message in messages:
        item: dict[str, Any] = {"role": message.role}
        content = message.content
        parts = content if isinstance(content, list) else ()
        text = "".join(part.text for part in parts if isinstance(part, TextPart)) if parts else (content or "")
        if text:
            item["content"] = text
        if message.reasoning and message.role == "assistant":
            # Sent back: Ollama asks for thinking in tool-loop history (docs/capabilities/streaming.mdx).
            item["thinking"] = message.reasoning
        if images := [_ollama_image(part) for part in parts if isinstance(part, ImagePart)]:
            item["images"] = images
        if message.tool_calls:
            item["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in message.tool_calls]
            names.update((call.id, call.name) for call in message.tool_calls)
        if message.role == "tool" and (tool_name := message.name or names.get(message.tool_call_id or "")):
            item["tool_name"] = tool_name
        wire.append(item)
    return wire


def _ollama_image(part: ImagePart) -> str:
    header, found, data = part.image_url.url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and found):
        # Ollama takes base64 image bytes only (docs/api.md, "Chat request (with images)"); nothing is downloaded.
        raise InvalidRequestError("Ollama takes images as base64 data: URLs (data:image/png;base64,...)")
    return data


def ollama_format(response_format: dict[str, Any]) -> str | dict[str, Any] | None:
    """A `response_format` as Ollama's `format`: a JSON schema, "json", or None for plain text."""
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError("a json_schema response_format needs json_schema.schema", provider="ollama")
        return schema
    if kind in ("json_object", "text"):
        return "json" if kind == "json_object" else None
    return response_format  # Ollama's own form: a JSON schema given as it is


def ollama_tool_call(call: dict[str, Any], index: int) -> ToolCall:
    """A tool call from Ollama (arguments as an object)."""
    # Newer Ollama sends ids (`call_p7o2gz50`); older ones do not, so calls are numbered here.
    return ToolCall.model_validate({"id": call.get("id") or f"call_{index}", "function": call["function"]})


def ollama_chunk(message: dict[str, Any], calls_so_far: int) -> ChatChunk | None:
    """The chunk of one streamed Ollama message (None when it carries nothing)."""
    content, thinking = message.get("content") or "", message.get("thinking") or ""
    # Ollama streams each tool call whole, in one chunk, with arguments as an object.
    parsed = [ollama_tool_call(call, calls_so_far + n) for n, call in enumerate(message.get("tool_calls") or ())]
    if not (content or thinking or parsed):
        return None
    return ChatChunk(delta=content, reasoning_delta=thinking, tool_call_deltas=call_deltas(parsed, calls_so_far))


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
        self._chosen: dict[str, tuple[tokens.Tokenizer, bool]] = {}
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
