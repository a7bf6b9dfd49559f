"""Ollama against its own definitions (ollama/SOURCE.md): the request shape every test's body is checked against,
and a tool loop whose second request names each result's call as the Go types define it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import respx

from conformance.schemas import errors
from llmclient import Client

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ollama"
HOST = "http://localhost:11434"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def test_the_documented_shape_refuses_what_ollama_does_not_define() -> None:
    good = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "think": "high", "stream": False}
    assert errors("ollama", good) == []
    assert errors("ollama", {**good, "think": "xhigh"})  # ThinkValue.IsValid: high, medium, low, max
    assert errors("ollama", {**good, "temperature": 0.2})  # a sampling option goes in `options`
    assert errors("ollama", {**good, "options": {"max_tokens": 10}})  # Ollama's name is num_predict
    assert errors("ollama", {**good, "messages": [{"role": "developer", "content": "Be brief."}]})
    tool_result = {"role": "tool", "content": "22°C", "tool_name": "get_temperature", "tool_call_id": "call_p7o2gz50"}
    assert errors("ollama", {**good, "messages": [tool_result]}) == []


@respx.mock
async def test_a_tool_loop_names_each_result_by_its_calls_id() -> None:
    respx.post(f"{HOST}/api/show").respond(200, json=fixture("show.json"))
    route = respx.post(f"{HOST}/api/chat").mock(
        side_effect=[
            respx.MockResponse(200, json=fixture("chat_tool_calls_with_ids.json")),
            respx.MockResponse(200, json={**fixture("chat.json"), "prompt_eval_count": 230}),
        ]
    )

    def get_temperature(city: str) -> str:
        """The temperature in a city."""
        return {"New York": "22°C", "London": "15°C"}[city]

    async with Client(retry=0) as client:
        result = await client.run("Temperatures in New York and London?", model="ollama/qwen3", tools=[get_temperature])
    assert result.response.text == "Hello! How are you today?"
    history = json.loads(route.calls[1].request.content)["messages"]
    assert history[1]["tool_calls"][0]["id"] == "call_p7o2gz50"
    assert history[1]["thinking"].startswith("The user wants the temperature")
    assert history[2:] == [
        {"role": "tool", "content": "22°C", "tool_name": "get_temperature", "tool_call_id": "call_p7o2gz50"},
        {"role": "tool", "content": "15°C", "tool_name": "get_temperature", "tool_call_id": "call_g3lmvxvv"},
    ]
