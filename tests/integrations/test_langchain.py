"""LangChain interop: the standard unit suites for ChatLLMClient and for our tools as LangChain tools, the adapter's
message conversion, and what the integration suite (test_langchain_suite.py) cannot show on its own."""

from __future__ import annotations

import json
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.load import dumpd, load
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as lc_tool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests, ToolsUnitTests
from pydantic import BaseModel

from integrations.offline_web import LoopbackWeb, png
from integrations.scripted_model import ScriptedServer
from llmclient import AudioPart, Client, FakeDriver, FilePart, InvalidRequestError, TextPart, ToolCall, tool
from llmclient.integrations.langchain import ChatLLMClient, to_langchain_tool, to_messages

pytestmark = pytest.mark.filterwarnings("ignore::llmclient.accounting.prices.UnknownPriceWarning")  # scripted model


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


@tool
async def shout(text: str) -> str:
    """Upper-case text.

    Args:
        text: What to shout.
    """
    return text.upper()


class TestToolsAsLangChainToolsUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> BaseTool:
        return to_langchain_tool(shout)

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"text": "hi"}


class TestToolsAsLangChainToolsIntegration(ToolsIntegrationTests):
    @property
    def tool_constructor(self) -> BaseTool:
        return to_langchain_tool(weather)

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"city": "Oslo"}


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
        to_messages([HumanMessage(content=[{"type": "video", "data": "..."}])])


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            {"type": "file", "base64": "JVBERi0=", "mime_type": "application/pdf"},
            FilePart(data="JVBERi0=", media_type="application/pdf"),
        ),
        (
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
            FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf"),
        ),
        (
            {"type": "file", "source_type": "base64", "data": "JVBERi0=", "mime_type": "application/pdf"},
            FilePart(data="JVBERi0=", media_type="application/pdf"),
        ),
        (
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
            FilePart(data="JVBERi0=", media_type="application/pdf"),
        ),
        ({"type": "file", "file_id": "file-abc"}, FilePart(file_id="file-abc")),
        ({"type": "audio", "base64": "UklGRg==", "mime_type": "audio/wav"}, AudioPart(data="UklGRg==", format="wav")),
        ({"type": "audio", "base64": "SUQz", "mime_type": "audio/mpeg"}, AudioPart(data="SUQz", format="mp3")),
        (
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            AudioPart(data="UklGRg==", format="wav"),
        ),
    ],
)
def test_file_and_audio_blocks_become_llmclient_parts(block: dict[str, Any], expected: Any) -> None:
    [message] = to_messages([HumanMessage(content=[{"type": "text", "text": "Describe:"}, block])])
    assert message.content == [TextPart(text="Describe:"), expected]
    [tool] = to_messages([ToolMessage(content=[block], tool_call_id="1")])
    assert tool.content == [expected]


@pytest.mark.parametrize(
    "block",
    [
        {"type": "file", "url": "https://example.com/a.pdf", "mime_type": "application/pdf"},
        {"type": "audio", "url": "https://example.com/a.wav"},
        {"type": "video", "base64": "AAAA", "mime_type": "video/mp4"},
    ],
)
def test_blocks_without_bytes_and_video_are_refused_with_a_typed_error(block: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match=f"unsupported content block '{block['type']}'"):
        to_messages([HumanMessage(content=[{"type": "text", "text": "Describe:"}, block])])


def test_content_blocks_in_every_form_the_suite_sends() -> None:
    data = "iVBORw0KGgo="
    human = HumanMessage(
        content=[
            {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "image", "base64": data, "mime_type": "image/png"},  # LangChain v1
            {"type": "image", "url": "https://example.com/b.png"},  # v1, by URL
            {"type": "image", "source_type": "base64", "data": data, "mime_type": "image/jpeg"},  # v0
            {"type": "image", "source_type": "url", "url": "https://example.com/c.png"},  # v0, by URL
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": data}},  # Anthropic
        ]
    )
    anthropic = AIMessage(
        content=[
            {"type": "thinking", "thinking": "They want a colour.", "signature": "sig"},
            {"type": "text", "text": "Let me pick."},
            {"type": "tool_use", "id": "toolu_1", "name": "color_picker", "input": {"fav_color": "purple"}},
        ]
    )  # no tool_calls given: the tool_use block is the call
    v1 = AIMessage(
        content=[
            {"type": "reasoning", "reasoning": "Use the tool."},
            {"type": "tool_call", "id": "call_2", "name": "get_weather", "args": {"location": "SF"}},
        ],
        tool_calls=[{"type": "tool_call", "id": "call_2", "name": "get_weather", "args": {"location": "SF"}}],
    )
    tool_image = ToolMessage(content=[{"type": "image", "base64": data, "mime_type": "image/png"}], tool_call_id="1")
    user, picked, weather, result = to_messages([human, anthropic, v1, tool_image])

    assert isinstance(user.content, list) and user.text == "look"
    assert [part.image_url.url for part in user.content[1:]] == [  # type: ignore[union-attr]
        "https://example.com/a.png",
        f"data:image/png;base64,{data}",
        "https://example.com/b.png",
        f"data:image/jpeg;base64,{data}",
        "https://example.com/c.png",
        f"data:image/gif;base64,{data}",
    ]
    assert picked.content == "Let me pick." and picked.reasoning == "They want a colour."
    assert picked.tool_calls == [ToolCall(id="toolu_1", name="color_picker", arguments={"fav_color": "purple"})]
    assert weather.content is None and weather.reasoning == "Use the tool."
    assert weather.tool_calls == [ToolCall(id="call_2", name="get_weather", arguments={"location": "SF"})]
    assert isinstance(result.content, list) and result.tool_call_id == "1"


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def _scripted_model(server: ScriptedServer) -> ChatLLMClient:
    return ChatLLMClient(model="openai-compatible/scripted", base_url=server.url, api_key="sk-scripted")


