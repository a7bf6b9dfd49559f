"""The Gemini driver: request bodies (checked against Google's definitions by tests/conftest.py) and the documented
replies, streams, safety verdicts, errors, embeddings and counts of tests/fixtures/gemini/."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import BaseModel

from conftest import fixture_json, fixture_text
from llmclient import (
    AuthenticationError,
    Client,
    ContextWindowExceededError,
    Message,
    MissingAPIKeyError,
    RateLimitError,
    RefusalError,
    RetryPolicy,
    Tool,
    UnknownModelError,
    Usage,
)

KEY = "AIzaSy-test-0123456789abcdef"
MODEL = "gemini/gemini-3.8-flash"
BASE = "https://generativelanguage.googleapis.com/v1beta/models/gemini-3.8-flash"
LIGHTS = Tool(
    name="set_light_values",
    description="Sets the brightness and color temperature of a light.",
    parameters={
        "type": "object",
        "properties": {"brightness": {"type": "integer"}, "color_temp": {"type": "string"}},
        "required": ["brightness", "color_temp"],
    },
)


class Recorder:
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
    return Client(providers={"gemini": provider}, transport=httpx.MockTransport(recorder), **options)


def answer(name: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=fixture_json("gemini", name))


def sse(name: str) -> httpx.Response:
    return httpx.Response(200, text=fixture_text("gemini", name), headers={"content-type": "text/event-stream"})


async def test_a_chat_sends_contents_and_reads_usage_with_thoughts() -> None:
    recorder = Recorder(answer("generate.json"))
    async with client_for(recorder) as client:
        reply = await client.chat(
            [
                {"role": "system", "content": "Answer in one sentence."},
                {"role": "user", "content": "How does AI work?"},
            ],
            model=MODEL,
            temperature=0.2,
            max_tokens=64,
            stop=["END"],
            seed=7,
        )
    request = recorder.requests[0]
    assert (str(request.url), request.headers["x-goog-api-key"]) == (f"{BASE}:generateContent", KEY)
    assert recorder.body() == {
        "contents": [{"role": "user", "parts": [{"text": "How does AI work?"}]}],
        "systemInstruction": {"parts": [{"text": "Answer in one sentence."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 64, "stopSequences": ["END"], "seed": 7},
    }
    assert reply.text == "AI learns patterns from data to make predictions or decisions."
    # Thoughts are billed as output and are its reasoning; the candidates count leaves them out.
    assert reply.usage == Usage(input_tokens=8, output_tokens=41, reasoning_tokens=29)
    assert reply.cost is not None and reply.cost.total == Decimal("0.00000075") * 8 + Decimal("0.00000375") * 41


async def test_the_cached_prompt_is_split_out_of_the_prompt_count() -> None:
    async with client_for(Recorder(answer("generate_cached.json"))) as client:
        reply = await client.chat("Summarise the transcript.", model=MODEL)
    assert reply.usage == Usage(input_tokens=29, cached_input_tokens=696190, output_tokens=214)
    assert reply.cost is not None and reply.cost.cached_input == Decimal("0.000000075") * 696190


async def test_parallel_function_calls_keep_the_thought_signature_for_the_next_turn() -> None:
    recorder = Recorder(answer("function_call.json"), answer("generate.json"))
    async with client_for(recorder) as client:
        turn = await client.chat("Party mode!", model=MODEL, tools=[LIGHTS], tool_choice="required")
        calls = turn.tool_calls
        results = [Message(role="tool", tool_call_id=c.id, name=c.name, content="ok") for c in calls]
        question = Message(role="user", content="Party mode!")
        await client.chat([question, turn.message, *results], model=MODEL, tools=[LIGHTS])
    first = recorder.body(0)
    assert first["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == LIGHTS.parameters
    assert first["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert [(c.name, c.arguments) for c in calls] == [
        ("set_light_values", {"brightness": 25, "color_temp": "warm"}),
        ("power_disco_ball", {"power": True}),
    ]
    assert turn.finish_reason == "tool_calls"
    model_turn, responses = recorder.body(1)["contents"][1:]
    signature = "CiQB0e2Kb9q0Yt4Pz8VhPSAwFz2Y0pWmRoVgVOQwmlBfGF9rVgASLwHR7Ypv"
    assert model_turn["parts"][0] == {
        "functionCall": {"name": "set_light_values", "args": {"brightness": 25, "color_temp": "warm"}},
        "thoughtSignature": signature,  # back on the first call, as Gemini 3 requires
    }
    assert responses == {  # every response to the turn's calls in one user turn; made-up ids are not sent
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "set_light_values", "response": {"result": "ok"}}},
            {"functionResponse": {"name": "power_disco_ball", "response": {"result": "ok"}}},
        ],
    }


@pytest.mark.parametrize("fixture", ["blocked_prompt.json", "blocked_reply.json"])
async def test_a_safety_block_is_a_typed_refusal(fixture: str) -> None:
    class Joke(BaseModel):
        text: str

    async with client_for(Recorder(answer(fixture), answer(fixture))) as client:
        reply = await client.chat("Tell me something awful.", model=MODEL)
        with pytest.raises(RefusalError, match="SAFETY"):
            await client.chat("Tell me something awful.", model=MODEL, response_model=Joke)
    assert reply.finish_reason == "content_filter"
    assert reply.refusal is not None and "SAFETY" in reply.refusal
    assert reply.usage.input_tokens in (8, 10)


async def test_a_stream_assembles_text_thoughts_calls_and_the_last_usage() -> None:
    recorder = Recorder(sse("stream.sse"), sse("stream_thoughts_call.sse"))
    async with client_for(recorder) as client:
        plain = await client.stream("Why is the sky blue?", model=MODEL).final_response()
        called = await client.stream("Is AA100 on time?", model=MODEL, thinking=True).final_response()
    assert str(recorder.requests[0].url) == f"{BASE}:streamGenerateContent?alt=sse"
    assert recorder.body(1)["generationConfig"] == {"thinkingConfig": {"includeThoughts": True}}
    assert plain.text == "The sky appears blue because of Rayleigh scattering."
    assert plain.usage == Usage(input_tokens=9, output_tokens=38, reasoning_tokens=28)
    (call,) = called.tool_calls
    assert (call.name, call.arguments, called.finish_reason) == ("check_flight", {"flight": "AA100"}, "tool_calls")
    assert called.reasoning is not None and called.reasoning.startswith("**Checking the flight**")
    assert called.message.reasoning_signature == "Q2hlY2tGbGlnaHRTaWduYXR1cmVB"


async def test_google_errors_map_by_status_name_and_reason() -> None:
    recorder = Recorder(
        answer("error_400_api_key.json", 400),
        answer("error_404_model.json", 404),
        answer("error_400_context.json", 400),
        answer("error_429.json", 429),
        answer("error_503.json", 503),
        answer("generate.json"),
    )
    async with client_for(recorder, retry=RetryPolicy(max_retries=1, initial_backoff=0, max_retry_after=0)) as client:
        with pytest.raises(AuthenticationError, match="API key not valid"):
            await client.chat("Hi", model=MODEL)
        with pytest.raises(UnknownModelError):
            await client.chat("Hi", model="gemini/gemini-0-flash")
        with pytest.raises(ContextWindowExceededError):
            await client.chat("Hi", model=MODEL)
        with pytest.raises(RateLimitError) as limited:  # asks for 37 s: more than this policy waits
            await client.chat("Hi", model=MODEL)
        reply = await client.chat("Hi", model=MODEL)  # the 503 "overloaded" is retried
    assert (limited.value.retry_after, limited.value.error_code) == (37.0, "RESOURCE_EXHAUSTED")
    assert client.ledger.records[-1].attempts == 2 and reply.text.startswith("AI learns")


async def test_embeddings_in_one_batch_and_counts_from_count_tokens() -> None:
    recorder = Recorder(answer("batch_embed.json"), answer("count_tokens.json"))
    async with client_for(recorder) as client:
        vectors = await client.embed(["a cat", "a dog"], model="gemini/gemini-embedding-001", dimensions=4)
        counted = await client.count_tokens("How many tokens?", model=MODEL, tools=[LIGHTS])
    assert str(recorder.requests[0].url).endswith("/models/gemini-embedding-001:batchEmbedContents")
    assert recorder.body(0) == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 4}
            for t in ("a cat", "a dog")
        ]
    }
    assert vectors.vectors.shape == (2, 4) and vectors.vectors.dtype == np.float32
    assert vectors.usage.estimated  # the API reports no usage for embeddings: counted, and flagged
    assert (counted.tokens, counted.exact) == (31, True)
    assert recorder.body(1)["generateContentRequest"]["model"] == "models/gemini-3.8-flash"


async def test_without_a_key_counts_are_estimates_and_calls_are_refused() -> None:
    offline = Client(providers={"gemini": {}})
    estimate = await offline.count_tokens("Hello", model=MODEL)
    assert estimate.exact is False
    with pytest.raises(MissingAPIKeyError, match="GEMINI_API_KEY"):
        await offline.chat("Hi", model=MODEL)
    await offline.aclose()


async def test_structured_output_and_thinking_levels_are_generation_settings() -> None:
    class City(BaseModel):
        name: str

    body = fixture_json("gemini", "generate.json")
    body["candidates"][0]["content"]["parts"] = [{"text": '{"name": "Paris"}'}]
    recorder = Recorder(httpx.Response(200, json=body))
    async with client_for(recorder) as client:
        reply = await client.chat("Capital of France?", model=MODEL, response_model=City, reasoning_effort="low")
    generation = recorder.body()["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    assert generation["responseJsonSchema"]["properties"]["name"] == {"title": "Name", "type": "string"}
    assert generation["thinkingConfig"] == {"includeThoughts": True, "thinkingLevel": "low"}
    assert reply.parsed == City(name="Paris")


async def test_a_budget_bounds_a_call_without_max_tokens_by_the_declared_ceiling() -> None:
    recorder = Recorder(answer("count_tokens.json"), answer("generate.json"))
    async with client_for(recorder) as client, client.budget(usd="1") as budget:
        reply = await client.chat("How does AI work?", model=MODEL)  # 65,536 × $3.75/M reserved at most
    assert budget.spent == reply.cost.total  # type: ignore[union-attr]
