"""Our spans and metrics against the OpenTelemetry GenAI semantic conventions (otel_semconv.py says what is
checked): chat, stream, embeddings, a tool run, a retry and an error, over HTTP to a scripted OpenAI-style server,
with message content captured so it is validated against the conventions' JSON schemas too. And the checker itself
fails on what is wrong (a test gives it a deliberately wrong attribute of each kind)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from conformance.otel_semconv import Conventions
from integrations.scripted_model import ScriptedServer
from llmclient import Client, RetryPolicy, ServerError, tool
from llmclient.observability import Tracing

PRICES = {"openai/scripted": 1, "openai-compatible/scripted": 1}


class Telemetry:
    """In-memory span and metric exporters behind a `Tracing` observer that captures content."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.tracing = Tracing(
            tracer_provider=self.tracer_provider,
            meter_provider=MeterProvider(metric_readers=[self.metrics]),
            capture_content=True,
        )

    def metric_data(self) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            metric for resource in data.resource_metrics for scope in resource.scope_metrics for metric in scope.metrics
        ]


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def _client(server: ScriptedServer, telemetry: Telemetry, **options: Any) -> Client:
    provider = {"base_url": server.url, "api_key": "sk-scripted-0123456789"}
    providers = {"openai": provider, "openai-compatible": provider}  # the same server: OpenAI's spans and others'
    client = Client(providers=providers, prices=PRICES, **options)
    client.pipeline.observers = [telemetry.tracing]
    return client


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


async def test_chat_stream_embeddings_tools_retries_and_errors_follow_the_conventions(
    server: ScriptedServer, telemetry: Telemetry
) -> None:
    fast = RetryPolicy(max_retries=1, initial_backoff=0, max_backoff=0)
    async with _client(server, telemetry, retry=fast) as client:
        await client.chat("Think: what is 'two'?", model="openai-compatible/scripted", temperature=0.5, top_k=40,
                          seed=7, max_tokens=50, stop=["\n\n"], response_format={"type": "json_object"})  # fmt: skip
        await client.chat("Think again", model="openai/scripted")
        async for _ in client.stream("Stream me a story", model="openai/scripted"):
            pass
        await client.embed(["one", "two"], model="openai/scripted", dimensions=4)
        result = await client.run("What is 2 + 3 with add?", tools=[add], model="openai/scripted")
        server.failures = [429]
        await client.chat("retried once", model="openai/scripted")
        server.failures = [500, 500]
        with pytest.raises(ServerError):
            await client.chat("fails twice", model="openai/scripted")
    assert result.response.text.startswith("The tool answered: 5")

    conventions = Conventions.load()
    spans = list(telemetry.spans.get_finished_spans())
    streamed = [span for span in spans if span.name == "chat scripted" and _has(span, "gen_ai.request.stream")]
    assert len(streamed) == 1
    problems = [p for span in spans for p in conventions.span_problems(span, streamed=span in streamed)]
    assert problems == []
    names = sorted({span.name for span in spans})
    assert len(spans) == 10 and names == ["chat scripted", "embeddings scripted", "execute_tool add", "invoke_agent"]

    metrics = telemetry.metric_data()
    problems = [p for m in metrics for p in conventions.metric_problems(m.name, m.unit, list(m.data.data_points))]
    assert problems == []
    assert {m.name for m in metrics} == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    }
    chat, openai = _attributes(spans[0]), _attributes(spans[1])
    assert chat["server.address"] == "127.0.0.1" and isinstance(chat["server.port"], int)
    assert chat["gen_ai.request.top_k"] == 40.0 and chat["gen_ai.output.type"] == "json"
    assert chat["gen_ai.response.id"].startswith("chatcmpl-scripted-")
    assert chat["gen_ai.usage.reasoning.output_tokens"] > 0  # asked to think
    assert "openai.response.system_fingerprint" not in chat  # defined for OpenAI's spans only
    assert openai["openai.response.system_fingerprint"] == "fp_scripted"
    embedding = next(_attributes(span) for span in spans if span.name.startswith("embeddings"))
    assert embedding["gen_ai.embeddings.dimension.count"] == 4
    assert embedding["gen_ai.request.encoding_formats"] == ("base64",)
    failed = spans[-1]
    assert failed.status.status_code is StatusCode.ERROR and _attributes(failed)["error.type"] == "ServerError"


def _has(span: ReadableSpan, name: str) -> bool:
    return name in (span.attributes or {})


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _span(
    telemetry: Telemetry, name: str, attributes: dict[str, Any], kind: SpanKind = SpanKind.CLIENT
) -> ReadableSpan:
    span = telemetry.tracer_provider.get_tracer("wrong").start_span(name, kind=kind, attributes=attributes)
    span.end()
    (finished,) = telemetry.spans.get_finished_spans()
    telemetry.spans.clear()
    return finished


GOOD = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "deepseek", "gen_ai.request.model": "m"}


@pytest.mark.parametrize(
    ("wrong", "problem"),
    [
        ({"gen_ai.usage.reasoning_tokens": 3}, "is not a name opentelemetry-semantic-conventions exports"),
        ({"gen_ai.system": "deepseek"}, "is not defined by the conventions (or is deprecated)"),
        ({"gen_ai.request.top_k": 40}, "gen_ai.request.top_k=40 is not of type double"),
        ({"gen_ai.embeddings.dimension.count": 4}, "is not an attribute of chat spans"),
        ({"server.address": "api.deepseek.com"}, "server.port is required"),
        ({"gen_ai.provider.name": None}, "gen_ai.provider.name is required"),
        ({"gen_ai.input.messages": json.dumps([{"role": "user", "content": "hi"}])}, "'parts' is a required property"),
        ({"gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": []}])}, "'finish_reason' is a required"),
    ],
)
def test_the_checker_fails_on_a_deliberately_wrong_attribute(
    telemetry: Telemetry, wrong: dict[str, Any], problem: str
) -> None:
    conventions = Conventions.load()
    assert conventions.span_problems(_span(telemetry, "chat m", GOOD)) == []
    attributes = {key: value for key, value in {**GOOD, **wrong}.items() if value is not None}
    problems = conventions.span_problems(_span(telemetry, "chat m", attributes))
    assert any(problem in text for text in problems), problems


def test_the_checker_fails_on_a_wrong_name_kind_status_or_stream_flag(telemetry: Telemetry) -> None:
    conventions = Conventions.load()
    assert "span 'chat': the name should be 'chat m'" in conventions.span_problems(_span(telemetry, "chat", GOOD))
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "add"}
    assert any("kind CLIENT" in p for p in conventions.span_problems(_span(telemetry, "execute_tool add", tool)))
    span = telemetry.tracer_provider.get_tracer("wrong").start_span("chat m", attributes=GOOD, kind=SpanKind.CLIENT)
    span.set_status(Status(StatusCode.ERROR))
    span.end()
    (failed,) = telemetry.spans.get_finished_spans()
    assert any("error.type is required" in p for p in conventions.span_problems(failed))
    assert any("gen_ai.request.stream" in p for p in conventions.span_problems(failed, streamed=True))


def test_the_vendored_conventions_are_the_ones_the_package_names() -> None:
    conventions = Conventions.load()
    # Every current gen_ai.* name of the model is a constant of the package (and so checkable by name).
    defined = {name for name in conventions.attributes if name.startswith(("gen_ai.", "openai."))}
    assert defined <= conventions.exported
    assert "gen_ai.usage.reasoning.output_tokens" in defined and "gen_ai.system" not in defined
