"""The Ollama driver against bodies from Ollama's API docs: what it sends, what it parses, how it fails.

Wire parity: for the same logical request the official `ollama` client and llmclient send the same JSON, up to the
differences listed in docs/providers/ollama.md (asserted here one by one).
"""

from __future__ import annotations

import asyncio
import json
import math
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ollama
import pytest
import respx

from llmclient import (
    APIConnectionError,
    Client,
    ConfigurationError,
    ContextWindowExceededError,
    ImagePart,
    ImageURL,
    InvalidRequestError,
    Message,
    ResponseFormatError,
    RetryPolicy,
    StreamDecodeError,
    StreamInterruptedError,
    TextPart,
    Tool,
    ToolCall,
    UnknownModelError,
    UnsupportedCapabilityError,
)
from llmclient import tokens as token_counting
from llmclient.drivers.ollama import OllamaDriver, OllamaTruncationWarning, parse_host
from llmclient.http import iter_ndjson

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ollama"
HOST = "http://localhost:11434"
MODEL = "ollama/llama3.2"
WEATHER = Tool(
    name="get_current_weather",
    description="Get the current weather for a location",
    parameters={
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The location to get the weather for, e.g. Paris, FR"},
            "format": {"type": "string", "description": "celsius or fahrenheit", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location", "format"],
    },
)


def body_of(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def chat_body(prompt_tokens: int) -> dict[str, Any]:
    """The documented reply, for a prompt of another size (a fixed count would look like a truncation)."""
    return {**body_of("chat.json"), "prompt_eval_count": prompt_tokens}


def sent(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


def show_with(context_length: int | None = 8192, capabilities: list[str] | None = None) -> dict[str, Any]:
    show = body_of("show.json")
    if context_length is None:
        del show["model_info"]["llama.context_length"]
    else:
        show["model_info"]["llama.context_length"] = context_length
    if capabilities is not None:
        show["capabilities"] = capabilities
    return show


class Pieces(httpx.AsyncByteStream):
    """A body sent in the given pieces, then optionally failing like a dropped connection."""

    def __init__(self, pieces: list[bytes], fail: bool = False) -> None:
        self.pieces, self.fail = pieces, fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail:
            raise httpx.ReadError("peer closed connection mid-body")


def cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture(autouse=True)
def _no_ollama_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)


@pytest.fixture
def client() -> Client:
    return Client(retry=0)


@pytest.fixture
def show() -> Iterator[respx.Route]:
    with respx.mock:
        yield respx.post(f"{HOST}/api/show").respond(200, json=body_of("show.json"))


# -- chat ------------------------------------------------------------------------------------------------------


async def test_chat_sends_the_native_body_and_parses_the_reply(client: Client, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
    reply = await client.chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "why is the sky blue?"}],
        model=MODEL,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        max_tokens=64,
        stop="END",
        seed=7,
        extra_body={"keep_alive": "10m", "think": False, "options": {"repeat_penalty": 1.1}},
    )
    assert sent(route) == {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "why is the sky blue?"}],
        "stream": False,
        "options": {
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "num_predict": 64,
            "stop": ["END"],
            "seed": 7,
            "num_ctx": 4096,
            "repeat_penalty": 1.1,
        },
        "truncate": False,
        "keep_alive": "10m",
        "think": False,
    }
    assert sent(show) == {"model": "llama3.2"}
    headers = route.calls[0].request.headers
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers
    assert (reply.text, reply.finish_reason, reply.model, reply.provider) == (
        "Hello! How are you today?",
        "stop",
        "llama3.2",
        "ollama",
    )
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.estimated) == (26, 298, False)
    assert reply.raw is not None
    assert (reply.raw["load_duration"], reply.raw["eval_duration"]) == (2154458, 4799921000)
    assert reply.cost is not None and reply.cost.total == 0  # local: free unless priced
    assert reply.dropped_params == []
    assert client.ledger.records[-1].usage == reply.usage


