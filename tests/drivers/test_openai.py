"""The OpenAI driver against recorded bodies: the request it sends and the response it parses."""

from __future__ import annotations

import base64
import json
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import respx

from llmclient import (
    ChatResponse,
    Client,
    ConfigurationError,
    ContextWindowExceededError,
    ImagePart,
    ImageURL,
    InvalidRequestError,
    Message,
    MissingAPIKeyError,
    ParameterDroppedWarning,
    ResponseFormatError,
    TextPart,
    Tool,
    ToolCall,
    UnknownModelError,
    UnsupportedParameterError,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
URL = "https://api.openai.com/v1"


def body_of(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def sent(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


@pytest.fixture
def client() -> Client:
    return Client(providers={"openai": {"api_key": "sk-test"}}, retry=0)


WEATHER = Tool(
    name="get_current_weather",
    description="Weather in a city.",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


@respx.mock
async def test_chat_sends_every_parameter_and_parses_the_reply(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_completion.json"))
    reply = await client.chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello", "name": "ana"}],
        model="openai/gpt-4.1",
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        stop="END",
        seed=7,
        response_format={"type": "json_object"},
        extra_body={"user": "u-1", "service_tier": "default"},
    )
    assert sent(route) == {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello", "name": "ana"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 64,
        "stop": ["END"],
        "seed": 7,
        "response_format": {"type": "json_object"},
        "user": "u-1",
        "service_tier": "default",
    }
    request = route.calls[0].request
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["content-type"] == "application/json"
    assert isinstance(reply, ChatResponse)
    assert reply.text == "Hello! How can I assist you today?"
    assert reply.finish_reason == "stop"
    assert reply.model == "gpt-4.1-2025-04-14"
    assert reply.provider == "openai"
    assert (reply.usage.input_tokens, reply.usage.cached_input_tokens, reply.usage.output_tokens) == (19, 0, 10)
    assert not reply.usage.estimated
    assert reply.applied_params["max_tokens"] == 64
    assert reply.dropped_params == []
    assert reply.raw is not None and reply.raw["id"] == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"


@respx.mock
async def test_tools_tool_choice_and_tool_messages_on_the_wire(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_tool_calls.json"))
    history = [
        Message(role="user", content="Weather in Boston?"),
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="call_1", name="get_current_weather", arguments={"location": "Boston"})],
        ),
        Message(role="tool", tool_call_id="call_1", content='{"temp_c": 21}'),
        Message(
            role="user",
            content=[
                TextPart(text="And this place?"),
                ImagePart(image_url=ImageURL(url="data:image/png;base64,iVBORw0KGgo=", detail="low")),
            ],
        ),
    ]
    openai_dict_tool = {"type": "function", "function": {"name": "noop", "description": "", "parameters": {}}}
    reply = await client.chat(
        history, model="openai/gpt-4o-mini", tools=[WEATHER, openai_dict_tool], tool_choice="get_current_weather"
    )
    body = sent(route)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": '{"location": "Boston"}'},
            }
        ],
    }
    assert body["messages"][2] == {"role": "tool", "content": '{"temp_c": 21}', "tool_call_id": "call_1"}
    assert body["messages"][3]["content"] == [
        {"type": "text", "text": "And this place?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
    ]
    assert body["tools"] == [WEATHER.to_openai(), {"type": "function", "function": openai_dict_tool["function"]}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_current_weather"}}
    assert reply.finish_reason == "tool_calls"
    assert reply.text == ""
    assert [(call.id, call.name, call.arguments) for call in reply.tool_calls] == [
        ("call_abc123", "get_current_weather", {"location": "Boston, MA"}),
        ("call_def456", "get_current_weather", {"location": "北京"}),
    ]
    assert reply.tool_calls[0].raw_arguments == '{\n"location": "Boston, MA"\n}'


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
@respx.mock
async def test_tool_choice_keywords_pass_through(client: Client, choice: str) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_completion.json"))
    await client.chat("hi", model="openai/gpt-4o", tools=[WEATHER], tool_choice=choice)
    assert sent(route)["tool_choice"] == choice


@respx.mock
async def test_cached_and_reasoning_tokens_are_normalised(client: Client) -> None:
    respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_cached_reasoning.json"))
    usage = (await client.chat("hi", model="openai/o4-mini")).usage
    # 2006 prompt tokens of which 1920 cached: each token counted once.
    assert (usage.input_tokens, usage.cached_input_tokens) == (86, 1920)
    assert usage.prompt_tokens == 2006
    assert (usage.output_tokens, usage.reasoning_tokens) == (300, 256)
    assert usage.total_tokens == 2306


@respx.mock
async def test_stream_requests_usage_and_assembles_the_reply(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(
        200, content=(FIXTURES / "stream.sse").read_bytes(), headers={"content-type": "text/event-stream"}
    )
    stream = client.stream("Say hello", model="openai/gpt-4o-mini", max_tokens=20)
    chunks = [chunk async for chunk in stream]
    body = sent(route)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 20
    assert route.calls[0].request.headers["accept"] == "text/event-stream"
    assert "".join(chunk.delta for chunk in chunks) == "Hello, 世界 👋🏽!"
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (9, 7)
    assert all(chunk.finish_reason is None for chunk in chunks[:-1])
    assert stream.response.text == "Hello, 世界 👋🏽!"
    assert stream.response.usage == final.usage
    assert stream.response.model == "gpt-4o-mini"


@respx.mock
async def test_streamed_tool_call_fragments_join(client: Client) -> None:
    respx.post(f"{URL}/chat/completions").respond(200, content=(FIXTURES / "stream_tool_calls.sse").read_bytes())
    stream = client.stream("Weather in Paris?", model="openai/gpt-4o-mini", tools=[WEATHER])
    response = await stream.final_response()
    assert response.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", {"location": "Paris, France"})
    ]
    assert response.message.content is None
    assert response.usage.output_tokens == 16


@respx.mock
async def test_embeddings_request_base64_and_decode_in_order(client: Client) -> None:
    rows = np.array([[0.25, -0.5, 1.0], [0.125, 0.0, -2.0]], dtype="<f4")
    wire = {
        "object": "list",
        # Returned out of order on purpose: vectors must come back in input order.
        "data": [
            {"object": "embedding", "index": 1, "embedding": base64.b64encode(rows[1].tobytes()).decode()},
            {"object": "embedding", "index": 0, "embedding": base64.b64encode(rows[0].tobytes()).decode()},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    route = respx.post(f"{URL}/embeddings").respond(200, json=wire)
    result = await client.embed(["cat", "dog"], model="openai/text-embedding-3-small")
    assert sent(route) == {"model": "text-embedding-3-small", "input": ["cat", "dog"], "encoding_format": "base64"}
    assert result.vectors.dtype == np.float32
    np.testing.assert_array_equal(result.vectors, rows)
    assert result.usage.input_tokens == 4
    assert client.ledger.records[-1].kind == "embed"


@respx.mock
async def test_embeddings_with_a_missing_index_are_a_format_error(client: Client) -> None:
    wire = body_of("embeddings.json")
    wire["data"][1]["index"] = 0
    respx.post(f"{URL}/embeddings").respond(200, json=wire)
    with pytest.raises(ResponseFormatError):
        await client.embed(["a", "b"], model="openai/text-embedding-3-small")


@respx.mock
async def test_empty_embed_sends_nothing(client: Client) -> None:
    route = respx.post(f"{URL}/embeddings")
    result = await client.embed([], model="openai/text-embedding-3-small")
    assert result.vectors.shape[0] == 0
    assert not route.called
    assert len(client.ledger) == 0


@respx.mock
async def test_top_k_is_dropped_with_one_warning(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_completion.json"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reply = await client.chat("hi", model="openai/gpt-4o", top_k=40, temperature=0.5)
    assert [w.category for w in caught] == [ParameterDroppedWarning]
    assert "top_k" in str(caught[0].message)
    assert "top_k" not in sent(route)
    assert reply.dropped_params == ["top_k"]
    assert reply.applied_params == {"temperature": 0.5}


@respx.mock
async def test_strict_params_raises_before_sending() -> None:
    route = respx.post(f"{URL}/chat/completions")
    client = Client(providers={"openai": {"api_key": "sk-test"}}, strict_params=True)
    with pytest.raises(UnsupportedParameterError, match="top_k"):
        await client.chat("hi", model="openai/gpt-4o", top_k=40)
    assert not route.called


@respx.mock
async def test_invalid_arguments_raise_a_typed_error_before_sending(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions")
    with pytest.raises(InvalidRequestError, match="temperature"):
        await client.chat("hi", model="openai/gpt-4o", temperature=5)
    with pytest.raises(InvalidRequestError, match="messages"):
        await client.chat([], model="openai/gpt-4o")
    with pytest.raises(InvalidRequestError):
        await client.chat([{"role": "robot", "content": "hi"}], model="openai/gpt-4o")
    with pytest.raises(InvalidRequestError, match="bytes"):
        await client.chat(b"bytes", model="openai/gpt-4o")  # type: ignore[arg-type]
    assert not route.called
    assert len(client.ledger) == 0


@respx.mock
async def test_missing_key_says_what_to_do_and_sends_nothing() -> None:
    route = respx.post(f"{URL}/chat/completions")
    client = Client()
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        await client.chat("hi", model="openai/gpt-4o")
    assert not route.called
    # Counting tokens needs no key.
    count = await client.count_tokens("Hello, world!", model="openai/gpt-4")
    assert (count.tokens, count.exact) == (4, True)


@respx.mock
async def test_key_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://proxy.example.com/openai/v1/")
    route = respx.post("https://proxy.example.com/openai/v1/chat/completions").respond(
        200, json=body_of("chat_completion.json")
    )
    await Client().chat("hi", model="openai:gpt-4o")
    assert route.calls[0].request.headers["authorization"] == "Bearer sk-env"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/v1", "https://user:pw@example.com/v1", "https://example.com/v1?key=x", "example.com"]
)
async def test_bad_base_urls_are_rejected(url: str) -> None:
    client = Client(providers={"openai": {"api_key": "sk-test", "base_url": url}})
    with pytest.raises(ConfigurationError) as caught:
        await client.chat("hi", model="openai/gpt-4o")
    assert "pw" not in str(caught.value)


@respx.mock
async def test_context_and_model_errors_keep_their_meaning(client: Client) -> None:
    respx.post(f"{URL}/chat/completions").mock(
        side_effect=[
            httpx.Response(400, json=body_of("error_context_length.json"), headers={"x-request-id": "req_1"}),
            httpx.Response(404, json=body_of("error_404_model.json")),
        ]
    )
    with pytest.raises(ContextWindowExceededError) as context:
        await client.chat("hi", model="openai/gpt-4o")
    assert context.value.status == 400
    assert context.value.request_id == "req_1"
    assert "maximum context length" in context.value.message
    with pytest.raises(UnknownModelError):
        await client.chat("hi", model="openai/gpt-9-turbo")


async def test_count_tokens_follows_openais_rule() -> None:
    client = Client()
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!", "name": "example_user"},
    ]
    count = await client.count_tokens(messages, model="openai/gpt-4")
    # 3 per message + role + content, 1 + name for the named one, 3 to prime the reply (openai-cookbook).
    assert count.exact
    assert count.tokenizer == "cl100k_base"
    assert count.tokens == 3 + 1 + 6 + 3 + 1 + 2 + 1 + 2 + 3


# -- the whole Chat Completions surface ----------------------------------------------------------------------------

EVERY: dict[str, Any] = {
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END"],
    "seed": 1,
    "max_completion_tokens": 64,
    "frequency_penalty": 0.5,
    "presence_penalty": -0.5,
    "logit_bias": {"50256": -100},
    "n": 2,
    "logprobs": True,
    "top_logprobs": 3,
    "reasoning_effort": "low",
    "verbosity": "low",
    "service_tier": "priority",
    "user": "u-1",
    "safety_identifier": "s-1",
    "prompt_cache_key": "k-1",
    "prompt_cache_retention": "24h",
    "metadata": {"team": "search"},
    "store": True,
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "wav"},
    "prediction": {"type": "content", "content": "Hello"},
    "web_search_options": {"search_context_size": "low"},
    "parallel_tool_calls": False,
}


def wire_params(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in ("model", "messages", "tools", "stream")}


@respx.mock
@pytest.mark.parametrize("method", ["chat", "stream", "run"])
async def test_every_chat_completions_parameter_reaches_the_wire_by_its_name(method: str) -> None:
    reply = body_of("chat_completion.json")
    chunks = (FIXTURES / "stream.sse").read_bytes()
    route = respx.post(f"{URL}/chat/completions").mock(
        return_value=httpx.Response(200, content=chunks) if method == "stream" else httpx.Response(200, json=reply)
    )

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    async with Client(providers={"openai": {"api_key": "sk-test"}}, prices={"openai/gpt-test": 1}) as client:
        if method == "chat":
            response = await client.chat("Hi", model="openai/gpt-test", tools=[add], **EVERY)
        elif method == "stream":
            stream = client.stream("Hi", model="openai/gpt-test", tools=[add], **EVERY)
            response = await stream.final_response()
        else:
            response = (await client.run("Hi", model="openai/gpt-test", tools=[add], **EVERY)).response
    sent_params = wire_params(sent(route))
    expected = {**EVERY, "max_completion_tokens": 64}
    if method == "stream":
        expected["stream_options"] = {"include_usage": True}
    assert sent_params == expected
    assert response.dropped_params == []
    assert response.applied_params["max_tokens"] == 64  # the one name for both


@respx.mock
@pytest.mark.parametrize("strict", [False, True])
async def test_a_reasoning_model_gets_no_sampling_parameters(strict: bool) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_cached_reasoning.json"))
    async with Client(providers={"openai": {"api_key": "sk-test"}}, strict_params=strict) as client:
        if strict:
            with pytest.raises(UnsupportedParameterError, match="openai/o3-mini does not accept temperature, stop"):
                await client.chat("Hi", model="openai/o3-mini", temperature=0.2, stop="END", reasoning_effort="high")
            assert not route.called
            return
        with pytest.warns(ParameterDroppedWarning, match="openai/o3-mini does not accept temperature, stop"):
            reply = await client.chat(
                "Hi", model="openai/o3-mini", temperature=0.2, stop="END", reasoning_effort="high"
            )
    body = sent(route)
    assert "temperature" not in body and "stop" not in body
    assert (body["reasoning_effort"], reply.dropped_params) == ("high", ["temperature", "stop"])


@respx.mock
async def test_a_reasoning_effort_the_model_refuses_is_refused_before_sending(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions")
    with pytest.raises(InvalidRequestError, match=r"gpt-6\.2-sol does not take reasoning_effort 'none'"):
        await client.chat("Hi", model="openai/gpt-6.2-sol", reasoning_effort="none")
    assert not route.called


async def test_max_tokens_and_max_completion_tokens_must_agree(client: Client) -> None:
    with pytest.raises(InvalidRequestError, match="give one of them"):
        await client.chat("Hi", model="openai/gpt-4.1", max_tokens=10, max_completion_tokens=20)


@respx.mock
async def test_developer_audio_and_file_parts_in_openais_shapes(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_completion.json"))
    history = [
        {"role": "developer", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What do you hear and read?"},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
                {"type": "file", "file": {"file_id": "file-abc123"}},
            ],
        },
    ]
    await client.chat(history, model="openai/gpt-4.1")
    assert sent(route)["messages"] == history


async def test_audio_openai_cannot_take_is_refused_before_sending(client: Client) -> None:
    from llmclient import AudioPart

    with pytest.raises(InvalidRequestError, match="wav or mp3"):
        await client.chat(
            [Message(role="user", content=[AudioPart(data="ZkxhQw==", format="flac")])], model="openai/gpt-4.1"
        )


@respx.mock
async def test_a_legacy_function_call_reply_is_a_tool_call_run_can_answer() -> None:
    legacy = {
        "id": "chatcmpl-legacy",
        "object": "chat.completion",
        "created": 1699896916,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                },
                "logprobs": None,
                "finish_reason": "function_call",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }
    route = respx.post(f"{URL}/chat/completions").mock(
        side_effect=[httpx.Response(200, json=legacy), httpx.Response(200, json=body_of("chat_completion.json"))]
    )

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    async with Client(providers={"openai": {"api_key": "sk-test"}}) as client:
        result = await client.run("1 + 2?", model="openai/gpt-4o-mini", tools=[add])
    first = result.responses[0]
    assert (first.finish_reason, [c.arguments for c in first.tool_calls]) == ("tool_calls", [{"a": 1, "b": 2}])
    assert sent(route, 1)["messages"][2] == {"role": "tool", "content": "3", "tool_call_id": "call_0"}


@respx.mock
async def test_cache_writes_and_the_fingerprint_are_read(client: Client) -> None:
    body = body_of("chat_completion.json")
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 4, "cache_write_tokens": 10}
    body["system_fingerprint"] = "fp_44709d6fcb"
    respx.post(f"{URL}/chat/completions").respond(200, json=body)
    reply = await client.chat("Hi", model="openai/gpt-6.2-sol")
    usage = reply.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (5, 4, 10)
    assert usage.prompt_tokens == 19 and reply.system_fingerprint == "fp_44709d6fcb"
    assert reply.cost is not None and reply.cost.cache_write == Decimal("2.5") * 10 / 1_000_000


def test_a_tool_results_image_goes_in_a_user_message_after_the_tool_results() -> None:
    # OpenAI's tool messages take text parts only (ChatCompletionRequestToolMessage in the spec).
    from llmclient.drivers.openai.messages import messages_to_wire
    from llmclient.types import ImagePart, ImageURL, TextPart, ToolCall

    image = ImagePart(image_url=ImageURL(url="data:image/png;base64,iVBORw0KGgo="))
    messages = [
        Message(role="user", content="Look at both screens."),
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="a", name="shot", arguments={}), ToolCall(id="b", name="shot", arguments={})],
        ),
        Message(role="tool", tool_call_id="a", content=[TextPart(text="screen a"), image]),
        Message(role="tool", tool_call_id="b", content="screen b is blank"),
        Message(role="user", content="Well?"),
    ]
    wire = messages_to_wire(messages)
    assert [m["role"] for m in wire] == ["user", "assistant", "tool", "tool", "user", "user"]
    assert wire[2]["content"] == [
        {"type": "text", "text": "screen a"},
        {"type": "text", "text": "[the 1 attachment(s) of this result follow in a user message]"},
    ]
    assert wire[4]["content"] == [
        {"type": "text", "text": "Attachments of tool result a:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
