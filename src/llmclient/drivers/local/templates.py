"""What the in-process drivers (llama.cpp, transformers) share about chat templates: the tool prompt and Hermes-format
history for templates without tools of their own, the tool-call formats that chat templates teach models (parsed from
the generated text, and held back while streaming), and how a generated reply ends a response or a stream.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from llmclient.drivers.toolkit import call_deltas
from llmclient.tokens import template_message
from llmclient.types import ChatChunk, ChatRequest, ChatResponse, FinishReason, Message, Tool, ToolCall, Usage

# Qwen2.5's own tool prompt (its chat template), for templates that have no tool support: the model is asked to
# answer in the Hermes `<tool_call>` format, which `parse_tool_calls` reads.
TOOL_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def template_inputs(
    messages: Sequence[Message], tools: Sequence[Tool], *, native: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages and tool definitions to render with a chat template.

    Args:
        messages: The conversation.
        tools: The tools the model may call.
        native: Whether the template takes tools itself; if not, calls and results in the history are written as
            Hermes text and the tools go into the system message with `TOOL_PROMPT`.

    Returns:
        The messages, and the tool definitions to pass to the template (None when there are none to pass).
    """
    if native:
        definitions = [tool.to_openai() for tool in tools]
        return [template_message(message) for message in messages], definitions or None
    wire = [_hermes_message(message) for message in messages]
    if tools:
        prompt = TOOL_PROMPT.format(tools="\n".join(json.dumps(t.to_openai(), ensure_ascii=False) for t in tools))
        if wire and wire[0]["role"] == "system":
            wire[0] = {**wire[0], "content": f"{wire[0]['content']}\n\n{prompt}"}
        else:
            wire.insert(0, {"role": "system", "content": prompt})
    return wire, None


def _hermes_message(message: Message) -> dict[str, Any]:
    """A message for a template without tool support: calls and results written as Hermes text."""
    if message.role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message.text}\n</tool_response>"}
    calls = [
        # The arguments as the model wrote them (or as `ToolCall.to_openai` sends them): history is not re-encoded.
        f'<tool_call>\n{{"name": {json.dumps(call.name, ensure_ascii=False)}, '
        f'"arguments": {call.raw_arguments or "{}"}}}\n</tool_call>'
        for call in message.tool_calls or []
    ]
    return {"role": message.role, "content": "\n".join(filter(None, [message.text, *calls]))}


def watches_tools(request: ChatRequest) -> bool:
    """Whether a reply to `request` may contain tool calls: tools were given and tool_choice is not "none"."""
    return bool(request.tools) and request.tool_choice != "none"


@dataclass(frozen=True)
class Reply:
    """A generated reply, split into its text and the tool calls written in it."""

    content: str
    calls: list[ToolCall]

    @classmethod
    def parse(cls, request: ChatRequest, text: str, *, forced: bool = False) -> Reply:
        """Read the calls out of `text` when `request` allows them.

        Args:
            request: The request the reply answers.
            text: The generated text.
            forced: Whether a grammar made the whole reply one call: a reply cut short (max_tokens) before the
                call's name becomes a nameless call, which the tool loop reports.
        """
        if not watches_tools(request):
            return cls(text, [])
        prefix = f"call_{uuid.uuid4().hex[:12]}"
        content, calls = parse_tool_calls(text, id_prefix=prefix)
        if forced and not calls:
            return cls("", [ToolCall(id=f"{prefix}_0", name="", raw_arguments=text)])
        return cls(content, calls)

    def message(self) -> Message:
        """The assistant message: no content when the reply is only calls."""
        content = self.content if self.content or not self.calls else None
        return Message(role="assistant", content=content, tool_calls=self.calls or None)

    def finish_reason(self, engine: FinishReason) -> FinishReason:
        """`engine`'s reason, unless the reply called tools."""
        return "tool_calls" if self.calls else engine

    def response(
        self,
        *,
        finish: FinishReason,
        usage: Usage,
        model: str,
        provider: str,
        request_id: str | None = None,
        raw: dict[str, Any] | None = None,
    ) -> ChatResponse:
        """The complete response; `finish` is why the engine stopped."""
        return ChatResponse(
            message=self.message(),
            finish_reason=self.finish_reason(finish),
            usage=usage,
            model=model,
            provider=provider,
            request_id=request_id,
            raw=raw,
        )

    def stream_end(
        self, held: HeldToolText, *, finish: FinishReason, usage: Usage, model: str, request_id: str | None = None
    ) -> Iterator[ChatChunk]:
        """The chunks that end a stream: text `held` still holds (without the calls), the calls, and the last chunk
        with the finish reason and usage."""
        if rest := held.rest(self.content, bool(self.calls)):
            yield ChatChunk(delta=rest)
        if self.calls:
            yield ChatChunk(tool_call_deltas=call_deltas(self.calls))
        yield ChatChunk(finish_reason=self.finish_reason(finish), usage=usage, model=model, request_id=request_id)


# -- tool-call formats ---------------------------------------------------------------------------------------------