async def test_driver_options_apply_to_every_call(show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
    options = {"keep_alive": -1, "think": "low", "options": {"num_thread": 8}, "truncate": True}
    async with Client(providers={"ollama": options}) as client:
        await client.chat("hi", model=MODEL, temperature=0)
    body = sent(route)
    assert (body["keep_alive"], body["think"], "truncate" in body) == (-1, "low", False)
    assert body["options"] == {"num_thread": 8, "temperature": 0, "num_ctx": 4096}


@pytest.mark.parametrize(
    ("options", "think"),
    [
        ({}, "low"),
        ({"thinking": False}, False),
        ({"thinking": True}, True),
        ({"reasoning_effort": "high"}, "high"),
        ({"reasoning_effort": "xhigh"}, "max"),
        ({"reasoning_effort": "minimal"}, "low"),
        ({"reasoning_effort": "none"}, False),
    ],
)
async def test_think_per_call_over_the_drivers_default(show: respx.Route, options: dict[str, Any], think: Any) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat_thinking.json"))
    async with Client(providers={"ollama": {"think": "low"}}) as client:
        reply = await client.chat("How many r in strawberry?", model=MODEL, **options)
    assert sent(route)["think"] == think  # ThinkValue: a bool, or "low", "medium", "high", "max" (api/types.go)
    assert reply.dropped_params == []


async def test_logprobs_are_asked_for_and_read(client: Client, show: respx.Route) -> None:
    # Ollama's `Logprob` (api/types.go): token, logprob, bytes, and top_logprobs when asked for.
    logprobs = [
        {
            "token": "Hello",
            "logprob": -0.03,
            "bytes": [72, 101, 108, 108, 111],
            "top_logprobs": [{"token": "Hello", "logprob": -0.03}, {"token": "Hi", "logprob": -3.6}],
        }
    ]
    route = respx.post(f"{HOST}/api/chat").respond(200, json={**chat_body(26), "logprobs": logprobs})
    reply = await client.chat("hi", model=MODEL, logprobs=True, top_logprobs=2)
    assert (sent(route)["logprobs"], sent(route)["top_logprobs"]) == (True, 2)
    assert reply.logprobs is not None and reply.logprobs[0].bytes == [72, 101, 108, 108, 111]
    assert [(alt.token, alt.logprob) for alt in reply.logprobs[0].top_logprobs] == [("Hello", -0.03), ("Hi", -3.6)]


async def test_no_cached_prompt_count_is_read(client: Client, show: respx.Route) -> None:
    # `prompt_eval_cached_count` is in no released Ollama (api/types.go's Metrics lacks it), only in an unmerged
    # branch: a server that sent it would not be believed on it.
    respx.post(f"{HOST}/api/chat").respond(200, json={**chat_body(26), "prompt_eval_cached_count": 20})
    reply = await client.chat("hi", model=MODEL)
    assert (reply.usage.input_tokens, reply.usage.cached_input_tokens) == (26, 0)


async def test_developer_goes_as_system_and_audio_is_refused(client: Client, show: respx.Route) -> None:
    from llmclient import AudioPart

    route = respx.post(f"{HOST}/api/chat").respond(200, json=chat_body(26))
    await client.chat([Message(role="developer", content="Be brief."), Message(role="user", content="hi")], model=MODEL)
    assert sent(route)["messages"][0] == {"role": "system", "content": "Be brief."}
    with pytest.raises(UnsupportedCapabilityError, match="not audio or file parts"):
        await client.chat([Message(role="user", content=[AudioPart(data="UklGRg==", format="wav")])], model=MODEL)
    assert route.call_count == 1


async def test_model_info_is_asked_once_per_model_even_concurrently(client: Client, show: respx.Route) -> None:
    respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
    await asyncio.gather(*[client.chat("hi", model=MODEL) for _ in range(5)])
    await client.chat("hi", model=MODEL)
    assert show.call_count == 1
    await client.chat("hi", model="ollama/qwen2:1.5b")
    assert show.call_count == 2
    assert sent(show) == {"model": "qwen2:1.5b"}


async def test_images_go_as_base64_and_links_are_refused(client: Client, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
    picture = ImagePart(image_url=ImageURL(url="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAG0AAABmCAYAAADBPx+V"))
    await client.chat([Message(role="user", content=[TextPart(text="what is in this image?"), picture])], model=MODEL)
    assert sent(route)["messages"] == [
        {
            "role": "user",
            "content": "what is in this image?",
            "images": ["iVBORw0KGgoAAAANSUhEUgAAAG0AAABmCAYAAADBPx+V"],
        }
    ]
    link = ImagePart(image_url=ImageURL(url="https://example.com/pig.png"))
    with pytest.raises(InvalidRequestError, match="base64"):
        await client.chat([Message(role="user", content=[link])], model=MODEL)
    assert route.call_count == 1


async def test_structured_output_maps_to_format(client: Client, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat_structured.json"))
    schema = {
        "type": "object",
        "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
        "required": ["age", "available"],
    }
    reply = await client.chat(
        "Ollama is 22 years old and busy saving the world.",
        model=MODEL,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}},
    )
    assert sent(route)["format"] == schema
    assert json.loads(reply.text) == {"age": 22, "available": False}
    await client.chat("json please", model=MODEL, response_format={"type": "json_object"})
    assert sent(route)["format"] == "json"
    await client.chat("text please", model=MODEL, response_format={"type": "text"})
    assert "format" not in sent(route)
    await client.chat("schema as Ollama takes it", model=MODEL, response_format=schema)
    assert sent(route)["format"] == schema
    with pytest.raises(InvalidRequestError):
        await client.chat("no schema", model=MODEL, response_format={"type": "json_schema", "json_schema": {}})


async def test_thinking_becomes_reasoning_and_is_sent_back(client: Client, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat_thinking.json"))
    reply = await client.chat("How many letter r are in strawberry?", model=MODEL, extra_body={"think": True})
    assert sent(route)["think"] is True
    assert reply.reasoning is not None and reply.reasoning.startswith("Spell it out")
    assert reply.text == 'There are 3 letter r\'s in "strawberry".'
    await client.chat(
        [{"role": "user", "content": "Hi"}, reply.message, {"role": "user", "content": "Sure?"}], model=MODEL
    )
    assert sent(route)["messages"][1] == {"role": "assistant", "content": reply.text, "thinking": reply.reasoning}


# -- tools -----------------------------------------------------------------------------------------------------


async def test_tools_and_object_arguments(client: Client, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat_tool_calls.json"))
    reply = await client.chat("What is the weather today in Paris?", model=MODEL, tools=[WEATHER])
    assert sent(route)["tools"] == [
        {
            "type": "function",
            "function": {"name": WEATHER.name, "description": WEATHER.description, "parameters": WEATHER.parameters},
        }
    ]
    assert reply.finish_reason == "tool_calls"  # Ollama says "stop"
    assert reply.message.content is None
    [call] = reply.tool_calls
    assert (call.id, call.name, call.arguments) == (
        "call_0",
        "get_current_weather",
        {"format": "celsius", "location": "Paris, FR"},
    )
    assert json.loads(call.raw_arguments) == call.arguments


async def test_tool_history_sends_ids_and_tool_names(client: Client, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=chat_body(150))
    history = [
        Message(role="user", content="What is the temperature in New York?"),
        Message(role="assistant", tool_calls=[ToolCall(id="call_0", name="get_temperature", arguments={"city": "NY"})]),
        Message(role="tool", tool_call_id="call_0", content="22°C"),
        Message(role="tool", name="get_conditions", content="Sunny"),
    ]
    await client.chat(history, model=MODEL, tools=[WEATHER])
    # Ollama matches a result to its call by `tool_call_id` (api/types.go Message), older servers by `tool_name`.
    assert sent(route)["messages"][1:] == [
        {
            "role": "assistant",
            "tool_calls": [{"id": "call_0", "function": {"name": "get_temperature", "arguments": {"city": "NY"}}}],
        },
        {"role": "tool", "content": "22°C", "tool_name": "get_temperature", "tool_call_id": "call_0"},
        {"role": "tool", "content": "Sunny", "tool_name": "get_conditions"},
    ]


async def test_ids_ollama_sends_are_kept(client: Client, show: respx.Route) -> None:
    respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat_tool_calls_with_ids.json"))
    reply = await client.chat("New York and London?", model=MODEL, tools=[WEATHER])
    assert [(c.id, c.arguments) for c in reply.tool_calls] == [
        ("call_p7o2gz50", {"city": "New York"}),
        ("call_g3lmvxvv", {"city": "London"}),
    ]
    assert reply.reasoning is not None and reply.usage.input_tokens == 180


async def test_tool_choice_none_sends_no_tools_and_forcing_is_refused(client: Client, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
    await client.chat("hi", model=MODEL, tools=[WEATHER], tool_choice="none")
    assert "tools" not in sent(route)
    for choice in ("required", "get_current_weather"):
        with pytest.raises(UnsupportedCapabilityError, match="cannot force"):
            await client.chat("hi", model=MODEL, tools=[WEATHER], tool_choice=choice)
    assert route.call_count == 1


async def test_a_model_without_tools_is_an_unsupported_capability(client: Client) -> None:
    with respx.mock:
        respx.post(f"{HOST}/api/show").respond(200, json=show_with(capabilities=["completion", "vision"]))
        route = respx.post(f"{HOST}/api/chat").respond(400, json=body_of("error_no_tools.json"))
        with pytest.raises(UnsupportedCapabilityError, match="does not support tools"):
            await client.chat("hi", model="ollama/gemma3:4b", tools=[WEATHER])
        assert not route.called  # known from /api/show: nothing sent
        old_server = Client(retry=0, providers={"ollama": {"context_guard": False}})
        with pytest.raises(UnsupportedCapabilityError, match="does not support tools") as caught:
            await old_server.chat("hi", model="ollama/gemma3:4b", tools=[WEATHER])
        assert caught.value.status == 400 and route.call_count == 1


# -- streaming -------------------------------------------------------------------------------------------------


async def test_stream_reads_ndjson_and_ends_on_done(client: Client, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, content=raw("stream.ndjson"))
    stream = client.stream("Say hello", model=MODEL, max_tokens=20)
    chunks = [chunk async for chunk in stream]
    body = sent(route)
    assert (body["stream"], body["options"]["num_predict"]) == (True, 20)
    assert route.calls[0].request.headers["accept"] == "application/x-ndjson"
    assert [c.delta for c in chunks[:-1]] == ["Hello", ", 世界", " 👋🏽!"]
    final = chunks[-1]
    assert (final.finish_reason, final.model) == ("stop", "llama3.2")
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (26, 4)
    assert stream.response.text == "Hello, 世界 👋🏽!"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 10_000])
async def test_stream_survives_any_split(client: Client, show: respx.Route, size: int) -> None:
    data = raw("stream.ndjson").replace(b"\n", b"\r\n")  # CRLF line ends too
    respx.post(f"{HOST}/api/chat").mock(side_effect=lambda _: httpx.Response(200, stream=Pieces(cut(data, size))))
    text = "".join([chunk.delta async for chunk in client.stream("Say hello", model=MODEL)])
    assert text == "Hello, 世界 👋🏽!"


async def test_iter_ndjson_splits_at_every_byte() -> None:
    data = raw("stream.ndjson")
    expected = [line for line in data.split(b"\n") if line]

    async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    for at in range(len(data) + 1):
        assert [line async for line in iter_ndjson(chunks(data[:at], b"", data[at:]))] == expected
    no_newline_at_end = data.rstrip(b"\n") + b"\n\n" + expected[0]
    assert [line async for line in iter_ndjson(chunks(no_newline_at_end))] == [*expected, expected[0]]


async def test_stream_thinking_and_whole_tool_calls(client: Client, show: respx.Route) -> None:
    respx.post(f"{HOST}/api/chat").respond(200, content=raw("stream_thinking_tools.ndjson"))
    stream = client.stream("Temperatures?", model=MODEL, tools=[WEATHER], extra_body={"think": True})
    response = await stream.final_response()
    assert response.reasoning == "The user wants the temperature."
    assert response.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [
        ("call_0", "get_temperature", {"city": "New York"}),
        ("call_1", "get_temperature", {"city": "London"}),
    ]
    assert response.usage.output_tokens == 61


# -- faults ----------------------------------------------------------------------------------------------------


async def test_unknown_model_says_ollama_pull(client: Client) -> None:
    with respx.mock:
        respx.post(f"{HOST}/api/show").respond(404, json=body_of("error_404_model.json"))
        chat = respx.post(f"{HOST}/api/chat").respond(404, json=body_of("error_404_model.json"))
        with pytest.raises(UnknownModelError, match=r"run `ollama pull qwen2:1\.5b`") as caught:
            await client.chat("hi", model="ollama/qwen2:1.5b")
        assert caught.value.status == 404 and not chat.called
        unguarded = Client(retry=0, providers={"ollama": {"context_guard": False}})
        with pytest.raises(UnknownModelError, match=r"ollama pull qwen2:1\.5b"):
            await unguarded.chat("hi", model="ollama/qwen2:1.5b")
        with pytest.raises(UnknownModelError, match=r"ollama pull qwen2:1\.5b"):
            await unguarded.stream("hi", model="ollama/qwen2:1.5b").final_response()


async def test_refused_connection_says_ollama_is_not_running() -> None:
    policy = RetryPolicy(max_retries=1, initial_backoff=0, max_backoff=0, jitter=False)
    with respx.mock:
        route = respx.post(f"{HOST}/api/show").mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))
        with pytest.raises(APIConnectionError) as caught:
            await Client(retry=policy).chat("hi", model=MODEL)
    message = str(caught.value)
    assert message.startswith(f"Ollama does not appear to be running at {HOST}")
    assert "ollama serve" in message and "Connection refused" in message
    assert caught.value.retryable and route.call_count == 2


