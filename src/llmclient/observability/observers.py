"""The observer interface: one set of events, fed by the pipeline, that logging, tracing and user hooks share.

Every call admitted by the pipeline reports `on_request` (before admission: a budget refusal is an error too), an
`on_retry` per retry (with its wait and the error that caused it), `on_chunk` per chunk of a stream as it arrives,
then exactly one of `on_response` (it succeeded)
or `on_error` (it failed, was cut or was cancelled; `outcome` is set when it was billed anyway), and `on_record`
when its ledger record is written. `Client.run` adds `on_run_start`/`on_run_end` around the tool loop and
`on_tool_start`/`on_tool_end` around each tool. A hook that raises is logged and ignored: observing never breaks a
call.

```python
from llmclient import Client
from llmclient.lifecycle import Call, Outcome
from llmclient.observability import Observer


class Seen(Observer):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_request(self, call: Call) -> None:
        self.events.append(f"request {call.model_id}")

    def on_response(self, call: Call, outcome: Outcome) -> None:
        self.events.append(f"response {outcome.usage.output_tokens} tokens")


seen = Seen()
async with Client() as client:
    client.pipeline.observers.append(seen)
    await client.chat("one two", model="fake/echo")
assert seen.events == ["request fake/echo", "response 4 tokens"]
```

Logging (`LoggingObserver`) and OpenTelemetry (`llmclient.observability.tracing.Tracing`) are observers too, on every
client by default. `LLMCLIENT_LOG=info` (or `debug`) prints the `llmclient` logger to stderr, like `OPENAI_LOG`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmclient.accounting.ledger import LedgerRecord
    from llmclient.lifecycle.call import Call, Outcome
    from llmclient.model_ids import ModelId
    from llmclient.tools import RunResult, ToolResult
    from llmclient.types import ChatChunk, ToolCall

logger = logging.getLogger("llmclient")


@dataclass(eq=False)
class Run:
    """One `Client.run` (the agent loop) as observers see it."""

    model: str | None
    """The model the run names (None: the client's default)."""
    tools: tuple[str, ...]
    """The names of the tools the model may call."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Per-observer state (a tracer keeps its span here)."""
    model_id: ModelId | None = None
    """The provider and model the run's steps go to, where the model named (or the default) resolves."""


@dataclass(eq=False)
class ToolExecution:
    """One tool call being executed inside `Client.run`."""

    call: ToolCall
    notes: dict[str, Any] = field(default_factory=dict)
    """Per-observer state."""
    description: str = ""
    """The tool's description, as the model was given it."""


class Observer:
    """Hooks on every call's events; override those you need (each does nothing by default).

    Hooks run inline on the event loop: keep them quick, and hand slow work (uploads) to a queue.
    """

    def on_request(self, call: Call) -> None:
        """A call is about to be admitted and sent (`call.request` holds a chat call's request)."""

    def on_retry(self, call: Call, retry: int, wait: float, error: BaseException) -> None:
        """Retry number `retry` (1-based) will be sent after `wait` seconds, because of `error`."""

    def on_chunk(self, call: Call, chunk: ChatChunk) -> None:
        """A streamed call received `chunk` (called for each, as it arrives: keep it quick)."""

    def on_response(self, call: Call, outcome: Outcome) -> None:
        """The call succeeded: `outcome` has its usage, cost (priced) and, for chat, the response."""

    def on_error(self, call: Call, error: BaseException, outcome: Outcome | None) -> None:
        """The call failed, was cut or was cancelled; `outcome` is set when it was billed anyway."""

    def on_record(self, call: Call, record: LedgerRecord) -> None:
        """The call's one ledger record was written."""

    def on_run_start(self, run: Run) -> None:
        """`Client.run` starts its tool loop."""

    def on_run_end(self, run: Run, result: RunResult | None, error: BaseException | None) -> None:
        """`Client.run` ended, with its result or the error that ended it."""

    def on_tool_start(self, execution: ToolExecution) -> None:
        """A tool the model asked for starts."""

    def on_tool_end(self, execution: ToolExecution, result: ToolResult | None, error: BaseException | None) -> None:
        """The tool finished (`result.error` is set when it failed and the model is told) or raised `error`."""


_EVENTS = (
    "on_request", "on_retry", "on_chunk", "on_response", "on_error", "on_record",
    "on_run_start", "on_run_end", "on_tool_start", "on_tool_end",
)  # fmt: skip


class Hooks:
    """The observers' hooks per event, bound once, without those left as `Observer`'s no-ops (they run several
    times per call, so a disabled tracer or a quiet logger must cost next to nothing)."""

    __slots__ = ("observers", *_EVENTS)
    on_request: tuple[Callable[..., None], ...]
    on_retry: tuple[Callable[..., None], ...]
    on_chunk: tuple[Callable[..., None], ...]
    on_response: tuple[Callable[..., None], ...]
    on_error: tuple[Callable[..., None], ...]
    on_record: tuple[Callable[..., None], ...]
    on_run_start: tuple[Callable[..., None], ...]
    on_run_end: tuple[Callable[..., None], ...]
    on_tool_start: tuple[Callable[..., None], ...]
    on_tool_end: tuple[Callable[..., None], ...]

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)
        for event in _EVENTS:
            hooks = tuple(
                getattr(observer, event)
                for observer in self.observers
                if getattr(type(observer), event) is not getattr(Observer, event)
            )
            setattr(self, event, hooks)

    def __bool__(self) -> bool:
        return bool(self.observers)