_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_MISTRAL = re.compile(r"\[TOOL_CALLS\]\s*(.*)$", re.DOTALL)
_PYTHON_TAG = "<|python_tag|>"
TOOL_CALL_MARKERS = ("<tool_call>", "[TOOL_CALLS]", _PYTHON_TAG)
"""Where a reply may start a tool call in the formats `parse_tool_calls` reads."""


def parse_tool_calls(text: str, *, id_prefix: str = "call") -> tuple[str, list[ToolCall]]:
    """Tool calls written in the text of a reply, in the formats common chat templates teach models.

    - Hermes / Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call (or, as
      SmolLM2 writes them, a JSON list of calls in one block).
    - Mistral: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]`.
    - Llama 3: a reply that is a JSON object `{"name": ..., "parameters": {...}}` (optionally after
      `<|python_tag|>`), several separated by `;`.

    Returns the text without the calls and the calls. A call whose JSON is broken keeps its raw text in
    `raw_arguments`, so the tool loop can tell the model what to fix.
    """
    if "<tool_call>" in text:
        bodies: list[str] = []
        for body in _HERMES.findall(text):
            try:
                items = json.loads(body)
            except ValueError:
                items = None
            # SmolLM2 puts a JSON list of calls in one block (its model card's tool prompt).
            bodies.extend(json.dumps(item) for item in items) if isinstance(items, list) else bodies.append(body)
        content = _HERMES.sub("", text).strip()
        return content, [_call(body, index, id_prefix) for index, body in enumerate(bodies)]
    mistral = _MISTRAL.search(text)
    if mistral:
        content = text[: mistral.start()].strip()
        payload = mistral.group(1).strip()
        try:
            items = json.loads(payload)
        except ValueError:
            return content, [_broken(payload, 0, id_prefix)]
        items = items if isinstance(items, list) else [items]
        return content, [_call(json.dumps(item), index, id_prefix) for index, item in enumerate(items)]
    stripped = text.strip()
    if stripped.startswith(_PYTHON_TAG):
        stripped = stripped[len(_PYTHON_TAG) :].strip()
    if stripped.startswith("{") and '"name"' in stripped:
        pieces = [piece for piece in _split_top_level(stripped) if piece.strip()]
        calls = [_call(piece, index, id_prefix) for index, piece in enumerate(pieces)]
        if all(call.name for call in calls):
            return "", calls
    return text, []


def _split_top_level(text: str) -> list[str]:
    """Split `{...}; {...}` at semicolons that are outside JSON strings and braces."""
    pieces, depth, start, in_string, escaped = [], 0, 0, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif char == ";" and depth == 0:
            pieces.append(text[start:index])
            start = index + 1
    pieces.append(text[start:])
    return pieces


def _call(body: str, index: int, id_prefix: str) -> ToolCall:
    try:
        data = json.loads(body)
    except ValueError:
        return _broken(body, index, id_prefix)
    if not isinstance(data, dict):
        return _broken(body, index, id_prefix)
    arguments = data.get("arguments", data.get("parameters", {}))
    # Some templates double-encode the arguments as a JSON string.
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ToolCall.model_validate(
        {"id": f"{id_prefix}_{index}", "function": {"name": str(data.get("name", "")), "arguments": raw}}
    )


def _broken(body: str, index: int, id_prefix: str) -> ToolCall:
    name = re.search(r'"name"\s*:\s*"([^"]*)"', body)
    return ToolCall(id=f"{id_prefix}_{index}", name=name.group(1) if name else "", raw_arguments=body)


class HeldToolText:
    """Streams a reply's text, holding back from where a tool call in a format `parse_tool_calls` reads may start.

    Args:
        watch: Whether the reply may contain calls (tools were given and tool_choice is not "none").
        forced: Whether the whole reply is a call (a grammar forced one): nothing is shown.
    """

    def __init__(self, *, watch: bool, forced: bool = False) -> None:
        self.watch = watch
        self.forced = forced
        self.text = ""
        self.sent = 0
        self.holding = False

    def feed(self, piece: str) -> str:
        """The part of the text so far that can be shown now."""
        self.text += piece
        if not self.watch:
            self.sent = len(self.text)
            return piece
        if self.forced or self.holding or (self.sent == 0 and not self.text.strip()):
            return ""
        if self.sent == 0 and self.text.lstrip().startswith("{"):  # Llama 3 writes a call as a bare JSON object
            self.holding = True
            return ""
        found = [index for index in (self.text.find(marker, self.sent) for marker in TOOL_CALL_MARKERS) if index != -1]
        self.holding = bool(found)
        # Up to a marker, or short of a suffix that may begin one.
        partial = (k for marker in TOOL_CALL_MARKERS for k in range(1, len(marker)) if self.text.endswith(marker[:k]))
        cut = min(found) if found else len(self.text) - max(partial, default=0)
        visible = self.text[self.sent : cut]
        self.sent = max(self.sent, cut)
        return visible

    def rest(self, content: str, called: bool) -> str:
        """What to send once the reply is complete: the text not yet sent, without any tool calls in it."""
        if not called:
            return self.text[self.sent :]
        sent = self.text[: self.sent]
        return content[len(sent) :] if content.startswith(sent) else ""