async def test_503_busy_is_retried(show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").mock(
        side_effect=[
            httpx.Response(503, json=body_of("error_503_busy.json")),
            httpx.Response(200, json=body_of("chat.json")),
        ]
    )
    client = Client(retry=RetryPolicy(max_retries=2, initial_backoff=0, max_backoff=0, jitter=False))
    reply = await client.chat("hi", model=MODEL)
    assert reply.text == "Hello! How are you today?"
    assert route.call_count == 2 and sent(route, 0) == sent(route, 1)
    assert client.ledger.records[-1].attempts == 2


async def test_a_failed_model_lookup_is_not_remembered() -> None:
    busy = httpx.Response(503, json=body_of("error_503_busy.json"))
    with respx.mock:
        show = respx.post(f"{HOST}/api/show").mock(side_effect=[busy, httpx.Response(200, json=body_of("show.json"))])
        respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
        client = Client(retry=RetryPolicy(max_retries=1, initial_backoff=0, max_backoff=0, jitter=False))
        assert (await client.chat("hi", model=MODEL)).text == "Hello! How are you today?"
        await client.chat("hi", model=MODEL)
        assert show.call_count == 2


async def test_an_error_line_inside_the_stream_keeps_the_partial_text(client: Client, show: respx.Route) -> None:
    respx.post(f"{HOST}/api/chat").respond(200, content=raw("stream_error.ndjson"))
    received: list[str] = []

    async def read() -> None:
        async for chunk in client.stream("Can you?", model=MODEL):
            received.append(chunk.delta)

    with pytest.raises(StreamInterruptedError, match="an error was encountered while running the model") as caught:
        await read()
    assert caught.value.partial_text == "".join(received) == " Yes. I can"
    assert client.ledger.records[-1].error == "StreamInterruptedError"


