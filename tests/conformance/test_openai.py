"""OpenAI's Chat Completions against OpenAI's own OpenAPI spec (openai/chat_completions.json, see SOURCE.md): the
check every request body goes through (tests/conftest.py), and the spec's and documentation's example replies
parsed into the right fields."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import respx

from conformance.schemas import FOUND, errors, openai_schema
from llmclient import Client, Message
from llmclient.drivers.openai import OpenAIDriver
from llmclient.types import CHAT_PARAMS

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
URL = "https://api.openai.com/v1/chat/completions"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def client() -> Client:
    return Client(providers={"openai": {"api_key": "sk-test"}}, retry=0)


def test_a_deliberately_wrong_body_fails_the_check() -> None:
    good = {"model": "gpt-6.2-sol", "messages": [{"role": "user", "content": "Hi"}]}
    assert errors("openai-request", good) == []
    assert errors("openai-request", {**good, "top_k": 5}), "a field the spec does not have"
    assert errors("openai-request", {**good, "temperature": 3}), "out of range"
    assert errors(
        "openai-request", {**good, "messages": [{"role": "tool", "content": "x", "tool_call_id": "c", "name": "f"}]}
    )
    assert errors(
        "openai-request", {**good, "messages": [{"role": "assistant", "content": "x", "reasoning_content": "r"}]}
    )
    assert errors("openai-request", {**good, "messages": []}), "the spec wants at least one message"


@respx.mock
@pytest.mark.nonconforming  # the test itself: a field the schema rejects makes the suite fail
async def test_a_request_field_the_spec_rejects_is_caught_in_any_test(
    client: Client, request: pytest.FixtureRequest
) -> None:
    respx.post(URL).respond(200, json=fixture("spec/default.json"))
    await client.chat("Hello!", model="openai/gpt-4.1")
    assert request.node.stash[FOUND] == []
    await client.chat("Hello!", model="openai/gpt-4.1", extra_body={"top_k": 5})
    # The check every test's requests go through found it; only this test's marker keeps it from failing.
    [found] = request.node.stash[FOUND]
    assert "'top_k' was unexpected" in found


def test_every_parameter_the_openai_driver_sends_is_one_the_spec_has() -> None:
    request = openai_schema(closed=False)["components"]["schemas"]
    names = set(request["CreateChatCompletionRequest"]["allOf"][1]["properties"])
    for composed in ("CreateModelResponseProperties", "ModelResponseProperties"):
        schema = request[composed]
        names |= set(schema.get("properties", {}))
        for part in schema.get("allOf", ()):
            names |= set(part.get("properties", {}))
    accepted = OpenAIDriver.capabilities.params - {"max_tokens"}
    assert accepted <= names, sorted(accepted - names)
    assert "max_completion_tokens" in names
    assert set(CHAT_PARAMS) - accepted == {"top_k", "thinking", "max_tokens"}


@respx.mock
async def test_the_specs_default_example(client: Client) -> None:
    body = fixture("spec/default.json")
    assert errors("openai-CreateChatCompletionResponse", body) == []
    respx.post(URL).respond(200, json=body)
    reply = await client.chat(
        [{"role": "developer", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"}],
        model="openai/gpt-5.4",
    )
    assert (reply.text, reply.finish_reason, reply.refusal, reply.service_tier) == (
        "Hello! How can I assist you today?",
        "stop",
        None,
        "default",
    )
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (19, 10)


@respx.mock
async def test_the_specs_functions_example(client: Client) -> None:
    respx.post(URL).respond(200, json=fixture("spec/functions.json"))
    reply = await client.chat("Weather in Boston?", model="openai/gpt-4o-mini")
    assert reply.finish_reason == "tool_calls"
    assert [(call.id, call.name, call.arguments) for call in reply.tool_calls] == [
        ("call_abc123", "get_current_weather", {"location": "Boston, MA"})
    ]


@respx.mock
async def test_the_specs_logprobs_example(client: Client) -> None:
    body = fixture("spec/logprobs.json")
    respx.post(URL).respond(200, json=body)
    reply = await client.chat("Hello!", model="openai/gpt-4o-mini", logprobs=True, top_logprobs=2)
    wire = body["choices"][0]["logprobs"]["content"]
    assert reply.logprobs is not None and len(reply.logprobs) == len(wire)
    first = reply.logprobs[0]
    assert (first.token, first.logprob, first.bytes) == (wire[0]["token"], wire[0]["logprob"], wire[0]["bytes"])
    assert [alt.token for alt in first.top_logprobs] == [alt["token"] for alt in wire[0]["top_logprobs"]]


@respx.mock
async def test_the_specs_streaming_example(client: Client) -> None:
    lines = (FIXTURES / "spec" / "streaming.txt").read_text(encoding="utf-8").splitlines()
    chunks = [json.loads(line) for line in lines if line.startswith("{")]  # the spec elides the middle as "...."
    sse = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    respx.post(URL).respond(200, content=sse.encode())
    stream = client.stream("Hello!", model="openai/gpt-4o-mini")
    text = "".join([chunk.delta async for chunk in stream])
    assert text == "Hello"
    assert stream.response.finish_reason == "stop"
    assert stream.response.usage.estimated  # the example asks for no usage: counted here, and flagged


@respx.mock
async def test_a_refusal_is_kept_in_the_reply_and_the_stream(client: Client) -> None:
    respx.post(URL).mock(
        side_effect=[
            respx.MockResponse(200, json=fixture("chat_refusal.json")),
            respx.MockResponse(200, content=(FIXTURES / "stream_refusal.sse").read_bytes()),
        ]
    )
    reply = await client.chat("How do I pick a lock?", model="openai/gpt-4o")
    assert (reply.refusal, reply.text, reply.message.content) == (
        "I'm sorry, I cannot assist with that request.",
        "",
        None,
    )
    stream = client.stream("How do I pick a lock?", model="openai/gpt-4o")
    pieces = [chunk.refusal_delta async for chunk in stream]
    assert "".join(pieces) == "I'm sorry, I cannot assist with that request."
    assert stream.response.refusal == "I'm sorry, I cannot assist with that request."
    assert stream.response.message.content is None
    assert (stream.response.usage.input_tokens, stream.response.usage.output_tokens) == (81, 11)


@respx.mock
async def test_parallel_tool_calls_cached_and_reasoning_tokens(client: Client) -> None:
    respx.post(URL).mock(
        side_effect=[
            respx.MockResponse(200, json=fixture("chat_tool_calls.json")),
            respx.MockResponse(200, json=fixture("chat_cached_reasoning.json")),
        ]
    )
    calls = await client.chat("Weather in Boston and Beijing?", model="openai/gpt-4o-mini")
    assert [call.id for call in calls.tool_calls] == ["call_abc123", "call_def456"]
    reasoning = await client.chat("Think.", model="openai/o4-mini")
    usage = reasoning.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens) == (
        86,
        1920,
        300,
        256,
    )


@respx.mock
async def test_usage_in_the_last_stream_chunk(client: Client) -> None:
    respx.post(URL).respond(200, content=(FIXTURES / "stream.sse").read_bytes())
    stream = client.stream("Hi", model="openai/gpt-4o-mini")
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and not chunks[-1].usage.estimated
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (9, 7)
    assert all(chunk.usage is None for chunk in chunks[:-1])


@respx.mock
async def test_all_choices_and_the_flex_tier_price(client: Client) -> None:
    respx.post(URL).mock(
        side_effect=[
            respx.MockResponse(200, json=fixture("chat_two_choices_flex.json")),
            respx.MockResponse(200, content=(FIXTURES / "stream_two_choices.sse").read_bytes()),
        ]
    )
    reply = await client.chat("Toss a coin.", model="openai/gpt-6.2-sol", n=2, service_tier="flex")
    streamed = client.stream("Toss a coin.", model="openai/gpt-6.2-sol", n=2, service_tier="flex")
    chunks = [chunk async for chunk in streamed]
    for response in (reply, streamed.response):
        assert [choice.message.text for choice in response.choices] == ["Heads.", "Tails."]
        assert [choice.finish_reason for choice in response.choices] == ["stop", "stop"]
        assert response.text == "Heads." and response.service_tier == "flex"
        assert response.cost is not None and response.cost.service_tier == "flex"
        # Flex costs half the standard rates: 20 input tokens at $1/M, 4 output tokens at $5/M.
        assert response.cost.total == (Decimal(20) * 1 + Decimal(4) * 5) / 1_000_000
    assert {chunk.choice for chunk in chunks} == {0, 1}


def test_openai_pythons_dump_of_a_reply_goes_back_as_the_spec_wants() -> None:
    from openai.types.chat import ChatCompletion

    completion = ChatCompletion.model_validate(fixture("spec/default.json"))
    dumped = completion.choices[0].message.model_dump()
    assert set(dumped) >= {"refusal", "annotations", "audio", "function_call", "tool_calls"}
    message = Message.model_validate(dumped)
    wire = OpenAIDriver(api_key="sk-x")._messages_to_wire([message])
    body = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "Hello!"}, *wire]}
    assert errors("openai-request", body) == []
    assert wire == [{"role": "assistant", "content": "Hello! How can I assist you today?"}]
