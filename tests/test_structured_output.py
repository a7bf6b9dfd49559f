"""`response_model`: each provider's strongest mode, validation, retries with the errors fed back."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

from llmclient import Client, FakeDriver, InvalidRequestError, StructuredOutputError


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str
    population: int = Field(ge=0)
    nickname: str | None = None


GOOD = '{"name": "Paris", "country": "France", "population": 2102650, "nickname": null}'


def openai_body(content: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 20},
    }


def serve(*contents: str) -> tuple[httpx.MockTransport, list[Any]]:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=openai_body(contents[len(sent) - 1]))

    return httpx.MockTransport(handler), sent


async def test_openai_uses_a_strict_json_schema() -> None:
    transport, sent = serve(GOOD)
    client = Client(transport=transport, providers={"openai": {"api_key": "sk-test"}})
    reply = await client.chat("Capital of France?", model="openai/gpt-4o-mini", response_model=City)
    assert reply.parsed == City(name="Paris", country="France", population=2102650)
    response_format = sent[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "City" and response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name", "country", "population", "nickname"]
    assert sent[0]["messages"] == [{"role": "user", "content": "Capital of France?"}]


async def test_deepseek_uses_json_mode_with_the_schema_in_the_prompt() -> None:
    transport, sent = serve("```json\n" + GOOD + "\n```")
    client = Client(transport=transport, providers={"deepseek": {"api_key": "sk-test"}})
    reply = await client.chat("Capital of France?", model="deepseek/deepseek-chat", response_model=City)
    assert reply.parsed is not None and reply.parsed.name == "Paris"
    assert sent[0]["response_format"] == {"type": "json_object"}
    system = sent[0]["messages"][0]
    assert system["role"] == "system" and "JSON" in system["content"] and '"population"' in system["content"]


async def test_invalid_output_is_retried_with_the_errors_fed_back() -> None:
    transport, sent = serve('{"name": "Paris"}', "not json at all", GOOD)
    client = Client(transport=transport, providers={"openai": {"api_key": "sk-test"}})
    reply = await client.chat("Capital of France?", model="openai/gpt-4o-mini", response_model=City)
    assert reply.parsed is not None and reply.parsed.population == 2102650
    assert len(sent) == 3
    feedback = sent[1]["messages"][-1]["content"]
    assert "not a valid City" in feedback and "country" in feedback
    assert sent[1]["messages"][-2] == {"role": "assistant", "content": '{"name": "Paris"}'}
    assert len(client.ledger) == 3  # every billed attempt is recorded


async def test_giving_up_raises_with_the_raw_text() -> None:
    driver = FakeDriver(replies=['{"name": 1}', '{"name": 2}'])
    client = Client(providers={"fake": driver})
    with pytest.raises(StructuredOutputError) as caught:
        await client.chat("?", model="fake/x", response_model=City, max_validation_retries=1)
    assert caught.value.raw_text == '{"name": 2}'
    assert len(driver.requests) == 2


async def test_nested_models_and_the_fake_driver() -> None:
    class Trip(BaseModel):
        cities: list[City]

    driver = FakeDriver(replies=['{"cities": [' + GOOD + "]}"])
    reply = await Client(providers={"fake": driver}).chat("Plan a trip", model="fake/x", response_model=Trip)
    assert reply.parsed is not None and reply.parsed.cities[0].country == "France"
    response_format = driver.requests[0].response_format or {}
    nested = response_format["json_schema"]["schema"]["$defs"]["City"]
    assert nested["additionalProperties"] is False


@pytest.mark.parametrize("not_a_model", [dict, "City", None.__class__, int])
async def test_a_response_model_that_is_not_a_pydantic_model_is_refused_unsent(not_a_model: Any) -> None:
    async with Client() as client:
        with pytest.raises(InvalidRequestError, match="pydantic BaseModel subclass"):
            await client.chat("hi", model="fake/echo", response_model=not_a_model)
        assert len(client.ledger) == 0