@pytest.mark.parametrize("fail", [False, True], ids=["ends-without-done", "connection-dropped"])
async def test_a_stream_cut_before_done_is_interrupted(client: Client, show: respx.Route, fail: bool) -> None:
    lines = raw("stream.ndjson").splitlines(keepends=True)
    respx.post(f"{HOST}/api/chat").mock(side_effect=lambda _: httpx.Response(200, stream=Pieces(lines[:2], fail)))
    with pytest.raises(StreamInterruptedError) as caught:
        await client.stream("Say hello", model=MODEL).final_response()
    assert caught.value.partial_text == "Hello, 世界"


async def test_a_garbled_line_is_a_decode_error(client: Client, show: respx.Route) -> None:
    respx.post(f"{HOST}/api/chat").respond(200, content=raw("stream.ndjson").replace(b'"done":false}\n{', b"}\n{{", 1))
    with pytest.raises(StreamDecodeError):
        await client.stream("Say hello", model=MODEL).final_response()


async def test_a_chat_body_without_message_is_a_format_error(client: Client, show: respx.Route) -> None:
    respx.post(f"{HOST}/api/chat").respond(200, json={"model": "llama3.2", "done": True})
    with pytest.raises(ResponseFormatError):
        await client.chat("hi", model=MODEL)


