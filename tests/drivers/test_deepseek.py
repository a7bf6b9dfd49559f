"""DeepSeek: the OpenAI wire format plus its documented quirks."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from llmclient import (
    Client,
    InsufficientBalanceError,
    Message,
    ParameterDroppedWarning,
    UnknownModelError,
    UnsupportedCapabilityError,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "deepseek"
URL = "https://api.deepseek.com"


def body_of(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def client() -> Client:
    return Client(providers={"deepseek": {"api_key": "sk-deepseek-test"}})


@respx.mock
async def test_reasoning_and_cache_hits_are_parsed(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_reasoner.json"))
    reply = await client.chat("9.11 和 9.8 哪个大？", model="deepseek/deepseek-reasoner", max_tokens=512)
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
async def test_reasoning_is_never_sent_back(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(200, json=body_of("chat_reasoner.json"))
    first = await client.chat("9.11 和 9.8 哪个大？", model="deepseek/deepseek-reasoner")
    history = [
        Message(role="user", content="9.11 和 9.8 哪个大？"),
        first.message,
        {"role": "user", "content": "为什么？"},
    ]
    await client.chat(history, model="deepseek/deepseek-reasoner")
    sent_messages = json.loads(route.calls[1].request.content)["messages"]
    assert sent_messages[1] == {"role": "assistant", "content": "9.11 比 9.8 小。"}
    assert all("reasoning_content" not in m and "reasoning" not in m for m in sent_messages)


@respx.mock
async def test_keep_alive_comments_are_ignored_in_streams(client: Client) -> None:
    respx.post(f"{URL}/chat/completions").respond(200, content=(FIXTURES / "stream_keepalive.sse").read_bytes())
    stream = client.stream("你好", model="deepseek/deepseek-chat")
    text = "".join([chunk.delta async for chunk in stream])
    assert text == "你好！"
    assert stream.response.finish_reason == "stop"
    assert (stream.response.usage.input_tokens, stream.response.usage.output_tokens) == (13, 2)
    assert not stream.response.usage.estimated


@respx.mock
async def test_402_is_insufficient_balance_and_not_retried(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").respond(402, json=body_of("error_402.json"))
    with pytest.raises(InsufficientBalanceError) as caught:
        await client.chat("hi", model="deepseek/deepseek-chat")
    assert route.call_count == 1
    assert caught.value.status == 402
    assert not caught.value.retryable
    assert "Insufficient Balance" in str(caught.value)


@respx.mock
async def test_model_not_exist_lists_deepseeks_models(client: Client) -> None:
    respx.post(f"{URL}/chat/completions").respond(400, json=body_of("error_model_not_exist.json"))
    with pytest.raises(UnknownModelError) as caught:
        await client.chat("hi", model="deepseek/deepseek-coder-v9")
    assert "deepseek-chat" in caught.value.message
    assert "deepseek-reasoner" in caught.value.message
    assert caught.value.status == 400


@respx.mock
async def test_embeddings_are_unsupported_and_send_nothing(client: Client) -> None:
    route = respx.route(host="api.deepseek.com")
    with pytest.raises(UnsupportedCapabilityError, match="no embeddings"):
        await client.embed(["hello"], model="deepseek/deepseek-chat")
    assert not route.called


@respx.mock
async def test_seed_and_top_k_are_dropped(client: Client) -> None:
    route = respx.post(f"{URL}/chat/completions").mock(
        return_value=httpx.Response(200, json=body_of("chat_reasoner.json"))
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reply = await client.chat("hi", model="deepseek/deepseek-chat", seed=1, top_k=5, temperature=1.3)
    assert len(caught) == 1 and caught[0].category is ParameterDroppedWarning
    body = json.loads(route.calls[0].request.content)
    assert "seed" not in body and "top_k" not in body
    assert body["temperature"] == 1.3
    assert sorted(reply.dropped_params) == ["seed", "top_k"]
