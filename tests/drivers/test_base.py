"""BaseDriver's defaults and in-process registration: what a new driver gets without writing it."""

from __future__ import annotations

from typing import ClassVar

import pytest

from llmclient import (
    BaseDriver,
    Capabilities,
    ChatRequest,
    ChatResponse,
    Client,
    Message,
    ToolCall,
    UnsupportedCapabilityError,
    Usage,
)
from llmclient.drivers import _REGISTERED, Driver, is_known_provider, register_driver


class OneShot(BaseDriver):
    """Only `chat`: a tool call then text, as the scripted reply says."""

    name: ClassVar[str] = "oneshot"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        calls = [ToolCall(id="c1", name="look", arguments={"q": "x"})]
        return ChatResponse(
            message=Message(role="assistant", content="thinking", tool_calls=calls, reasoning="because"),
            finish_reason="tool_calls",
            usage=Usage(input_tokens=3, output_tokens=2),
            model=request.model,
            provider=self.provider,
        )


@pytest.fixture
def registered() -> object:
    register_driver(OneShot)
    yield OneShot
    _REGISTERED.pop("oneshot", None)


async def test_a_driver_with_chat_only_streams_counts_and_refuses_embeddings(registered: object) -> None:
    assert is_known_provider("oneshot")
    client = Client(prices={"oneshot/*": 0})
    driver = client.driver("oneshot")
    assert isinstance(driver, Driver) and driver.provider == "oneshot" and driver.api_key is None
    stream = client.stream("hi", model="oneshot/m")
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == 1 and stream.response.tool_calls[0].arguments == {"q": "x"}
    assert (stream.response.text, stream.response.message.reasoning) == ("thinking", "because")
    assert stream.response.usage == Usage(input_tokens=3, output_tokens=2)
    counted = await client.count_tokens([{"role": "user", "content": "Hello, world!"}], model="oneshot/gpt-4")
    assert not counted.exact  # the backend's own chat framing is unknown: an estimate
    text = await client.count_tokens("Hello, world!", model="oneshot/gpt-4")
    assert (text.tokens, text.tokenizer) == (4, "cl100k_base")  # tiktoken's encoding for the model name
    with pytest.raises(UnsupportedCapabilityError):
        await client.embed(["a"], model="oneshot/m")


async def test_a_second_server_on_a_registered_driver_keeps_its_own_name(registered: object) -> None:
    client = Client(providers={"oneshot-eu": {"driver": "oneshot"}}, prices={"oneshot-eu/m": 0})
    reply = await client.chat("hi", model="oneshot-eu/m")
    assert reply.provider == "oneshot-eu"
    assert client.ledger.records[0].provider == "oneshot-eu"


def test_capabilities_default_to_every_request_parameter() -> None:
    from llmclient.types import CHAT_PARAMS, SAMPLING_PARAMS

    assert Capabilities().params == frozenset(CHAT_PARAMS) >= frozenset(SAMPLING_PARAMS)
    assert not Capabilities().http and not Capabilities().self_hosted
