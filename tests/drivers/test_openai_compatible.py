"""The openai-compatible driver against a real server: llama-cpp-python's, serving SmolLM2-135M from its wheel."""

from __future__ import annotations

import json

import pytest
import respx

from llmclient import Client, ConfigurationError

# The server fixture starts llama.cpp's server (up to 120 s on a loaded machine) inside the first test's timeout.
pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

FREE = {"openai-compatible/*": 0}


@pytest.fixture
def client(llama_server: str) -> Client:
    # A local server costs nothing; without a price its cost would be None (unknown is not free).
    return Client(providers={"openai-compatible": {"base_url": llama_server}}, prices={"openai-compatible/*": 0})


async def test_chat_returns_text_and_the_servers_usage(client: Client) -> None:
    reply = await client.chat("Say hello.", model="openai-compatible/smollm2", temperature=0, max_tokens=12)
    assert reply.text.strip()
    assert reply.provider == "openai-compatible"
    assert reply.finish_reason in ("stop", "length")
    assert reply.usage.input_tokens > 0
    assert 0 < reply.usage.output_tokens <= 12
    assert not reply.usage.estimated  # llama-cpp-python reports usage on non-streamed replies
    await client.aclose()


async def test_stream_yields_deltas_and_ends_with_estimated_usage(client: Client) -> None:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
    reference = await client.chat(messages, model="openai-compatible/smollm2", temperature=0, max_tokens=10)
    stream = client.stream(messages, model="openai-compatible/smollm2", temperature=0, max_tokens=10)
    chunks = [chunk async for chunk in stream]
    deltas = [chunk.delta for chunk in chunks if chunk.delta]
    assert len(deltas) > 1
    assert "".join(deltas) == reference.text  # greedy: streamed and plain replies agree
    final = chunks[-1]
    assert final.finish_reason in ("stop", "length")
    # The server sends no usage in streams: it is counted locally and flagged.
    assert final.usage is not None and final.usage.estimated
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert stream.response.usage == final.usage
    records = client.ledger.records
    assert [r.kind for r in records] == ["chat", "stream"]
    assert records[1].usage.estimated and not records[0].usage.estimated
    await client.aclose()


async def test_top_k_and_stop_reach_the_server(llama_server: str) -> None:
    async with Client(providers={"openai-compatible": {"base_url": llama_server}}, prices=FREE) as client:
        reply = await client.chat(
            "Count: 1, 2, 3, 4, 5, 6", model="openai-compatible/smollm2", top_k=1, stop=[","], max_tokens=30
        )
    assert reply.dropped_params == []
    assert reply.applied_params["top_k"] == 1
    assert "," not in reply.text


async def test_a_named_server_is_its_own_provider(llama_server: str) -> None:
    async with Client(
        providers={"local": {"driver": "openai-compatible", "base_url": llama_server}}, prices={"local/*": 0}
    ) as client:
        reply = await client.chat("Hi", model="local/smollm2", max_tokens=5)
    assert reply.provider == "local"
    assert client.ledger.records[0].provider == "local"


@respx.mock
async def test_requests_use_max_tokens_and_no_key_by_default() -> None:
    route = respx.post("http://127.0.0.1:9/v1/chat/completions").respond(
        200,
        json={
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "model": "m",
        },
    )
    async with Client(providers={"openai-compatible": {"base_url": "http://127.0.0.1:9/v1"}}, prices=FREE) as client:
        reply = await client.chat("Hello there", model="openai-compatible/m", max_tokens=3, top_k=2)
    body = json.loads(route.calls[0].request.content)
    assert body["max_tokens"] == 3 and body["top_k"] == 2
    assert "authorization" not in route.calls[0].request.headers
    # No usage in the body: counted locally and flagged.
    assert reply.usage.estimated and reply.usage.output_tokens == 1


async def test_base_url_is_required() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        await Client().chat("hi", model="openai-compatible/m")


async def test_developer_instructions_reach_a_server_that_knows_only_system(client: Client) -> None:
    # llama.cpp, vLLM and most compatible servers know system, user, assistant and tool: developer goes as system.
    messages = [{"role": "developer", "content": "Answer with one word."}, {"role": "user", "content": "Sky colour?"}]
    reply = await client.chat(messages, model="openai-compatible/smollm2", temperature=0, max_tokens=4)
    await client.aclose()
    assert reply.text.strip()
    with respx.mock:
        route = respx.post("http://127.0.0.1:9/v1/chat/completions").respond(200, json=reply.raw)
        async with Client(providers={"openai-compatible": {"base_url": "http://127.0.0.1:9/v1"}}, prices=FREE) as other:
            await other.chat(messages, model="openai-compatible/smollm2")
    assert json.loads(route.calls[0].request.content)["messages"][0] == messages[0] | {"role": "system"}