# -- the context guard -----------------------------------------------------------------------------------------


async def test_a_prompt_that_cannot_fit_is_refused_before_sending(client: Client) -> None:
    with respx.mock:
        respx.post(f"{HOST}/api/show").respond(200, json=show_with(context_length=512))
        route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
        with pytest.raises(ContextWindowExceededError, match="context window of 512 tokens") as caught:
            await client.chat("lorem ipsum " * 400, model=MODEL)
        assert "estimated" in str(caught.value)
        with pytest.raises(ContextWindowExceededError):
            await client.stream("lorem ipsum " * 400, model=MODEL).final_response()
        assert not route.called
        assert len(client.ledger) == 0


async def test_num_ctx_fits_prompt_and_reply_in_growing_powers_of_two(client: Client) -> None:
    with respx.mock:
        respx.post(f"{HOST}/api/show").respond(200, json=show_with(context_length=32768))
        route = respx.post(f"{HOST}/api/chat").respond(200, json=chat_body(30000))
        await client.chat("hi", model=MODEL)  # small: Ollama's usual 4096
        await client.chat("hi", model=MODEL, max_tokens=6000)  # room for the reply
        await client.chat("word " * 9000, model=MODEL)  # ~9000 tokens, a quarter more for the estimate
        await client.chat("word " * 30000, model=MODEL, max_tokens=2000)  # capped at the model's 32768
        await client.chat("hi", model=MODEL)  # never shrinks: a new num_ctx would reload the model
        assert [call["options"]["num_ctx"] for call in map(json.loads, (c.request.content for c in route.calls))] == [
            4096,
            8192,
            16384,
            32768,
            32768,
        ]


async def test_a_fixed_num_ctx_is_sent_as_given_and_guarded() -> None:
    with respx.mock:
        respx.post(f"{HOST}/api/show").respond(200, json=body_of("show.json"))
        route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
        async with Client(retry=0, providers={"ollama": {"num_ctx": 2048}}) as client:
            await client.chat("hi", model=MODEL)
            assert sent(route)["options"] == {"num_ctx": 2048}
            await client.chat("hi", model=MODEL, extra_body={"options": {"num_ctx": 1024}})
            assert sent(route)["options"] == {"num_ctx": 1024}
            with pytest.raises(ContextWindowExceededError, match="num_ctx=2048"):
                await client.chat("lorem ipsum " * 1200, model=MODEL)
        assert route.call_count == 2


async def test_without_the_guard_nothing_is_asked_or_sized() -> None:
    with respx.mock:
        show = respx.post(f"{HOST}/api/show")
        route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
        async with Client(retry=0, providers={"ollama": {"context_guard": False}}) as client:
            await client.chat("hi", model=MODEL)
        assert not show.called
        assert "options" not in sent(route)


async def test_an_unknown_context_length_still_sizes_num_ctx(client: Client) -> None:
    with respx.mock:
        respx.post(f"{HOST}/api/show").respond(200, json=show_with(context_length=None))
        route = respx.post(f"{HOST}/api/chat").respond(200, json=chat_body(9000))
        await client.chat("word " * 9000, model=MODEL)
        assert sent(route)["options"]["num_ctx"] == 16384


async def test_ollamas_own_overflow_error_is_a_context_error(client: Client, show: respx.Route) -> None:
    # What Ollama 0.12.6+ answers to `truncate: false` when the prompt does not fit after all.
    inner = {
        "error": {
            "code": 400,
            "message": "request (8889 tokens) exceeds the available context size (4096 tokens), try increasing it",
            "type": "exceed_context_size_error",
        }
    }
    respx.post(f"{HOST}/api/chat").respond(400, json={"error": json.dumps(inner)})
    with pytest.raises(ContextWindowExceededError, match="exceeds the available context size"):
        await client.chat("hi", model=MODEL)


async def test_truncation_is_detected_and_warned_with_both_numbers(show: respx.Route) -> None:
    reply = {**body_of("chat.json"), "prompt_eval_count": 100}
    route = respx.post(f"{HOST}/api/chat").respond(200, json=reply)
    prompt = "The quick brown fox jumps over the lazy dog. " * 60  # ~600 tokens counted locally
    client = Client(retry=0, providers={"ollama": {"context_guard": False}})
    counted = (await client.count_tokens([{"role": "user", "content": prompt}], model=MODEL)).tokens
    with pytest.warns(OllamaTruncationWarning) as caught:
        result = await client.chat(prompt, model=MODEL)
    message = str(caught[0].message)
    assert f"evaluated 100 prompt tokens of llama3.2 where {counted} were counted locally" in message
    assert "the server's default num_ctx" in message
    assert result.usage.input_tokens == 100 and route.called