NO_HOOKS = Hooks(())


def notify(hooks: Sequence[Callable[..., None]], *args: Any) -> None:
    """Call every hook (`Hooks.on_…`) with `args`; one that raises is logged and skipped: observing never breaks
    a call."""
    for hook in hooks:
        try:
            hook(*args)
        except Exception:
            hook_failed(hook)


def hook_failed(hook: Callable[..., None]) -> None:
    """Log the exception a hook raised (call it from the `except` block); the call goes on."""
    logger.exception("llmclient observer hook %s failed; ignored", getattr(hook, "__qualname__", hook))


def _tokens(outcome: Outcome) -> str:
    usage = outcome.usage
    text = f"in={usage.input_tokens + usage.cached_input_tokens} out={usage.output_tokens}"
    if usage.cached_input_tokens:
        text += f" cached={usage.cached_input_tokens}"
    return text + (" (estimated)" if usage.estimated else "")


class LoggingObserver(Observer):
    """One INFO line per call on the `llmclient` logger, DEBUG lines for each retry.

    Lines carry the provider/model, latency, attempts, usage, cost and request id, never an API key. Message
    content is logged (at DEBUG) only with `content=True` or `LLMCLIENT_LOG_CONTENT=1`.

    Args:
        log: The logger (default `logging.getLogger("llmclient")`).
        content: Also log the prompt and the reply at DEBUG.
    """

    def __init__(self, log: logging.Logger | None = None, *, content: bool | None = None) -> None:
        self.log = log or logger
        self.content = content if content is not None else os.environ.get("LLMCLIENT_LOG_CONTENT", "") in ("1", "true")

    def on_retry(self, call: Call, retry: int, wait: float, error: BaseException) -> None:
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug(
                "%s %s retry %d/%d in %.2fs after %s", call.kind, call.model_id, retry, call.policy.max_retries,
                wait, _reason(error),
            )  # fmt: skip

    def on_response(self, call: Call, outcome: Outcome) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        self.log.info("%s %s ok %s", call.kind, call.model_id, _summary(call, outcome))
        if self.content and self.log.isEnabledFor(logging.DEBUG):  # after the call: no hook runs before it
            if call.request is not None:
                messages = [message.model_dump(exclude_none=True) for message in call.request.messages]
                self.log.debug("%s %s messages=%s", call.kind, call.model_id, messages)
            if outcome.response is not None:
                self.log.debug("%s %s reply text=%r", call.kind, call.model_id, outcome.response.text)

    def on_error(self, call: Call, error: BaseException, outcome: Outcome | None) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        summary = _summary(call, outcome) if outcome is not None else f"{_latency(call)} attempts={call.attempts}"
        self.log.info("%s %s failed %s %s", call.kind, call.model_id, _reason(error), summary)


def _latency(call: Call) -> str:
    return f"{time.perf_counter() - call.started:.3f}s"


def _summary(call: Call, outcome: Outcome) -> str:
    cost = "unpriced" if outcome.cost is None else f"${outcome.cost.total:.6f}"
    request_id = f" request_id={outcome.request_id}" if outcome.request_id else ""
    return f"{_latency(call)} attempts={call.attempts} {_tokens(outcome)} cost={cost}{request_id}"


def _reason(error: BaseException) -> str:
    """The error's class and its (bounded, key-free: see `llmclient.errors`) message."""
    from llmclient.errors import LLMClientError

    if isinstance(error, LLMClientError):
        status = f" {error.status}" if error.status is not None else ""
        return f"{type(error).__name__}{status}: {error.message}"
    return type(error).__name__


def configure_logging_from_env() -> None:
    """`LLMCLIENT_LOG=debug|info|warning` sends the `llmclient` logger to stderr at that level (like OPENAI_LOG)."""
    level = os.environ.get("LLMCLIENT_LOG", "").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        return
    if not any(getattr(handler, "_llmclient_env", False) for handler in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
        handler._llmclient_env = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


configure_logging_from_env()
