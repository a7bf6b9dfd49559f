"""Anthropic's driver against its documented request shape and the thinking rule of tool loops."""

from __future__ import annotations

import pytest

from conformance.anthropic_server import ThinkingRule
from conformance.schemas import errors
from llmclient import Client, Message
from llmclient.testing import Reply, ScriptedCall, ScriptedServer, ScriptedUsage
from llmclient.testing.wires import AnthropicWire
from llmclient.tools import tool_from_function

KEY = "sk-ant-loopback-0123456789"
THINKING = "The user wants the weather; I should call get_weather for Paris."
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"{city}: 18°C"


def script() -> tuple[ScriptedServer, ThinkingRule]:
    call = ScriptedCall("toolu_01CswdEQBMshySk6Y9DFKrfq", "get_weather", {"city": "Paris"})
    rule = ThinkingRule({call.id: (THINKING, SIGNATURE)})
    server = ScriptedServer(AnthropicWire(), check=rule)
    server.script(
        Reply(calls=(call,), reasoning=THINKING, signature=SIGNATURE, usage=ScriptedUsage(input=412, output=178)),
        Reply(text="It is 18°C in Paris.", usage=ScriptedUsage(input=620, output=12)),
    )
    return server, rule


async def test_a_thinking_tool_loop_sends_the_signed_thinking_back() -> None:
    server, _ = script()
    async with server, Client(providers={"anthropic": {"api_key": KEY, "base_url": server.url}}, retry=0) as client:
        result = await client.run(
            "Weather in Paris?", tools=[get_weather], model="anthropic/claude-sonnet-5-5", thinking=True
        )
    assert server.problems == []
    assert result.response.text == "It is 18°C in Paris."
    assert result.responses[0].message.reasoning_signature == SIGNATURE
    first, second = (request.json() for request in server.model_requests)
    assert first["thinking"] == {"type": "adaptive"}
    assert second["messages"][1]["content"][0] == {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE}


async def test_a_streamed_thinking_turn_keeps_its_signature_for_the_next_request() -> None:
    server, _ = script()
    async with server, Client(providers={"anthropic": {"api_key": KEY, "base_url": server.url}}, retry=0) as client:
        question = Message(role="user", content="Weather in Paris?")
        stream = client.stream(question, model="anthropic/claude-sonnet-5-5", tools=[tool_from_function(get_weather)])
        turn = await stream.final_response()
        (call,) = turn.tool_calls
        result = Message(role="tool", tool_call_id=call.id, content=get_weather(**call.arguments))
        answer = await client.chat([question, turn.message, result], model="anthropic/claude-sonnet-5-5")
    assert server.problems == []
    assert (turn.reasoning, turn.message.reasoning_signature) == (THINKING, SIGNATURE)
    assert answer.text == "It is 18°C in Paris."


def test_the_rule_refuses_a_turn_without_its_thinking_block() -> None:
    rule = ThinkingRule({"toolu_1": (THINKING, SIGNATURE)})
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    messages = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": [call]}]
    assert rule.thinking_problems(messages)[0].startswith("messages.1.content.0.type: Expected `thinking`")
    changed = {"type": "thinking", "thinking": THINKING + ".", "signature": SIGNATURE}
    messages[1]["content"] = [changed, call]
    assert "changed" in rule.thinking_problems(messages)[0]


def test_a_deliberately_wrong_body_fails_the_check() -> None:
    body = {"model": "claude-sonnet-5-5", "max_tokens": 8, "messages": [{"role": "system", "content": "x"}]}
    assert any("messages/0/role" in line for line in errors("anthropic", body))
    assert any("temperature" in line for line in errors("anthropic", {**body, "temperature": 1.5}))
    assert errors("anthropic", {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}) == []


@pytest.mark.nonconforming
async def test_the_autouse_hook_checks_requests_to_anthropic(request: pytest.FixtureRequest) -> None:
    import httpx

    from conformance.schemas import FOUND

    transport = httpx.MockTransport(lambda r: httpx.Response(400, json={"type": "error", "error": {"type": "x"}}))
    client = Client(providers={"anthropic": {"api_key": KEY}}, transport=transport, retry=0)
    wrong = [Message(role="user", content="hi")]
    with pytest.raises(Exception):  # noqa: B017, PT011 - the answer is a 400; the body is what is checked
        await client.chat(wrong, model="anthropic/claude-sonnet-5-5", temperature=1.5)
    await client.aclose()
    assert any("temperature" in line for line in request.node.stash[FOUND])