async def test_no_truncation_warning_for_close_counts_or_dense_text(client: Client, show: respx.Route) -> None:
    respx.post(f"{HOST}/api/chat").respond(200, json={**body_of("chat.json"), "prompt_eval_count": 60})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await client.chat("a short question " * 4, model=MODEL)  # fewer than 32 tokens apart
        # cl100k counts Chinese at about a token a character; Qwen's tokenizer needs about half of that.
        await client.chat("天空为什么是蓝色的？请详细解释瑞利散射。" * 5, model=MODEL)
    assert [w.category for w in caught] == []


async def test_a_configured_tokenizer_counts_exactly(show: respx.Route) -> None:
    class Template:
        chat_template = "{{ messages }}"

        def apply_chat_template(self, messages: list[dict[str, Any]], **_: Any) -> list[int]:
            return [0] * (10 * len(messages))

        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [0] * len(text.split())

    tokenizer = token_counting.HFTokenizer("qwen2-tokenizer")
    tokenizer._tokenizer = Template()
    route = respx.post(f"{HOST}/api/chat").respond(200, json={**body_of("chat.json"), "prompt_eval_count": 10})
    async with Client(retry=0, providers={"ollama": {"tokenizer": tokenizer}}) as client:
        count = await client.count_tokens([{"role": "user", "content": "hi"}], model=MODEL)
        assert (count.tokens, count.exact, count.tokenizer) == (10, True, "qwen2-tokenizer")
        await client.chat("hi", model=MODEL, max_tokens=100)
    assert sent(route)["options"]["num_ctx"] == 4096


async def test_counts_are_flagged_estimates(client: Client) -> None:
    count = await client.count_tokens([{"role": "user", "content": "Hello, world!"}], model=MODEL)
    assert (count.exact, count.tokenizer) == (False, "cl100k_base (estimate)")


# -- embeddings, models ----------------------------------------------------------------------------------------


async def test_embed_sends_truncate_false_and_dimensions() -> None:
    with respx.mock:
        route = respx.post(f"{HOST}/api/embed").respond(200, json=body_of("embed.json"))
        async with Client(providers={"ollama": {"dimensions": 10, "keep_alive": "1m"}}) as client:
            result = await client.embed(["Why is the sky blue?", "Why is the grass green?"], model="ollama/all-minilm")
    assert sent(route) == {
        "model": "all-minilm",
        "input": ["Why is the sky blue?", "Why is the grass green?"],
        "truncate": False,
        "dimensions": 10,
        "keep_alive": "1m",
    }
    assert result.vectors.shape == (2, 10) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(result.vectors[1, :2], [-0.0098027075, 0.06042469], rtol=1e-6)
    assert (result.usage.input_tokens, result.usage.estimated, result.model) == (8, False, "all-minilm")


async def test_embed_faults(client: Client) -> None:
    with respx.mock:
        route = respx.post(f"{HOST}/api/embed")
        empty = await client.embed([], model="ollama/all-minilm")
        assert empty.vectors.shape == (0, 0) and not route.called and len(client.ledger) == 0
        route.respond(400, json=body_of("error_embed_too_long.json"))
        with pytest.raises(ContextWindowExceededError, match="exceeds the context length"):
            await client.embed(["a very long text"], model="ollama/all-minilm")
        route.respond(200, json=body_of("embed.json"))
        with pytest.raises(ResponseFormatError, match="for 3 inputs"):
            await client.embed(["a", "b", "c"], model="ollama/all-minilm")


async def test_list_models_and_pull(client: Client) -> None:
    driver = client.driver("ollama")
    assert isinstance(driver, OllamaDriver)
    with respx.mock:
        respx.get(f"{HOST}/api/tags").respond(200, json=body_of("tags.json"))
        pull = respx.post(f"{HOST}/api/pull").respond(200, content=raw("pull.ndjson"))
        assert [model["name"] for model in await driver.list_models()] == ["codellama:13b", "llama3:latest"]
        progress = [step async for step in driver.pull("llama3.2")]
        assert sent(pull) == {"model": "llama3.2", "insecure": False, "stream": True}
        assert progress[1] == {
            "status": "downloading digestname",
            "digest": "digestname",
            "total": 2142590208,
            "completed": 241970,
        }
        assert progress[-1] == {"status": "success"}
        pull.respond(
            200, content=b'{"status":"pulling manifest"}\n{"error":"pull model manifest: file does not exist"}\n'
        )
        with pytest.raises(UnknownModelError, match="file does not exist"):
            [step async for step in driver.pull("no-such-model")]
        pull.respond(200, content=raw("pull.ndjson").rsplit(b'{"status":"success"}', 1)[0])
        with pytest.raises(StreamInterruptedError, match="before it reported success"):
            [step async for step in driver.pull("llama3.2")]


