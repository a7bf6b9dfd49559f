"""OpenTelemetry spans and metrics for every call, following the GenAI semantic conventions.

The conventions are those of open-telemetry/semantic-conventions v1.41.1 (the last release that held the GenAI
conventions, since moved to open-telemetry/semantic-conventions-genai), whose names the
`opentelemetry-semantic-conventions` package exports; tests/conformance checks every span and metric against them.

Spans: `chat {model}` (chat and stream calls; kind CLIENT, INTERNAL for in-process engines), `embeddings {model}`,
`execute_tool {tool}` and `invoke_agent` around `Client.run`, nested as they ran. Attributes: `gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model` and the request's sampling parameters, `gen_ai.request.stream`,
`gen_ai.output.type`, `server.address` and `server.port` (HTTP providers), `gen_ai.response.id`,
`gen_ai.response.model`, `gen_ai.response.finish_reasons`, `gen_ai.response.time_to_first_chunk` (streams),
`gen_ai.usage.input_tokens` (cached included, as the conventions define it), `gen_ai.usage.cache_read.input_tokens`,
`gen_ai.usage.output_tokens`, `gen_ai.usage.reasoning.output_tokens`, `openai.response.service_tier` and
`openai.response.system_fingerprint` (where the server sends them), `gen_ai.request.encoding_formats` and
`gen_ai.embeddings.dimension.count` (embeddings), `gen_ai.tool.name`, `.call.id`, `.type`, `.description`, and
`error.type`. llmclient's own, where the conventions have nothing: `llmclient.cost_usd`, `llmclient.attempts`,
`llmclient.usage.estimated`, `llmclient.budget.reserved_usd`, `llmclient.budget.remaining_usd`, `llmclient.steps`,
and `llmclient.request_id` (the provider's request id, when it is not the response id). Each retry is a `retry`
event on its span. Metrics: the histograms `gen_ai.client.operation.duration` (s), `gen_ai.client.token.usage`
({token}), and for streams `gen_ai.client.operation.time_to_first_chunk` and `...time_per_output_chunk` (s).

Message content (`gen_ai.input.messages`, `gen_ai.output.messages` in the conventions' JSON shapes, tool arguments
and results) is captured only with `Tracing(capture_content=True)` or
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`.

Only `opentelemetry-api` is used (`pip install 'llmclient[otel]'`); without it, or while no SDK tracer provider is
set, every hook returns at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from llmclient._sanitize import redact
from llmclient.observability.genai_messages import input_messages, output_messages
from llmclient.observability.observers import Observer, Run, ToolExecution

if TYPE_CHECKING:
    from llmclient.lifecycle.call import Call, Outcome
    from llmclient.tools import RunResult, ToolResult
    from llmclient.types import ChatChunk, ChatRequest, Usage

_UNSET = object()
_SPAN = "llmclient.span"
_STARTED = "llmclient.started"
_TOKEN = "llmclient.context"
_CHUNKS = "llmclient.chunks"
_LAST_CHUNK = "llmclient.last_chunk"
# The conventions' advice (gen-ai-metrics.md): one set for every duration histogram, one for token counts.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_REQUEST_PARAMS = {  # the conventions' types: top_k is a double there, unlike ours
    "temperature": ("gen_ai.request.temperature", float),
    "top_p": ("gen_ai.request.top_p", float),
    "top_k": ("gen_ai.request.top_k", float),
    "max_tokens": ("gen_ai.request.max_tokens", int),
    "seed": ("gen_ai.request.seed", int),
}
_OUTPUT_TYPES = {"json_schema": "json", "json_object": "json", "text": "text"}  # response_format type → output type


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
        self._histograms: tuple[Any, Any, Any, Any] | None = None
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

    def histograms(self) -> tuple[Any, Any, Any, Any] | None:
        """The duration, token-usage, time-to-first-chunk and time-per-chunk histograms, or None while no meter
        provider is set."""
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
            meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk",
                unit="s",
                description="Time to receive the first chunk of a streamed response",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            ),
            meter.create_histogram(
                "gen_ai.client.operation.time_per_output_chunk",
                unit="s",
                description="Time between consecutive chunks of a streamed response",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            ),
        )
        return self._histograms

    # -- model calls ------------------------------------------------------------------------------------------

    def on_request(self, call: Call) -> None:
        tracer = self._tracer or self.tracer()
        if tracer is None:
            return
        from opentelemetry.trace import SpanKind

        attributes = _call_attributes(call)
        request = call.request
        if request is not None:
            attributes.update(_request_attributes(call, request))
            if self.capture_content:
                captured = input_messages(request.messages)
                attributes["gen_ai.input.messages"] = json.dumps(captured, ensure_ascii=False)
        elif call.kind == "embed" and call.driver.capabilities.embedding_encoding:
            attributes["gen_ai.request.encoding_formats"] = [call.driver.capabilities.embedding_encoding]
        kind = SpanKind.CLIENT if call.driver.capabilities.http else SpanKind.INTERNAL
        name = f"{attributes['gen_ai.operation.name']} {call.model}"
        call.notes[_SPAN] = tracer.start_span(name, kind=kind, attributes=attributes)
        call.notes[_STARTED] = time.perf_counter()

    def on_chunk(self, call: Call, chunk: ChatChunk) -> None:
        started = call.notes.get(_STARTED)
        if started is None:
            return
        now = time.perf_counter()
        chunks: list[float] | None = call.notes.get(_CHUNKS)
        if chunks is None:
            call.notes[_CHUNKS] = [now - started]  # the time to the first chunk, then one gap per chunk
        else:
            chunks.append(now - call.notes[_LAST_CHUNK])
        call.notes[_LAST_CHUNK] = now

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
            attributes.update(_outcome_attributes(call, outcome))
            if self.capture_content and outcome.response is not None:
                captured = output_messages(outcome.response)
                attributes["gen_ai.output.messages"] = json.dumps(captured, ensure_ascii=False)
        chunks = call.notes.get(_CHUNKS)
        if chunks:
            attributes["gen_ai.response.time_to_first_chunk"] = chunks[0]
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
        duration, token_usage, first_chunk, per_chunk = histograms
        # Metric attributes name the operation, model, server and error kind, never the call (ids go on spans): the
        # SDK keeps one series per attribute set, so its memory stays bounded by the models called.
        attributes = _call_attributes(call)
        if outcome is not None and outcome.served_model:
            attributes["gen_ai.response.model"] = outcome.served_model
        chunks = call.notes.pop(_CHUNKS, None)
        if chunks:  # streams only, as the conventions ask
            first_chunk.record(chunks[0], attributes)
            for gap in chunks[1:]:
                per_chunk.record(gap, attributes)
        if outcome is not None:  # OpenAI's duration and token metrics add these (openai.md, "Metrics")
            attributes.update(_openai_attributes(call, outcome))
        if error is not None:
            attributes["error.type"] = type(error).__name__
        duration.record(time.perf_counter() - call.notes.pop(_STARTED, time.perf_counter()), attributes)
        if outcome is not None:
            attributes.pop("error.type", None)  # not an attribute of token usage
            usage = outcome.usage
            token_usage.record(usage.prompt_tokens, {**attributes, "gen_ai.token.type": "input"})
            if call.kind != "embed":
                token_usage.record(usage.output_tokens, {**attributes, "gen_ai.token.type": "output"})

    # -- the agent loop and its tools: spans made current, so the model calls and tools inside nest under them --

    def on_run_start(self, run: Run) -> None:
        tracer = self.tracer()
        if tracer is None:
            return
        from opentelemetry import context, trace

        attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent"}
        if run.model_id is not None:  # the names its chat spans carry
            attributes["gen_ai.provider.name"] = run.model_id.provider
            attributes["gen_ai.request.model"] = run.model_id.model
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
            span.set_attributes({**_usage_attributes(usage), "llmclient.steps": result.steps})
            if result.response.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [result.response.finish_reason])
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
        if execution.description:
            attributes["gen_ai.tool.description"] = execution.description
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


def _call_attributes(call: Call) -> dict[str, Any]:
    """What every span and metric of a model call carries: operation, provider, model and server."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "embeddings" if call.kind == "embed" else "chat",
        "gen_ai.provider.name": call.provider,
        "gen_ai.request.model": call.model,
    }
    endpoint = call.driver.endpoint
    if endpoint:
        url = urlsplit(endpoint)
        if url.hostname:
            attributes["server.address"] = url.hostname
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
    return attributes


