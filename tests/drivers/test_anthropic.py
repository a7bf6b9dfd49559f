"""Anthropic's Messages driver: request bodies (checked against the published shape by tests/conftest.py) and the
documented replies, streams and errors of tests/fixtures/anthropic/."""

from __future__ import annotations

import datetime
import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from conftest import fixture_json, fixture_text
from llmclient import (
    AudioPart,
    BudgetExceededError,
    Client,
    ContextWindowExceededError,
    FilePart,
    Message,
    MissingAPIKeyError,
    RetryPolicy,
    StreamInterruptedError,
    Tool,
    UnknownModelError,
    UnsupportedCapabilityError,
    Usage,
)
from llmclient.routing import Deployment, ModelGroup
from llmclient.testing import Answer, Reply, Request, ScriptedServer
from llmclient.testing.wires import AnthropicWire

KEY = "sk-ant-api03-test-0123456789"
MODEL = "anthropic/claude-sonnet-5-5"
WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


class Recorder:
    """An `httpx.MockTransport` handler that answers each request with the next scripted response."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)

    def body(self, number: int = -1) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.requests[number].content)
        return loaded


def client_for(recorder: Recorder, **options: Any) -> Client:
    provider = {"api_key": KEY, **options.pop("provider", {})}
    options.setdefault("retry", 0)
    return Client(providers={"anthropic": provider}, transport=httpx.MockTransport(recorder), **options)


def sse(name: str) -> httpx.Response:
    return httpx.Response(200, text=fixture_text("anthropic", name), headers={"content-type": "text/event-stream"})


def answer(name: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=fixture_json("anthropic", name), headers=headers)


async def test_a_chat_sends_system_on_top_and_reads_the_documented_message() -> None:
    recorder = Recorder(answer("message.json", **{"request-id": "req_1", "anthropic-ratelimit-tokens-remaining": "9"}))
    async with client_for(recorder) as client:
        reply = await client.chat(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, Claude"}],
            model=MODEL,
            temperature=0.5,
            stop=["END"],
            user="user-42",
        )
    request = recorder.requests[0]
    assert (request.url.path, request.headers["x-api-key"], request.headers["anthropic-version"]) == (
        "/v1/messages",
        KEY,
        "2023-06-01",
    )
    assert recorder.body() == {
        "model": "claude-sonnet-5-5",
        "max_tokens": 4096,  # the API requires one: the driver's default
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "system": [{"type": "text", "text": "Be brief."}],
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
    }
    assert (reply.text, reply.finish_reason, reply.request_id) == ("Hi! My name is Claude.", "stop", "req_1")
    assert reply.usage == Usage(input_tokens=2095, output_tokens=503)
    assert reply.cost is not None and reply.cost.total == Decimal("0.000002") * 2095 + Decimal("0.00001") * 503
    assert reply.rate_limits == {"anthropic-ratelimit-tokens-remaining": "9"}


async def test_cache_reads_and_writes_are_reported_and_priced_apart() -> None:
    recorder = Recorder(answer("message_cached.json"))
    async with client_for(recorder, provider={"prompt_cache": "1h"}) as client:
        reply = await client.chat(
            [{"role": "system", "content": "<the whole book>"}, {"role": "user", "content": "Themes?"}],
            model=MODEL,
            tools=[WEATHER],
        )
    body = recorder.body()
    mark = {"type": "ephemeral", "ttl": "1h"}
    assert body["system"][-1]["cache_control"] == mark and body["tools"][-1]["cache_control"] == mark
    assert body["messages"][-1]["content"] == [{"type": "text", "text": "Themes?", "cache_control": mark}]
    assert reply.usage == Usage(input_tokens=21, cache_write_tokens=188086, output_tokens=393)
    assert reply.cost is not None
    assert reply.cost.cache_write == Decimal("0.0000025") * 188086  # Sonnet 5.5's 5-minute write rate
    assert reply.service_tier == "standard"


async def test_tool_use_and_a_thinking_turn_come_back_as_calls_with_the_signature() -> None:
    recorder = Recorder(answer("tool_use.json"), answer("thinking_tool_use.json"))
    async with client_for(recorder) as client:
        called = await client.chat("Weather in SF?", model=MODEL, tools=[WEATHER], tool_choice="required")
        thought = await client.chat("Weather in Paris?", model=MODEL, tools=[WEATHER], thinking=True)
    assert recorder.body(0)["tool_choice"] == {"type": "any"}
    assert recorder.body(1)["thinking"] == {"type": "adaptive"}
    (call,) = called.tool_calls
    assert (call.id, call.arguments, called.finish_reason) == (
        "toolu_01A09q90qw90lq917835lq9",
        {"location": "San Francisco, CA", "unit": "celsius"},
        "tool_calls",
    )
    assert called.text == "I'll check the current weather in San Francisco for you."
    assert thought.reasoning is not None and thought.reasoning.startswith("The user wants to know")
    assert thought.message.reasoning_signature is not None and thought.message.reasoning_signature.startswith("BDaL")


@pytest.mark.parametrize(
    ("fixture", "text", "usage"),
    [
        ("stream.sse", "Hello!", Usage(input_tokens=25, output_tokens=15)),
        (
            "stream_tool_use.sse",
            "Okay, let's check the weather for San Francisco, CA:",
            Usage(input_tokens=472, output_tokens=89),
        ),
        (
            "stream_thinking.sse",
            "The greatest common divisor of 1071 and 462 is **21**.",
            Usage(input_tokens=40, output_tokens=214),
        ),
    ],
)
async def test_documented_streams_assemble_with_usage_from_two_events(fixture: str, text: str, usage: Usage) -> None:
    recorder = Recorder(sse(fixture))
    async with client_for(recorder) as client:
        stream = client.stream("Go.", model=MODEL, tools=[WEATHER])
        reply = await stream.final_response()
    assert recorder.body()["stream"] is True
    assert (reply.text, reply.usage) == (text, usage)
    if fixture == "stream_tool_use.sse":
        (call,) = reply.tool_calls
        assert (call.id, call.arguments) == (
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            {"location": "San Francisco, CA", "unit": "fahrenheit"},
        )
    if fixture == "stream_thinking.sse":
        assert reply.reasoning is not None and reply.reasoning.endswith("So GCD(1071, 462) = 21")
        assert reply.message.reasoning_signature == "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."


async def test_an_error_event_inside_a_stream_keeps_its_type_and_the_text_so_far() -> None:
    async with client_for(Recorder(sse("stream_error.sse"))) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in client.stream("Tell a story.", model=MODEL):
                pass
    assert (caught.value.error_type, caught.value.partial_text) == ("overloaded_error", "Once upon")
    assert len(client.ledger.records) == 1 and client.ledger.records[0].usage.estimated


async def test_error_answers_map_by_their_type() -> None:
    recorder = Recorder(
        answer("error_404_model.json", 404),
        answer("error_400_prompt_too_long.json", 400),
        answer("error_529_overloaded.json", 529),
        answer("message.json"),
    )
    async with client_for(recorder, retry=RetryPolicy(max_retries=1, initial_backoff=0)) as client:
        with pytest.raises(UnknownModelError, match="model: claude-sonnet-0") as unknown:
            await client.chat("Hi", model="anthropic/claude-sonnet-0")
        with pytest.raises(ContextWindowExceededError):
            await client.chat("Hi", model=MODEL)
        reply = await client.chat("Hi", model=MODEL)  # the 529 is retried
    assert unknown.value.request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"
    assert (reply.text, client.ledger.records[-1].attempts) == ("Hi! My name is Claude.", 2)


async def test_counts_are_exact_with_a_key_and_flagged_estimates_without() -> None:
    recorder = Recorder(answer("count_tokens.json"))
    async with client_for(recorder) as client:
        counted = await client.count_tokens("Hello, Claude", model=MODEL, tools=[WEATHER])
    assert (counted.tokens, counted.exact) == (2095, True)
    assert recorder.requests[0].url.path == "/v1/messages/count_tokens"
    assert recorder.body()["tools"][0]["name"] == "get_weather" and "max_tokens" not in recorder.body()
    offline = Client(providers={"anthropic": {}})
    estimate = await offline.count_tokens("Hello, Claude", model=MODEL)
    assert estimate.exact is False and estimate.tokens > 0
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        await offline.chat("Hi", model=MODEL)
    await offline.aclose()


async def test_a_budget_reserves_the_default_max_tokens_it_sends() -> None:
    recorder = Recorder(answer("count_tokens.json"), answer("message.json"))
    async with client_for(recorder, provider={"max_tokens": 1000}) as client:
        # At most 2095 prompt tokens at the cache-write rate ($2.50/M) + 1000 output tokens at $10/M = $0.0152375.
        async with client.budget(usd="0.0152"):
            with pytest.raises(BudgetExceededError):
                await client.chat("Hello, Claude", model=MODEL)
        recorder.answers.insert(0, answer("count_tokens.json"))
        async with client.budget(usd="0.0153") as budget:
            reply = await client.chat("Hello, Claude", model=MODEL)
    assert recorder.body()["max_tokens"] == 1000
    assert budget.spent == reply.cost.total  # type: ignore[union-attr]


class City(BaseModel):
    name: str
    country: str


async def test_structured_output_and_effort_go_in_output_config() -> None:
    message = {
        **fixture_json("anthropic", "message.json"),
        "content": [{"type": "text", "text": '{"name": "Paris", "country": "France"}'}],
    }
    recorder = Recorder(httpx.Response(200, json=message))
    async with client_for(recorder) as client:
        reply = await client.chat("Capital of France?", model=MODEL, response_model=City, reasoning_effort="xhigh")
    config = recorder.body()["output_config"]
    assert config["effort"] == "xhigh" and config["format"]["type"] == "json_schema"
    assert config["format"]["schema"]["properties"]["name"] == {"title": "Name", "type": "string"}
    assert recorder.body()["thinking"] == {"type": "adaptive"}
    assert reply.parsed == City(name="Paris", country="France")


async def test_parts_tool_results_and_refusals_map_to_blocks() -> None:
    recorder = Recorder(answer("message.json"))
    pdf = FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf")
    conversation = [
        Message.model_validate(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ),
        Message(
            role="assistant", tool_calls=[{"id": "toolu_1", "name": "get_weather", "arguments": {"location": "Paris"}}]
        ),
        Message(role="tool", tool_call_id="toolu_1", content="18°C"),
        Message(role="user", content=[pdf]),
    ]
    async with client_for(recorder) as client:
        await client.chat(conversation, model=MODEL, tools=[WEATHER], parallel_tool_calls=False, thinking=False)
        with pytest.raises(UnsupportedCapabilityError, match="audio"):
            await client.chat([Message(role="user", content=[AudioPart(data="UklGRg==", format="wav")])], model=MODEL)
    body = recorder.body()
    images = body["messages"][0]["content"][1:]
    assert images == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}
    ]
    assert body["messages"][2]["content"] == [  # the result first, then what the user adds: one user turn
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18°C"}]},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
    ]
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["thinking"] == {"type": "disabled"}


class LimitedWire(AnthropicWire):
    """Anthropic's wire, answering with rate-limit headers that say no request is left for 30 seconds."""

    def reply(self, reply: Reply, request: Request, number: int) -> Answer:
        answer = super().reply(reply, request, number)
        reset = datetime.datetime.fromtimestamp(time.time() + 30, tz=datetime.timezone.utc)
        answer.headers["anthropic-ratelimit-requests-remaining"] = "0"
        answer.headers["anthropic-ratelimit-requests-reset"] = reset.isoformat().replace("+00:00", "Z")
        return answer


async def test_anthropics_rate_limit_headers_send_a_groups_calls_elsewhere_until_their_reset() -> None:
    async with ScriptedServer(LimitedWire()) as spent, ScriptedServer(AnthropicWire()) as other:
        spent.script(Reply(text="one"))
        other.script(*(Reply(text="more") for _ in range(3)))
        group = ModelGroup(
            [Deployment(MODEL, base_url=server.url, api_key=KEY, price=0) for server in (spent, other)],
            strategy="priority",
        )
        async with Client(routes={"claude": group}) as client:
            served = [(await client.chat("hi", model="claude")).deployment for _ in range(4)]
    assert served == ["claude@0", "claude@1", "claude@1", "claude@1"]
    assert len(spent.requests) == 1  # nothing more was sent there before the reset
