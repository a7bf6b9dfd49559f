"""`response_model`: each provider's strongest mode, validation, retries with the errors fed back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import pytest
from pydantic import BaseModel, Field

from llmclient import Client, FakeDriver, InvalidRequestError, RefusalError, StructuredOutputError


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
    reply = await client.chat("Capital of France?", model="deepseek/deepseek-flash", response_model=City)
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


async def test_a_refusal_raises_at_once_unretried_and_is_recorded_once() -> None:
    refusal = json.loads((Path(__file__).parent / "fixtures" / "openai" / "chat_refusal.json").read_text())
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=refusal)

    client = Client(transport=httpx.MockTransport(handler), providers={"openai": {"api_key": "sk-test"}})
    with pytest.raises(RefusalError) as caught:
        await client.chat("How do I pick a lock?", model="openai/gpt-4o", response_model=City)
    assert caught.value.refusal == "I'm sorry, I cannot assist with that request."
    assert isinstance(caught.value, StructuredOutputError)  # what code catching the broader error still sees
    assert len(sent) == 1  # one billed request, not three
    assert len(client.ledger.records) == 1 and client.ledger.records[0].usage.output_tokens == 11


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = 0


class Tagged(BaseModel):
    name: str
    counts: dict[str, int]


async def test_the_schema_name_is_one_openai_accepts_and_strict_only_where_it_can_be() -> None:
    transport, sent = serve('{"items": [], "total": 0}', '{"name": "a", "counts": {"x": 1}}')
    client = Client(transport=transport, providers={"openai": {"api_key": "sk-test"}})
    await client.chat("List.", model="openai/gpt-4o-mini", response_model=Page[City])
    await client.chat("Tags.", model="openai/gpt-4o-mini", response_model=Tagged)
    page, tagged = (body["response_format"]["json_schema"] for body in sent)
    assert (page["name"], page["strict"]) == ("Page_City", True)  # the spec's ^[a-zA-Z0-9_-]{1,64}$
    assert page["schema"]["$defs"]["City"]["additionalProperties"] is False
    assert page["schema"]["required"] == ["items", "total"]
    # A free-form dict cannot be strict (its additionalProperties may not be false): sent without strict mode.
    assert (tagged["name"], tagged["strict"]) == ("Tagged", False)