# -- configuration ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "url"),
    [
        (None, "http://localhost:11434"),
        ("", "http://localhost:11434"),
        ("example.com", "http://example.com:11434"),
        ("example.com:56789", "http://example.com:56789"),
        (":56789", "http://localhost:56789"),
        ("1.2.3.4:8080/ollama/", "http://1.2.3.4:8080/ollama"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
    ],
)
def test_host_forms(given: str | None, url: str) -> None:
    assert parse_host(given) == url


async def test_host_from_config_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:9999")
    with respx.mock:
        from_env = respx.post("http://gpu-box:9999/api/show").respond(200, json=body_of("show.json"))
        respx.post("http://gpu-box:9999/api/chat").respond(200, json=body_of("chat.json"))
        configured = respx.post("http://other:11434/api/show").respond(200, json=body_of("show.json"))
        respx.post("http://other:11434/api/chat").respond(200, json=body_of("chat.json"))
        await Client(retry=0).chat("hi", model=MODEL)
        await Client(retry=0, providers={"ollama": {"host": "other"}}).chat("hi", model=MODEL)
        assert from_env.called and configured.called
    with pytest.raises(ConfigurationError, match="credentials"):
        OllamaDriver(host="http://user:secret@gpu-box:11434")


def test_no_read_timeout_by_default() -> None:
    # A non-streamed reply comes only when the whole generation is done: minutes on a CPU.
    timeouts = OllamaDriver()._http.timeouts  # what both HTTP backends are built with
    assert (timeouts.connect, timeouts.read) == (10.0, math.inf)


async def test_bearer_key_for_hosted_ollama(monkeypatch: pytest.MonkeyPatch, show: respx.Route) -> None:
    route = respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
    await Client(retry=0, providers={"ollama": {"api_key": "ol-secret-key-1234"}}).chat("hi", model=MODEL)
    assert route.calls[-1].request.headers["authorization"] == "Bearer ol-secret-key-1234"
    monkeypatch.setenv("OLLAMA_API_KEY", "ol-env-key-5678")
    driver = OllamaDriver()
    await Client(retry=0, providers={"ollama": driver}).chat("hi", model=MODEL)
    assert route.calls[-1].request.headers["authorization"] == "Bearer ol-env-key-5678"
    assert "ol-env-key" not in repr(driver)
    # A server added under a name of its own does not receive OLLAMA_API_KEY.
    other = OllamaDriver(provider="gpu-box", host="gpu-box")
    assert "authorization" not in other._http.headers


# -- wire parity with the official client ----------------------------------------------------------------------


def documented_differences(official: dict[str, Any], num_ctx: int = 4096) -> dict[str, Any]:
    """The official client's body with llmclient's deliberate differences applied (docs/providers/ollama.md)."""
    expected = dict(official)
    if expected.get("tools") == []:
        del expected["tools"]  # the official client always sends `tools`, empty or not
    expected["options"] = {**expected.get("options", {}), "num_ctx": num_ctx}  # the context guard
    expected["truncate"] = False  # an error, not a silently cut prompt
    for message in expected.get("messages", ()):  # tool-call ids go back (the official client drops them)
        for number, call in enumerate(message.get("tool_calls") or ()):
            call.setdefault("id", f"call_{number}")
        if message.get("role") == "tool":
            message.setdefault("tool_call_id", "call_0")
    return expected


async def both(official_call: Any, ours_call: Any, path: str, reply: bytes) -> tuple[Any, Any]:
    with respx.mock:
        respx.post(f"{HOST}/api/show").respond(200, json=body_of("show.json"))
        route = respx.post(f"{HOST}{path}").respond(200, content=reply)
        await official_call(ollama.AsyncClient(host=HOST))
        async with Client(retry=0) as client:
            await ours_call(client)
        return sent(route, 0), sent(route, 1)


async def test_parity_plain_chat_and_options() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "why is the sky blue?"}]
    official, ours = await both(
        lambda o: o.chat(model="llama3.2", messages=messages),
        lambda c: c.chat(messages, model=MODEL),
        "/api/chat",
        raw("chat.json"),
    )
    assert ours == documented_differences(official)
    options = {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "num_predict": 100, "stop": ["\n", "user:"], "seed": 42}
    official, ours = await both(
        lambda o: o.chat(model="llama3.2", messages=messages, options=options, keep_alive="5m", think=True),
        lambda c: c.chat(
            messages,
            model=MODEL,
            temperature=0.2,
            top_p=0.9,
            top_k=20,
            max_tokens=100,
            stop=["\n", "user:"],
            seed=42,
            extra_body={"keep_alive": "5m", "think": True},
        ),
        "/api/chat",
        raw("chat.json"),
    )
    assert ours == documented_differences(official)


