"""The Client: model ids, the registry, normalisation, the ledger, and the stream wrapper."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

import llmclient.drivers as registry
from llmclient import (
    BaseDriver,
    Capabilities,
    ChatRequest,
    ChatResponse,
    Client,
    ConfigurationError,
    FakeDriver,
    Message,
    RetryPolicy,
    ServerError,
    StreamInterruptedError,
    ToolCall,
    UnknownProviderError,
)


async def test_model_ids_split_at_the_first_slash_or_a_known_colon_prefix() -> None:
    client = Client(aliases={"fast": "smart", "smart": "fake/big/model:v1"})
    assert client.resolve("fake/echo") == ("fake", "echo")
    assert client.resolve("fake/org/model:tag") == ("fake", "org/model:tag")
    assert client.resolve("fake:name:with:colons") == ("fake", "name:with:colons")
    assert client.resolve("openai-compatible/Qwen/Qwen2.5-0.5B") == ("openai-compatible", "Qwen/Qwen2.5-0.5B")
    assert client.resolve("fast") == ("fake", "big/model:v1")  # aliases may chain


async def test_unknown_provider_lists_the_known_ones() -> None:
    client = Client()
    with pytest.raises(UnknownProviderError) as caught:
        await client.chat("hi", model="nope/model")
    for name in ("openai", "deepseek", "openai-compatible", "fake"):
        assert name in caught.value.message
    with pytest.raises(UnknownProviderError, match="names no provider"):
        client.resolve("gpt-4o")


async def test_default_model_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="LLMCLIENT_MODEL"):
        await Client().chat("hi")
    monkeypatch.setenv("LLMCLIENT_MODEL", "fake/from-env")
    assert (await Client().chat("hi")).model == "from-env"
    assert (await Client(default_model="fake/from-arg").chat("hi")).model == "from-arg"


class EchoUpper(BaseDriver):
    """A third-party driver, registered through an entry point."""

    name: ClassVar[str] = "upper"
    capabilities = Capabilities(params=frozenset({"temperature"}))

    def __init__(self, *, provider: str | None = None, **options: Any) -> None:
        super().__init__(provider=provider)
        self.options = options

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(message=Message(role="assistant", content=request.messages[-1].text.upper()))

    async def aclose(self) -> None:
        return None


class _EntryPoint:
    name = "upper"

    def load(self) -> type[EchoUpper]:
        return EchoUpper


async def test_entry_point_drivers_are_found_and_get_their_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_entry_points", lambda: {"upper": _EntryPoint()})
    assert "upper" in registry.known_providers()
    client = Client(providers={"upper": {"flavour": "loud"}}, prices={"upper/*": 0})
    assert (await client.chat("shout", model="upper/x")).text == "SHOUT"
    driver = client.driver("upper")
    assert isinstance(driver, EchoUpper) and driver.options == {"flavour": "loud"}


def test_bad_driver_options_are_a_configuration_error_when_the_client_is_made() -> None:
    with pytest.raises(ConfigurationError, match="no_such_option"):
        Client(providers={"fake": {"replies": []}, "openai": {"api_key": "k", "no_such_option": 1}})


def test_a_misspelt_provider_option_is_refused_when_loaded_with_the_closest_name() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Client(providers={"openai": {"api_kee": "sk-test"}})
    assert "provider 'openai': unknown option 'api_kee' (did you mean 'api_key'?)" in str(raised.value)
    assert "__init__" not in str(raised.value)  # not Python's own words


def test_a_misspelt_driver_name_is_an_unknown_driver_with_the_closest_name() -> None:
    with pytest.raises(UnknownProviderError) as raised:
        Client(providers={"vllm": {"driver": "openai-compat", "base_url": "http://127.0.0.1:8000/v1"}})
    message = str(raised.value)
    assert message.startswith("provider 'vllm': unknown driver 'openai-compat' (did you mean 'openai-compatible'?)")
    with pytest.raises(UnknownProviderError, match="give its options a driver"):
        Client(providers={"vllm": {"base_url": "http://127.0.0.1:8000/v1"}})


async def test_a_driver_instance_can_be_passed_directly() -> None:
    fake = FakeDriver(replies=["scripted"])
    client = Client(providers={"fake": fake})
    reply = await client.chat([{"role": "system", "content": "s"}, "hi"][1], model="fake/x")
    assert reply.text == "scripted"
    assert fake.requests[0].messages == [Message(role="user", content="hi")]


async def test_retries_are_recorded_once_with_their_attempts() -> None:
    flaky = FakeDriver(replies=[ServerError("busy", status=503), ServerError("busy", status=503), "done"])
    client = Client(providers={"fake": flaky}, retry=RetryPolicy(max_retries=2, initial_backoff=0, jitter=False))
    reply = await client.chat("hi", model="fake/x", tags=["t1"])
    assert reply.text == "done"
    assert len(client.ledger) == 1
    record = client.ledger.records[0]
    assert (record.attempts, record.kind, record.tags, record.provider) == (3, "chat", ("t1",), "fake")
    assert record.usage == reply.usage


async def test_per_call_max_retries() -> None:
    flaky = FakeDriver(replies=[ServerError("busy", status=503), "done"])
    client = Client(providers={"fake": flaky}, retry=RetryPolicy(max_retries=3, initial_backoff=0))
    with pytest.raises(ServerError):
        await client.chat("hi", model="fake/x", max_retries=0)
    assert len(flaky.requests) == 1
    assert len(client.ledger) == 0


async def test_stream_assembles_text_tool_calls_and_usage() -> None:
    call = ToolCall(id="c1", name="lookup", arguments={"q": "猫"})
    client = Client(
        providers={"fake": {"replies": [Message(role="assistant", content="Let me check.", tool_calls=[call])]}}
    )
    async with client.stream("find cats", model="fake/x") as stream:
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].finish_reason == "tool_calls"
    response = stream.response
    assert response.text == "Let me check."
    assert response.tool_calls == [call]
    assert response.usage == chunks[-1].usage
    assert client.ledger.records[-1].kind == "stream"


async def test_response_is_unavailable_before_the_stream_ends() -> None:
    stream = Client().stream("a b c", model="fake/x")
    with pytest.raises(RuntimeError, match="not finished"):
        _ = stream.response
    assert (await stream.final_response()).text == "You said: a b c"


async def test_a_stream_closed_early_records_an_estimate_once() -> None:
    client = Client()
    stream = client.stream("one two three four five six", model="fake/x")
    async for _chunk in stream:
        break
    await stream.aclose()
    assert len(client.ledger) == 1
    record = client.ledger.records[0]
    assert record.usage.estimated and record.error == "closed"
    with pytest.raises(RuntimeError):
        _ = stream.response


async def test_a_stream_cancelled_while_waiting_records_an_estimate_once() -> None:
    class Slow(FakeDriver):
        async def stream(self, request: ChatRequest) -> Any:
            yield await _chunk("first words ")
            await asyncio.sleep(10)
            yield await _chunk("never")

    client = Client(providers={"fake": Slow()})
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in client.stream("one two three", model="fake/x"):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(client.ledger) == 1
    record = client.ledger.records[0]
    assert record.error == "cancelled"
    assert record.usage.estimated and record.usage.output_tokens > 0


async def test_a_stream_error_mid_way_keeps_the_partial_text_and_is_not_retried() -> None:
    class Cut(FakeDriver):
        async def stream(self, request: ChatRequest) -> Any:
            self.requests.append(request)
            yield await _chunk("partial ")
            raise StreamInterruptedError("cut", partial_text="partial ")

    driver = Cut()
    client = Client(providers={"fake": driver}, retry=RetryPolicy(max_retries=3, initial_backoff=0))
    with pytest.raises(StreamInterruptedError) as caught:
        async for _ in client.stream("hi", model="fake/x"):
            pass
    assert caught.value.partial_text == "partial "
    assert len(driver.requests) == 1
    assert client.ledger.records[0].usage.estimated


async def _chunk(text: str) -> Any:
    from llmclient import ChatChunk

    return ChatChunk(delta=text)


async def test_clients_can_share_one_ledger() -> None:
    first = Client()
    second = Client(ledger=first.ledger)
    await first.chat("a", model="fake/x")
    await second.chat("b", model="fake/x")
    assert len(first.ledger) == 2


async def test_repr_shows_configuration_but_no_keys() -> None:
    client = Client(providers={"openai": {"api_key": "sk-very-secret-1234"}}, default_model="openai/gpt-4o")
    assert "sk-very-secret" not in repr(client)
    assert "openai" in repr(client)
    assert "sk-very-secret" not in repr(client.driver("openai"))


class HTTPPlugin(BaseDriver):
    """A third-party driver that speaks HTTP: its capabilities say so, and it gets the client's transport."""

    name: ClassVar[str] = "plugin-http"
    capabilities = Capabilities(http=True)

    def __init__(self, *, provider: str | None = None, transport: Any = None, timeouts: Any = None) -> None:
        super().__init__(provider=provider)
        self.transport, self.timeouts = transport, timeouts


async def test_an_entry_point_driver_that_speaks_http_gets_the_clients_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class _HTTPEntryPoint:
        name = "plugin-http"

        def load(self) -> type[HTTPPlugin]:
            return HTTPPlugin

    monkeypatch.setattr(registry, "_entry_points", lambda: {"plugin-http": _HTTPEntryPoint()})
    transport = object()
    client = Client(transport=transport, timeout=7)  # type: ignore[arg-type]
    driver = client.driver("plugin-http")
    assert isinstance(driver, HTTPPlugin)
    assert driver.transport is transport and driver.timeouts == client.timeouts
    assert driver.provider == "plugin-http"
    # A driver that does not speak HTTP is built without them (EchoUpper would reject unknown options otherwise).
    assert "transport" not in EchoUpper(provider="upper").options