def _request_attributes(call: Call, request: ChatRequest) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for name, (key, kind) in _REQUEST_PARAMS.items():
        value = getattr(request, name)
        if value is not None:
            attributes[key] = kind(value)
    if request.stop:
        attributes["gen_ai.request.stop_sequences"] = list(request.stop)
    if call.kind == "stream":
        attributes["gen_ai.request.stream"] = True
    output_type = _OUTPUT_TYPES.get(str((request.response_format or {}).get("type")))
    if output_type is not None:
        attributes["gen_ai.output.type"] = output_type
    return attributes


def _outcome_attributes(call: Call, outcome: Outcome) -> dict[str, Any]:
    usage = outcome.usage
    attributes = _usage_attributes(usage, output=call.kind != "embed")
    attributes["llmclient.usage.estimated"] = usage.estimated
    if outcome.cost is not None:
        attributes["llmclient.cost_usd"] = float(outcome.cost.total)
    if outcome.served_model:
        attributes["gen_ai.response.model"] = outcome.served_model
    if outcome.dimensions:
        attributes["gen_ai.embeddings.dimension.count"] = outcome.dimensions
    response = outcome.response
    raw = (response.raw if response is not None else None) or {}
    # The body's id as the provider sent it may echo the key (a misconfigured proxy): redacted like the request id.
    secrets = (call.driver.api_key.get_secret_value(),) if call.driver.api_key is not None else ()
    response_id = redact(raw["id"], secrets) if isinstance(raw.get("id"), str) else outcome.request_id
    if response_id:
        attributes["gen_ai.response.id"] = response_id
    if outcome.request_id and outcome.request_id != response_id:  # an HTTP request id: worth keeping for support
        attributes["llmclient.request_id"] = outcome.request_id
    if response is not None and response.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [response.finish_reason]
    attributes.update(_openai_attributes(call, outcome))
    return attributes


def _openai_attributes(call: Call, outcome: Outcome) -> dict[str, Any]:
    """`openai.response.*` from the reply's `service_tier` and `system_fingerprint`, on OpenAI's spans: the
    conventions define them for spans whose `gen_ai.provider.name` is "openai" (span.openai.inference.client)."""
    response = outcome.response
    if call.provider != "openai" or response is None:
        return {}
    attributes: dict[str, Any] = {}
    if response.service_tier:
        attributes["openai.response.service_tier"] = response.service_tier
    if response.system_fingerprint:
        attributes["openai.response.system_fingerprint"] = response.system_fingerprint
    return attributes


def _usage_attributes(usage: Usage, *, output: bool = True) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.usage.input_tokens": usage.prompt_tokens}
    if usage.cached_input_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
    if output:  # an embedding has no output tokens: none is recorded rather than 0
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        if usage.reasoning_tokens:
            attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    return attributes


def _set_error(span: Any, error: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    from llmclient.errors import LLMClientError

    # The error's own message is bounded and key-free (llmclient.errors); other exceptions show only their class.
    description = error.message if isinstance(error, LLMClientError) else type(error).__name__
    span.set_status(Status(StatusCode.ERROR, description))