async def test_parity_tools_and_tool_history() -> None:
    weather = WEATHER.to_openai()
    history = [
        {"role": "user", "content": "What is the weather today in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"location": "Paris, FR"}}}],
        },
        {"role": "tool", "content": "22°C", "tool_name": "get_current_weather"},
    ]
    ours_history = [
        history[0],
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="call_0", name="get_current_weather", arguments={"location": "Paris, FR"})],
        ),
        Message(role="tool", tool_call_id="call_0", content="22°C"),
    ]
    official, ours = await both(
        lambda o: o.chat(model="llama3.2", messages=history, tools=[weather]),
        lambda c: c.chat(ours_history, model=MODEL, tools=[WEATHER]),
        "/api/chat",
        raw("chat_tool_calls.json"),
    )
    assert ours == documented_differences(official)


async def test_parity_keeps_the_whole_tool_schema_where_the_official_client_drops_keywords() -> None:
    strict = Tool(
        name="set_volume",
        description="Set the volume.",
        parameters={
            "type": "object",
            "properties": {"level": {"type": "integer", "minimum": 0, "maximum": 11}},
            "required": ["level"],
            "additionalProperties": False,
        },
    )
    official, ours = await both(
        lambda o: o.chat(
            model="llama3.2", messages=[{"role": "user", "content": "louder"}], tools=[strict.to_openai()]
        ),
        lambda c: c.chat("louder", model=MODEL, tools=[strict]),
        "/api/chat",
        raw("chat_tool_calls.json"),
    )
    assert official["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {"level": {"type": "integer"}},
        "required": ["level"],
    }
    assert ours["tools"][0]["function"]["parameters"] == strict.parameters
    del official["tools"], ours["tools"]
    assert ours == documented_differences(official)


@pytest.mark.parametrize(
    ("official_format", "response_format"),
    [
        ("json", {"type": "json_object"}),
        (
            {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "age",
                    "schema": {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
                },
            },
        ),
    ],
)
async def test_parity_format(official_format: Any, response_format: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": "Ollama is 22 years old. Respond using JSON"}]
    official, ours = await both(
        lambda o: o.chat(model="llama3.2", messages=messages, format=official_format),
        lambda c: c.chat(messages, model=MODEL, response_format=response_format),
        "/api/chat",
        raw("chat_structured.json"),
    )
    assert ours == documented_differences(official)


async def test_parity_stream() -> None:
    messages = [{"role": "user", "content": "why is the sky blue?"}]

    async def official_stream(official: ollama.AsyncClient) -> None:
        async for _ in await official.chat(model="llama3.2", messages=messages, stream=True, options={"seed": 1}):
            pass

    official, ours = await both(
        official_stream,
        lambda c: c.stream(messages, model=MODEL, seed=1).final_response(),
        "/api/chat",
        raw("stream.ndjson"),
    )
    assert ours["stream"] is True
    assert ours == documented_differences(official)


async def test_parity_embed() -> None:
    inputs = ["Why is the sky blue?", "Why is the grass green?"]
    with respx.mock:
        route = respx.post(f"{HOST}/api/embed").respond(200, json=body_of("embed.json"))
        await ollama.AsyncClient(host=HOST).embed(model="all-minilm", input=inputs, truncate=False, dimensions=10)
        async with Client(providers={"ollama": {"dimensions": 10}}) as client:
            await client.embed(inputs, model="ollama/all-minilm")
    assert sent(route, 1) == sent(route, 0)  # identical: truncate false is explicit in both


@respx.mock
async def test_embed_through_the_client_with_dimensions_batches_and_cache() -> None:
    route = respx.post(f"{HOST}/api/embed").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json={
                "model": "all-minilm",
                "embeddings": [[0.1, 0.2, 0.3] for _ in json.loads(request.content)["input"]],
                "prompt_eval_count": 4,
            },
        )
    )
    client = Client(providers={"ollama": {"host": HOST}})
    result = await client.embed(["cat", "dog", "cat"], model="ollama/all-minilm", dimensions=3)
    assert result.vectors.shape == (3, 3)
    assert result.cached == 1  # the repeated text was sent once
    body = json.loads(route.calls[0].request.content)
    assert body == {"model": "all-minilm", "input": ["cat", "dog"], "truncate": False, "dimensions": 3}
    again = await client.embed(["dog"], model="ollama/all-minilm", dimensions=3)
    assert again.cached == 1 and route.call_count == 1  # served from the cache, not re-sent or re-billed
    assert client.ledger.records[-1].cost is not None and client.ledger.total() == 0


async def test_a_second_ollama_server_under_its_own_name_is_free_and_budgetable(show: respx.Route) -> None:
    # Self-hosted is the driver's capability, not the provider's name: "gpu-box" costs 0, warns nothing (warnings
    # are errors in this suite), and a budget admits it.
    respx.post(f"{HOST}/api/chat").respond(200, json=body_of("chat.json"))
    client = Client(providers={"gpu-box": {"driver": "ollama", "host": HOST}}, retry=0)
    async with client.budget(usd="0.01") as budget:
        reply = await client.chat("why is the sky blue?", model="gpu-box/llama3.2", max_tokens=64)
    assert reply.provider == "gpu-box"
    assert reply.cost is not None and reply.cost.total == 0
    assert (budget.calls, budget.spent) == (1, 0)
    assert client.ledger.records[0].provider == "gpu-box"