def test_usage_callback_counts_a_stream_as_it_counts_an_invoke(scripted: ScriptedServer) -> None:
    model = _scripted_model(scripted)
    with get_usage_metadata_callback() as invoked:
        message = model.invoke("Count these five words please")
    with get_usage_metadata_callback() as streamed:
        chunks = list(model.stream("Count these five words please"))
    assert invoked.usage_metadata == streamed.usage_metadata == {"scripted": message.usage_metadata}
    assert invoked.usage_metadata["scripted"]["total_tokens"] > 0
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.response_metadata["model_name"] == "scripted"
    assert last.response_metadata["finish_reason"] == "stop"
    assert [bool(chunk.usage_metadata) for chunk in chunks].count(True) == 1  # one chunk carries the usage


async def test_async_calls_on_short_lived_loops_share_one_client(scripted: ScriptedServer) -> None:
    # pytest (and asyncio.run) make a loop per call; the adapter's own client lives on its own loop thread.
    model = _scripted_model(scripted)
    assert (await model.ainvoke("one")).content == "Hello! You said: one."
    assert model.invoke("two").content == "Hello! You said: two."
    text = "".join([str(chunk.content) async for chunk in model.astream("three")])
    assert text == "Hello! You said: three."
    assert len(model.ledger) == 3


def test_strict_json_schema_output_is_sent_in_the_form_strict_mode_accepts(scripted: ScriptedServer) -> None:
    class Joke(BaseModel):
        """Joke to tell user."""

        setup: str
        punchline: str | None = None
        rating: int = 5

    schema = {**Joke.model_json_schema(), "title": "A joke, please!"}  # a title OpenAI would refuse as a name
    model = _scripted_model(scripted)
    joke = model.with_structured_output(Joke, method="json_schema", strict=True).invoke("Tell me a 'cat' joke")
    assert isinstance(joke, Joke) and joke.setup == "cat"
    as_dict = model.with_structured_output(schema, method="json_schema", strict=True).invoke("Tell me a joke")
    assert set(as_dict) == {"setup", "punchline", "rating"}
    first, second = (body["response_format"]["json_schema"] for body in scripted.requests[-2:])
    assert first["name"] == "Joke" and second["name"] == "A_joke__please_"
    for spec in (first, second):
        assert spec["strict"] is True
        assert spec["schema"]["required"] == ["setup", "punchline", "rating"]
        assert spec["schema"]["additionalProperties"] is False
        assert "default" not in json.dumps(spec["schema"])


def test_loopback_web_serves_its_pages_and_refuses_every_other_host(tmp_path: Path) -> None:
    page = "https://raw.githubusercontent.com/org/repo/sha/image.png"
    with LoopbackWeb({page: ("image/png", png())}) as web:
        environment = web.environment(tmp_path)
        proxy = environment["HTTPS_PROXY"]
        verify = ssl.create_default_context(cafile=environment["SSL_CERT_FILE"])
        with httpx.Client(proxy=proxy, verify=verify) as http:
            image = http.get(page)
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG\r\n")
            assert http.get(page.replace("image", "other")).status_code == 404
            with pytest.raises(httpx.ProxyError):
                http.get("https://example.com/")
    assert web.requests == [f"GET {page}", f"GET {page.replace('image', 'other')}", "refused CONNECT example.com:443"]


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


def test_standard_image_blocks_reach_the_server_as_openai_image_parts(scripted: ScriptedServer) -> None:
    image = {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"}
    reply = _scripted_model(scripted).invoke([HumanMessage(content=[{"type": "text", "text": "What is it?"}, image])])
    assert str(reply.content).endswith("I see 1 image.")
    (part,) = [p for p in scripted.requests[-1]["messages"][-1]["content"] if p["type"] == "image_url"]
    assert part == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
