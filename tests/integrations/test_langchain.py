"""LangChain interop: the standard unit suite for ChatLLMClient, and tools in both directions."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from langchain_core.load import dumpd, load
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool as lc_tool
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import BaseModel

from llmclient import Client, FakeDriver, ToolCall, tool
from llmclient.integrations.langchain import ChatLLMClient, to_langchain_tool, to_messages


class TestChatLLMClientUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatLLMClient]:
        return ChatLLMClient

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "fake/echo"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return {"LLMCLIENT_MODEL": "fake/from-env", "LLMCLIENT_API_KEY": "sk-env"}, {}, {"model": "fake/from-env"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True


def weather(city: str) -> str:
    """Weather in a city.

    Args:
        city: The city.
    """
    return f"Sunny in {city}"


async def test_invoke_stream_and_usage_metadata() -> None:
    client = Client()
    model = ChatLLMClient(model="fake/echo", client=client)
    message = await model.ainvoke([SystemMessage("be brief"), HumanMessage("one two three")])
    assert message.content == "You said: one two three"
    assert message.usage_metadata == {"input_tokens": 5, "output_tokens": 5, "total_tokens": 10}
    assert message.response_metadata["model_provider"] == "fake"
    chunks = [chunk async for chunk in model.astream("a b")]
    assert "".join(str(c.content) for c in chunks) == "You said: a b"
    with_usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert with_usage == [{"input_tokens": 2, "output_tokens": 4, "total_tokens": 6}]
    assert len(client.ledger) == 2
    sync = model.invoke("sync call")  # runs on the private loop, recorded in the same ledger
    assert sync.content == "You said: sync call"
    assert len(client.ledger) == 3
    assert "".join(str(c.content) for c in model.stream("x")) == "You said: x"


async def test_bind_tools_round_trip_tool_calls() -> None:
    driver = FakeDriver(replies=[ToolCall(id="call_1", name="weather", arguments={"city": "Paris"}), "Sunny."])
    model = ChatLLMClient(model="fake/agent", client=Client(providers={"fake": driver}))
    bound = model.bind_tools([lc_tool(weather)], tool_choice="any")
    first = await bound.ainvoke("Weather in Paris?")
    assert isinstance(first, AIMessage)
    assert first.tool_calls == [{"name": "weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}]
    request = driver.requests[0]
    assert request.tool_choice == "required"
    assert request.tools is not None and request.tools[0].name == "weather"
    history = [HumanMessage("Weather in Paris?"), first, ToolMessage("Sunny in Paris", tool_call_id="call_1")]
    second = await bound.ainvoke(history)
    assert second.content == "Sunny."
    sent = driver.requests[1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool"]
    assert sent[1].tool_calls == [ToolCall(id="call_1", name="weather", arguments={"city": "Paris"})]


async def test_with_structured_output_by_tool_call() -> None:
    class City(BaseModel):
        name: str
        country: str

    driver = FakeDriver(replies=[ToolCall(id="c", name="City", arguments={"name": "Paris", "country": "France"})])
    model = ChatLLMClient(model="fake/x", client=Client(providers={"fake": driver}))
    city = await model.with_structured_output(City).ainvoke("Capital of France?")
    assert city == City(name="Paris", country="France")


async def test_llmclient_tools_become_langchain_tools_and_back() -> None:
    @tool
    async def shout(text: str) -> str:
        """Upper-case text.

        Args:
            text: What to shout.
        """
        return text.upper()

    converted = to_langchain_tool(shout)
    assert converted.name == "shout"
    assert await converted.ainvoke({"text": "hi"}) == "HI"
    assert converted.args["text"]["description"] == "What to shout."

    lc_weather = lc_tool(weather)
    driver = FakeDriver(replies=[ToolCall(id="c1", name="weather", arguments={"city": "Oslo"}), "Done."])
    client = Client(providers={"fake": driver})
    result = await client.run("Weather in Oslo?", tools=[lc_weather, shout], model="fake/agent")
    assert result.messages[2].content == "Sunny in Oslo"
    assert [t.name for t in driver.requests[0].tools or []] == ["weather", "shout"]


def test_message_conversion_rejects_unknown_blocks() -> None:
    assert to_messages([HumanMessage(content=[{"type": "text", "text": "hi"}])])[0].text == "hi"
    with pytest.raises(ValueError, match="unsupported content block"):
        to_messages([HumanMessage(content=[{"type": "audio", "data": "..."}])])


def test_serialized_models_keep_no_secret_and_load_back() -> None:
    model = ChatLLMClient(model="deepseek/deepseek-chat", api_key="sk-secret-123456", temperature=0.2)
    serialized = dumpd(model)
    assert "sk-secret" not in str(serialized)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load() is marked beta in langchain-core
        loaded = load(
            serialized,
            valid_namespaces=["llmclient"],
            allowed_objects=[ChatLLMClient],
            secrets_map={"LLMCLIENT_API_KEY": "sk-other"},
        )
    assert isinstance(loaded, ChatLLMClient) and loaded.temperature == 0.2


def test_model_ids_in_colon_form_name_their_provider() -> None:
    model = ChatLLMClient(model="openai:gpt-4o-mini", api_key="sk-test-key")
    assert model._get_ls_params()["ls_provider"] == "openai"
    client = model._new_client()
    assert client.driver("openai").api_key is not None
    assert client.resolve(model.model) == ("openai", "gpt-4o-mini")
