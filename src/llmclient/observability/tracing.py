"""OpenTelemetry spans and metrics for every call, following the GenAI semantic conventions.

Spans: `chat {model}` (chat and stream calls; kind CLIENT, INTERNAL for in-process engines), `embeddings {model}`,
`execute_tool {tool}` and `invoke_agent` around `Client.run`, nested as they ran. Attributes: `gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model` and the request's sampling parameters, `gen_ai.response.model`,
`gen_ai.response.finish_reasons`, `gen_ai.usage.input_tokens` (cached included, as the conventions define it),
`gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.output_tokens`, `error.type`; and llmclient's own:
`llmclient.cost_usd`, `llmclient.request_id`, `llmclient.attempts`, `llmclient.usage.estimated`,
`llmclient.budget.reserved_usd` and `llmclient.budget.remaining_usd`. Each retry is a `retry` event on its span.
Metrics: the histograms `gen_ai.client.operation.duration` (s) and `gen_ai.client.token.usage` ({token}).

Message content (`gen_ai.input.messages`, `gen_ai.output.messages`, tool arguments and results) is captured only
with `Tracing(capture_content=True)` or `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.

Only `opentelemetry-api` is used (`pip install 'llmclient[otel]'`); without it, or while no SDK tracer provider is
set, every hook returns at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from llmclient.observability.observers import Observer, Run, ToolExecution

if TYPE_CHECKING:
    from llmclient.lifecycle.call import Call, Outcome
    from llmclient.tools import RunResult, ToolResult

_UNSET = object()
_SPAN = "llmclient.span"
_STARTED = "llmclient.started"
_TOKEN = "llmclient.context"
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_REQUEST_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmclient")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "0"


class Tracing(Observer):
    """Report calls to OpenTelemetry (spans and GenAI metrics); see the module docstring for what is recorded.

    Args:
        tracer_provider: Where spans go (default: the global provider, once an SDK has set one).
        meter_provider: Where metrics go (default: the global provider, once an SDK has set one).
        capture_content: Record messages, replies and tool arguments/results (off by default: they may hold
            personal data); None reads `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`.
    """

    def __init__(
        self, *, tracer_provider: Any = None, meter_provider: Any = None, capture_content: bool | None = None
    ) -> None:
        if capture_content is None:
            flag = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
            capture_content = flag.strip().lower() in ("1", "true")
        self.capture_content = capture_content
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer: Any = None
        self._trace: Any = None  # the opentelemetry.trace module, once imported
        self._histograms: tuple[Any, Any] | None = None
        self._missing = False  # opentelemetry-api is not installed: stay a no-op
        self._provider_from_env = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))

    # -- providers, looked up per call so an SDK configured after the client was made still takes effect ------

    def tracer(self) -> Any:
        """The tracer, or None while tracing is off (no opentelemetry-api, or no SDK provider set)."""
        if self._tracer is not None:
            return self._tracer
        trace = self._trace
        if trace is None:
            if self._missing:
                return None
            trace = sys.modules.get("opentelemetry.trace")
            if trace is None and self._tracer_provider is None and not self._provider_from_env:
                # Nothing has imported the API, so nothing can have set a provider: stay off without importing it
                # (checked again next call, so an SDK configured later still takes effect).
                return None
            try:
                from opentelemetry import trace
            except ImportError:
                self._missing = True
                return None
            self._trace = trace
            assert trace is not None
            if self._provider_from_env:  # a provider named by the environment: load it now
                trace.get_tracer_provider()
        provider = self._tracer_provider
        if provider is None:
            # The API's global, read directly on this per-call path: get_tracer_provider() reads os.environ each
            # time, which alone would cost more than the rest of a disabled tracer. None means nothing is set.
            provider = getattr(trace, "_TRACER_PROVIDER", _UNSET)
            if provider is _UNSET:  # an API without that global: ask it the public way
                provider = trace.get_tracer_provider()
            if provider is None or isinstance(provider, trace.ProxyTracerProvider):
                return None
        self._tracer = provider.get_tracer("llmclient", _version())
        return self._tracer

    def histograms(self) -> tuple[Any, Any] | None:
        """The duration and token-usage histograms, or None while no meter provider is set."""
        if self._histograms is not None or self._missing:
            return self._histograms
        from opentelemetry import metrics

        provider = self._meter_provider or metrics.get_meter_provider()
        if type(provider).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider"):
            return None
        meter = provider.get_meter("llmclient", _version())
        self._histograms = (
            meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            ),
            meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used",
                explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
            ),
        )
        return self._histograms

    # -- model calls ------------------------------------------------------------------------------------------

    def on_request(self, call: Call) -> None:
        tracer = self._tracer or self.tracer()
        if tracer is None:
            return
        from opentelemetry.trace import SpanKind

        operation = "embeddings" if call.kind == "embed" else "chat"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": call.provider,
            "gen_ai.request.model": call.model,
        }
        request = call.request
        if request is not None:
            for name, key in _REQUEST_PARAMS.items():
                value = getattr(request, name)
                if value is not None:
                    attributes[key] = value
            if request.stop:
                attributes["gen_ai.request.stop_sequences"] = (
                    [request.stop] if isinstance(request.stop, str) else list(request.stop)
                )
            if call.kind == "stream":
                attributes["llmclient.stream"] = True
            if self.capture_content:
                messages = [message.model_dump(mode="json", exclude_none=True) for message in request.messages]
                attributes["gen_ai.input.messages"] = json.dumps(messages, ensure_ascii=False)
        kind = SpanKind.CLIENT if call.driver.capabilities.http else SpanKind.INTERNAL
        call.notes[_SPAN] = tracer.start_span(f"{operation} {call.model}", kind=kind, attributes=attributes)
        call.notes[_STARTED] = time.perf_counter()

    def on_retry(self, call: Call, retry: int, wait: float, error: BaseException) -> None:
        span = call.notes.get(_SPAN)
        if span is not None:
            span.add_event(
                "retry",
                {"llmclient.retry": retry, "llmclient.retry.wait_s": wait, "error.type": type(error).__name__},
            )

    def on_response(self, call: Call, outcome: Outcome) -> None:
        self._end(call, outcome, None)

    def on_error(self, call: Call, error: BaseException, outcome: Outcome | None) -> None:
        self._end(call, outcome, error)

    def _end(self, call: Call, outcome: Outcome | None, error: BaseException | None) -> None:
        span = call.notes.pop(_SPAN, None)
        if span is None:
            return
        attributes: dict[str, Any] = {"llmclient.attempts": call.attempts}
        if outcome is not None:
            attributes.update(_usage_attributes(outcome))
            if outcome.served_model:
                attributes["gen_ai.response.model"] = outcome.served_model
            if outcome.request_id:
                attributes["llmclient.request_id"] = outcome.request_id
            response = outcome.response
            if response is not None:
                if response.finish_reason:
                    attributes["gen_ai.response.finish_reasons"] = [response.finish_reason]
                if self.capture_content:
                    output = response.message.model_dump(mode="json", exclude_none=True)
                    attributes["gen_ai.output.messages"] = json.dumps([output], ensure_ascii=False)
        reservation = call.reservation
        if reservation is not None:
            attributes["llmclient.budget.reserved_usd"] = float(reservation.amount)
            if reservation.budgets:
                attributes["llmclient.budget.remaining_usd"] = float(min(b.remaining for b in reservation.budgets))
        if error is not None:
            attributes["error.type"] = type(error).__name__
            _set_error(span, error)
        span.set_attributes(attributes)
        span.end()
        self._measure(call, outcome, error)

    def _measure(self, call: Call, outcome: Outcome | None, error: BaseException | None) -> None:
        histograms = self.histograms()
        if histograms is None:
            return
        duration, token_usage = histograms
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "embeddings" if call.kind == "embed" else "chat",
            "gen_ai.provider.name": call.provider,
            "gen_ai.request.model": call.model,
        }
        if outcome is not None and outcome.served_model:
            attributes["gen_ai.response.model"] = outcome.served_model
        if error is not None:
            attributes["error.type"] = type(error).__name__
        duration.record(time.perf_counter() - call.notes.pop(_STARTED, time.perf_counter()), attributes)
        if outcome is not None:
            usage = outcome.usage
            token_usage.record(
                usage.input_tokens + usage.cached_input_tokens, {**attributes, "gen_ai.token.type": "input"}
            )
            if call.kind != "embed":
                token_usage.record(usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})

    # -- the agent loop and its tools: spans made current, so the model calls and tools inside nest under them --

    def on_run_start(self, run: Run) -> None:
        tracer = self.tracer()
        if tracer is None:
            return
        from opentelemetry import context, trace

        attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent"}
        if run.model:
            attributes["gen_ai.request.model"] = run.model
        span = tracer.start_span("invoke_agent", kind=trace.SpanKind.INTERNAL, attributes=attributes)
        run.notes[_SPAN] = span
        run.notes[_TOKEN] = context.attach(trace.set_span_in_context(span))

    def on_run_end(self, run: Run, result: RunResult | None, error: BaseException | None) -> None:
        span = run.notes.pop(_SPAN, None)
        if span is None:
            return
        from opentelemetry import context

        context.detach(run.notes.pop(_TOKEN))
        if result is not None:
            usage = result.usage
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": usage.input_tokens + usage.cached_input_tokens,
                    "gen_ai.usage.output_tokens": usage.output_tokens,
                    "llmclient.steps": result.steps,
                }
            )
            if result.cost is not None:
                span.set_attribute("llmclient.cost_usd", float(result.cost))
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            _set_error(span, error)
        span.end()

    def on_tool_start(self, execution: ToolExecution) -> None:
        tracer = self.tracer()
        if tracer is None:
            return
        from opentelemetry import context, trace

        call = execution.call
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
        }
        if self.capture_content:
            attributes["gen_ai.tool.call.arguments"] = call.raw_arguments
        span = tracer.start_span(f"execute_tool {call.name}", kind=trace.SpanKind.INTERNAL, attributes=attributes)
        execution.notes[_SPAN] = span
        execution.notes[_TOKEN] = context.attach(trace.set_span_in_context(span))

    def on_tool_end(self, execution: ToolExecution, result: ToolResult | None, error: BaseException | None) -> None:
        span = execution.notes.pop(_SPAN, None)
        if span is None:
            return
        from opentelemetry import context

        context.detach(execution.notes.pop(_TOKEN))
        if result is not None:
            if self.capture_content:
                span.set_attribute("gen_ai.tool.call.result", result.content)
            if result.error:
                span.set_attribute("error.type", result.error)
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, result.error))
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            _set_error(span, error)
        span.end()


def _usage_attributes(outcome: Outcome) -> dict[str, Any]:
    usage = outcome.usage
    attributes: dict[str, Any] = {
        "gen_ai.usage.input_tokens": usage.input_tokens + usage.cached_input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "llmclient.usage.estimated": usage.estimated,
    }
    if usage.cached_input_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
    if usage.reasoning_tokens:
        attributes["llmclient.usage.reasoning_tokens"] = usage.reasoning_tokens
    if outcome.cost is not None:
        attributes["llmclient.cost_usd"] = float(outcome.cost.total)
    return attributes


def _set_error(span: Any, error: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    from llmclient.errors import LLMClientError

    # The error's own message is bounded and key-free (llmclient.errors); other exceptions show only their class.
    description = error.message if isinstance(error, LLMClientError) else type(error).__name__
    span.set_status(Status(StatusCode.ERROR, description))
