"""The observer interface, logging and OpenTelemetry: span trees and attributes checked with the SDK's in-memory
exporter, log lines with caplog, and the hook contract (failed calls reach it, a failing hook breaks nothing)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmclient import BudgetExceededError, Client, RateLimitError, ToolCall
from llmclient.accounting.ledger import LedgerRecord
from llmclient.lifecycle import Call, Outcome
from llmclient.observability import LoggingObserver, Observer, Tracing

PRICES = {"fake/priced": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}}


class Telemetry:
    """A `Tracing` observer wired to in-memory span and metric exporters."""

    def __init__(self, *, capture_content: bool = False) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.tracing = Tracing(
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(metric_readers=[self.metrics]),
            capture_content=capture_content,
        )

    def client(self, **options: Any) -> Client:
        client = Client(prices=PRICES, **options)
        client.pipeline.observers = [self.tracing]
        return client

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return {
            metric.name: list(metric.data.data_points)
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


def attributes(span: ReadableSpan) -> dict[str, Any]:
    assert span.attributes is not None
    return dict(span.attributes)


def _add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def test_tool_run_with_a_retry_and_a_cost_makes_one_span_tree() -> None:
    telemetry = Telemetry()
    replies = [
        RateLimitError("slow down", provider="fake", model="priced", retry_after=0),
        ToolCall(id="call_1", name="_add", arguments={"a": 2, "b": 3}),
        "The sum is 5.",
    ]
    async with telemetry.client(providers={"fake": {"replies": replies}}) as client:
        result = await client.run("Add 2 and 3", tools=[_add], model="fake/priced")
    assert result.response.text == "The sum is 5."

    spans = telemetry.finished()
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == ["chat priced", "execute_tool _add", "invoke_agent"]
    (agent,) = by_name["invoke_agent"]
    (tool,) = by_name["execute_tool _add"]
    first, second = sorted(by_name["chat priced"], key=lambda span: span.start_time or 0)
    assert agent.parent is None
    for child in (first, second, tool):
        assert child.parent is not None and child.parent.span_id == agent.context.span_id
        assert child.context.trace_id == agent.context.trace_id

    chat = attributes(first)
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.provider.name"] == "fake"
    assert chat["gen_ai.request.model"] == "priced"
    assert chat["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert chat["llmclient.attempts"] == 2
    assert chat["gen_ai.usage.input_tokens"] > 0
    assert chat["llmclient.cost_usd"] > 0
    assert "gen_ai.input.messages" not in chat  # content capture is opt-in
    assert first.kind is SpanKind.INTERNAL  # the fake driver runs in-process
    (retry,) = first.events
    assert retry.name == "retry"
    assert dict(retry.attributes or {}) == {
        "llmclient.retry": 1,
        "llmclient.retry.wait_s": 0.0,
        "error.type": "RateLimitError",
    }

    assert attributes(tool) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "_add",
        "gen_ai.tool.call.id": "call_1",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Add two numbers.",
    }
    run = attributes(agent)
    assert run["gen_ai.operation.name"] == "invoke_agent"
    assert (run["gen_ai.provider.name"], run["gen_ai.request.model"]) == ("fake", "priced")  # as its chat spans say
    assert run["llmclient.steps"] == 2
    assert run["llmclient.cost_usd"] == pytest.approx(float(result.cost))

    points = telemetry.metric_points()
    assert sum(point.count for point in points["gen_ai.client.operation.duration"]) == 2
    token_types = {point.attributes["gen_ai.token.type"] for point in points["gen_ai.client.token.usage"]}
    assert token_types == {"input", "output"}


async def test_chat_stream_and_embed_spans_carry_the_gen_ai_attributes() -> None:
    telemetry = Telemetry()
    async with telemetry.client() as client:
        with client.budget("1"):
            await client.chat("one two", model="fake/priced", temperature=0.5, max_tokens=8)
        async for _ in client.stream("three four five", model="fake/priced"):
            pass
        await client.embed(["a", "b"], model="fake/priced")
    chat, stream, embed = telemetry.finished()

    assert chat.name == "chat priced"
    values = attributes(chat)
    assert values["gen_ai.request.temperature"] == 0.5
    assert values["gen_ai.request.max_tokens"] == 8
    assert values["gen_ai.response.model"] == "priced"
    assert values["gen_ai.response.finish_reasons"] == ("stop",)
    assert values["gen_ai.usage.output_tokens"] == 4
    assert values["gen_ai.response.id"].startswith("fake-")
    assert "llmclient.request_id" not in values  # the same id: kept once, under the conventions' name
    assert values["llmclient.budget.remaining_usd"] == pytest.approx(1 - values["llmclient.cost_usd"])
    assert values["llmclient.budget.reserved_usd"] > 0
    assert chat.status.status_code is StatusCode.UNSET

    assert stream.name == "chat priced"
    assert attributes(stream)["gen_ai.request.stream"] is True
    assert attributes(stream)["gen_ai.response.time_to_first_chunk"] >= 0
    assert attributes(stream)["gen_ai.usage.output_tokens"] == 5

    assert embed.name == "embeddings priced"
    assert attributes(embed)["gen_ai.operation.name"] == "embeddings"
    assert attributes(embed)["gen_ai.usage.input_tokens"] == 2
    assert "gen_ai.usage.output_tokens" not in attributes(embed)  # embeddings have none; not a 0
    assert attributes(embed)["gen_ai.embeddings.dimension.count"] > 0


async def test_failed_and_refused_calls_end_their_spans_with_the_error() -> None:
    telemetry = Telemetry()
    failing = {"fake": {"replies": [RateLimitError("quota", provider="fake", model="priced", retry_after=0)] * 3}}
    async with telemetry.client(providers=failing, retry=1) as client:
        with pytest.raises(RateLimitError):
            await client.chat("hi", model="fake/priced")
        with client.budget("0.0000001"), pytest.raises(BudgetExceededError):
            await client.chat("hi", model="fake/priced", max_tokens=1000)
    failed, refused = telemetry.finished()
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(failed)["error.type"] == "RateLimitError"
    assert attributes(failed)["llmclient.attempts"] == 2
    assert len(failed.events) == 1
    assert attributes(refused)["error.type"] == "BudgetExceededError"
    assert attributes(refused)["llmclient.attempts"] == 0
    errors = [p for p in telemetry.metric_points()["gen_ai.client.operation.duration"] if "error.type" in p.attributes]
    assert {point.attributes["error.type"] for point in errors} == {"RateLimitError", "BudgetExceededError"}


async def test_content_is_captured_only_when_asked() -> None:
    telemetry = Telemetry(capture_content=True)
    async with telemetry.client() as client:
        await client.chat("secret plans", model="fake/priced")
    (span,) = telemetry.finished()
    assert json.loads(attributes(span)["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "secret plans"}]}
    ]  # the conventions' shape; tests/conformance validates it against their JSON schema
    assert json.loads(attributes(span)["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "You said: secret plans"}], "finish_reason": "stop"}
    ]


def test_tracing_is_a_no_op_without_an_sdk_provider() -> None:
    tracing = Tracing()  # the global provider is the API's proxy in this process: nothing configured
    assert tracing.tracer() is None
    assert tracing.histograms() is None


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_request(self, call: Call) -> None:
        self.events.append("request")

    def on_retry(self, call: Call, retry: int, wait: float, error: BaseException) -> None:
        self.events.append(f"retry {retry} {type(error).__name__}")

    def on_response(self, call: Call, outcome: Outcome) -> None:
        self.events.append(f"response {outcome.cost is not None}")

    def on_error(self, call: Call, error: BaseException, outcome: Outcome | None) -> None:
        self.events.append(f"error {type(error).__name__} billed={outcome is not None}")

    def on_record(self, call: Call, record: LedgerRecord) -> None:
        self.events.append(f"record {record.attempts}")


class Broken(Observer):
    def on_request(self, call: Call) -> None:
        raise RuntimeError("a buggy hook")


async def test_hooks_hear_every_event_and_a_broken_hook_breaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    replies = [RateLimitError("busy", provider="fake", model="x", retry_after=0), "ok", ValueError("boom")]
    async with Client(providers={"fake": {"replies": replies}}) as client:
        client.pipeline.observers = [Broken(), recorder]
        with caplog.at_level(logging.ERROR, logger="llmclient"):
            await client.chat("hi", model="fake/x")
        with pytest.raises(ValueError, match="boom"):
            await client.chat("hi", model="fake/x", max_retries=0)
    assert recorder.events == [
        "request",
        "retry 1 RateLimitError",
        "record 2",
        "response True",
        "request",
        "error ValueError billed=False",
    ]
    assert "Broken.on_request failed" in caplog.text


def _openai_answers(calls: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"retry-after": "0"}, json={"error": {"message": "slow down"}})
        body = {
            "id": "chatcmpl-1",
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
        }
        return httpx.Response(200, headers={"x-request-id": "req_42"}, json=body)

    return httpx.MockTransport(answer)


async def test_logging_one_info_line_per_call_debug_per_retry_and_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[httpx.Request] = []
    key = "sk-test-very-secret-0123456789"
    options = {"openai": {"api_key": key}}
    async with Client(providers=options, transport=_openai_answers(calls)) as client:
        with caplog.at_level(logging.DEBUG, logger="llmclient"):
            await client.chat("hello there", model="openai/gpt-4o-mini")
    lines = [(record.levelname, record.getMessage()) for record in caplog.records if record.name == "llmclient"]
    assert len(lines) == 2
    (debug_level, retry), (info_level, done) = lines
    assert debug_level == "DEBUG"
    assert retry.startswith("chat openai/gpt-4o-mini retry 1/2 in 0.00s after RateLimitError 429")
    assert info_level == "INFO"
    assert done.startswith("chat openai/gpt-4o-mini ok ")
    assert "attempts=2 in=7 out=1 cost=$0.0000" in done
    assert done.endswith("request_id=req_42")
    assert key not in caplog.text
    assert "hello there" not in caplog.text  # content only when opted in


async def test_logging_content_is_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    async with Client() as client:
        client.pipeline.observers = [LoggingObserver(content=True)]
        with caplog.at_level(logging.DEBUG, logger="llmclient"):
            await client.chat("hello there", model="fake/echo")
    assert "hello there" in caplog.text
    assert "You said: hello there" in caplog.text


def test_llmclient_log_env_turns_logging_on() -> None:
    script = (
        "import asyncio\nfrom llmclient import Client\n"
        "async def main():\n    async with Client() as c:\n        await c.chat('hi', model='fake/echo')\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "LLMCLIENT_LOG": "debug"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert "INFO llmclient] chat fake/echo ok" in done.stderr
    env["LLMCLIENT_LOG"] = ""
    quiet = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert quiet.stderr == ""


def test_a_global_sdk_provider_set_after_the_client_is_made_is_used() -> None:
    script = (
        "import asyncio, sys\n"
        "from llmclient import Client\n"
        "client = Client()\n"
        "async def call():\n    await client.chat('hi', model='fake/echo')\n"
        "asyncio.run(call())\n"
        "assert 'opentelemetry.trace' not in sys.modules  # nothing configured: the API was never imported\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "asyncio.run(call())\n"
        "print([span.name for span in exporter.get_finished_spans()])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout == "['chat echo']\n"
