"""DeepSeek against a loopback server that enforces its documented thinking-mode rule (deepseek_server.py), and
its documented request shape against every body the driver sends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from conformance.deepseek_server import MISSING, DeepSeekRules
from conformance.schemas import errors
from hostile.server import HostileServer
from llmclient import BadRequestError, Client, DeprecatedModelWarning, Message, ToolCall
from llmclient.drivers.openai import deepseek

KEY = "sk-deepseek-loopback"


def get_date() -> str:
    """Today's date."""
    return "2026-12-07"


def get_weather(city: str) -> str:
    """Tomorrow's weather in a city."""
    return f"{city}: cloudy, 7-13°C"


@pytest.fixture
async def rules() -> AsyncIterator[tuple[DeepSeekRules, str]]:
    script = DeepSeekRules()
    server = await HostileServer(script).start()
    yield script, server.url.removesuffix("/v1")
    await server.close()


def client_for(url: str) -> Client:
    return Client(providers={"deepseek": {"api_key": KEY, "base_url": url}}, retry=0)


@pytest.fixture(autouse=True)
def _warn_again() -> None:
    deepseek._warned.clear()  # the legacy-name warning is once per process; each test sees its own


async def test_a_thinking_tool_loop_completes_with_reasoning_sent_back(rules: tuple[DeepSeekRules, str]) -> None:
    script, url = rules
    async with client_for(url) as client:
        with pytest.warns(DeprecatedModelWarning, match="deepseek-v4-flash is a legacy name"):
            result = await client.run(
                "What is the weather in Hangzhou tomorrow?",
                tools=[get_date, get_weather],
                model="deepseek/deepseek-v4-flash",
            )
    assert result.response.text == "Tomorrow in Hangzhou: cloudy, 7-13°C."
    assert script.refusals == []
    assert len(script.bodies) == 3
    assert {body["model"] for body in script.bodies} == {"deepseek-flash"}  # the name DeepSeek serves it with
    last = script.bodies[-1]["messages"]
    calls = [m for m in last if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in calls] == [
        "Step 0: decide what to do next.",
        "Step 1: decide what to do next.",
    ]
    assert result.responses[-1].reasoning == "Step 2: decide what to do next."
    assert all(r.cost is not None for r in result.responses)  # a legacy name is priced as the model it became


async def test_the_same_loop_with_thinking_disabled(rules: tuple[DeepSeekRules, str]) -> None:
    script, url = rules
    async with client_for(url) as client:
        result = await client.run(
            "What is the weather in Hangzhou tomorrow?",
            tools=[get_date, get_weather],
            model="deepseek/deepseek-flash",
            thinking=False,
        )
    assert result.response.text == "Tomorrow in Hangzhou: cloudy, 7-13°C."
    assert script.refusals == []
    assert all(body["thinking"] == {"type": "disabled"} for body in script.bodies)
    assert not any("reasoning_content" in m for body in script.bodies for m in body["messages"])


async def test_reasoning_is_not_sent_where_no_tool_was_called(rules: tuple[DeepSeekRules, str]) -> None:
    script, url = rules
    history = [
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello!", reasoning="The user greets me."),
        Message(role="user", content="What is the weather in Hangzhou tomorrow?"),
    ]
    async with client_for(url) as client:
        reply = await client.chat(history, model="deepseek/deepseek-flash", tools=[get_date])
    assert reply.tool_calls[0].name == "get_date"
    assert script.refusals == []
    assert "reasoning_content" not in script.bodies[0]["messages"][1]


async def test_the_server_refuses_a_thinking_tool_call_without_its_reasoning(rules: tuple[DeepSeekRules, str]) -> None:
    script, url = rules
    async with client_for(url) as client:
        first = await client.chat("Weather tomorrow?", model="deepseek/deepseek-flash", tools=[get_date])
        stripped = first.message.model_copy(update={"reasoning": None})  # what llmclient did before: 400
        history = [
            Message(role="user", content="Weather tomorrow?"),
            stripped,
            Message(role="tool", tool_call_id=first.tool_calls[0].id, content="2026-12-07"),
        ]
        with pytest.raises(BadRequestError, match="must be passed back"):
            await client.chat(history, model="deepseek/deepseek-flash", tools=[get_date])
    assert script.refusals == [MISSING]


async def test_the_server_refuses_reasoning_where_none_is_required(rules: tuple[DeepSeekRules, str]) -> None:
    _, url = rules
    body = {
        "model": "deepseek-flash",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!", "reasoning_content": "The user greets me."},
            {"role": "user", "content": "Bye"},
        ],
    }
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{url}/chat/completions", json=body)
    assert answer.status_code == 400
    assert "only a thinking-mode tool call needs" in answer.json()["error"]["message"]


def test_the_documented_shape_refuses_what_deepseek_does_not_document() -> None:
    good = {"model": "deepseek-flash", "messages": [{"role": "user", "content": "Hi"}], "thinking": {"type": "enabled"}}
    assert errors("deepseek", good) == []
    assert errors("deepseek", {**good, "seed": 7})  # DeepSeek has no seed
    assert errors("deepseek", {**good, "model": "deepseek-chat"})  # retired after 2026-07-24
    assert errors("deepseek", {**good, "messages": [{"role": "developer", "content": "Be brief."}]})
    tool_call = ToolCall(id="c1", name="get_date").to_openai()
    assistant = {"role": "assistant", "content": None, "tool_calls": [tool_call], "reasoning_content": "r"}
    assert errors("deepseek", {**good, "messages": [assistant]}) == []
    assert json.dumps(errors("deepseek", {**good, "thinking": {"type": "on"}}))
