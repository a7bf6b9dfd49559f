"""Items 3, 5 and 7 of issue 15: careless inputs and hostile answers at the edges become typed errors, before
anything is sent where the input is at fault, with the key kept out of every chain and log."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from hostile.server import KEY, PRICES, Reply, assert_clean, client_for, ok, sse
from llmclient import (
    APIConnectionError,
    AuthenticationError,
    Client,
    ConfigurationError,
    InsecureURLWarning,
    InvalidRequestError,
    Limits,
    RedirectError,
    ResponseFormatError,
    ServerError,
    StreamDecodeError,
)


def openai_client(key: str, url: str = "http://127.0.0.1:9/v1", **provider: Any) -> Client:
    return Client(providers={"openai-compatible": {"base_url": url, "api_key": key, **provider}}, prices=PRICES)


@pytest.mark.parametrize(
    "key",
    [KEY + "é", "   ", "null", "None", KEY + "\r\nX-Evil: 1", "sk-with space"],
    ids=["non-ascii", "spaces", "null", "None", "crlf", "space"],
)
async def test_unusable_keys_are_configuration_errors_before_sending(key: str, debug_logs) -> None:
    async with openai_client(key) as client:
        with pytest.raises(ConfigurationError, match="API key") as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs, key=key if len(key.strip()) >= 8 else KEY)  # placeholders may show
    assert len(client.ledger) == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/v1", "http://127.0.0.1:8000/v 1", " http://a b/v1"])
async def test_unusable_base_urls_are_configuration_errors(url: str, debug_logs) -> None:
    async with openai_client(KEY, url) as client:
        with pytest.raises(ConfigurationError, match="base_url") as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs)


def test_a_key_over_plain_http_to_a_public_host_warns_once() -> None:
    with pytest.warns(InsecureURLWarning, match=r"plain http to api\.example\.com"):
        openai_client(KEY, "http://api.example.com/v1").driver("openai-compatible")
    openai_client(KEY, "http://gpu-box:8000/v1").driver("openai-compatible")  # the local network: no warning
    openai_client(KEY, "http://api.example.com/v1").driver("openai-compatible")  # warned once per host


async def test_a_custom_transport_raising_its_own_error_is_typed_and_redacted(debug_logs) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"proxy said no to {request.headers['authorization']}")

    client = Client(
        providers={"openai-compatible": {"base_url": "http://127.0.0.1:9/v1", "api_key": KEY}},
        transport=httpx.MockTransport(broken),
        prices=PRICES,
    )
    async with client:
        with pytest.raises(APIConnectionError, match="RuntimeError") as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs)
    assert len(client.ledger) == 0


@pytest.mark.parametrize(
    ("messages", "options"),
    [
        ("lone \ud800 surrogate", {}),
        (None, {}),
        (5, {}),
        ([{"role": "user", "content": 5}], {}),
        ("hi", {"extra_body": ["not", "a", "mapping"]}),
        ("hi", {"extra_body": {"x": {1, 2}}}),
        ("hi", {"timeout": -1}),
    ],
    ids=["surrogate", "none", "int", "int-content", "extra-body-list", "extra-body-set", "negative-timeout"],
)
async def test_bad_inputs_are_invalid_request_errors_before_sending(serve, messages, options, debug_logs) -> None:
    server = await serve(ok())
    async with client_for(server) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.chat(messages, model="openai-compatible/m", **options)
        with pytest.raises(InvalidRequestError):
            async for _ in client.stream(messages, model="openai-compatible/m", **options):
                pass
    assert_clean(caught.value, debug_logs)
    assert server.requests == [] and len(client.ledger) == 0


@pytest.mark.parametrize("backend", ["httpx", "aiohttp", "native"])
async def test_debug_logs_never_hold_the_key_a_server_echoes(serve, debug_logs, backend: str) -> None:
    server = await serve(ok())  # every answer carries `x-echo: Bearer <key>`
    async with client_for(server, provider={"http": {"backend": backend}}) as client:
        await client.chat("hi", model="openai-compatible/m")
    if backend == "httpx":  # httpcore logs response headers at DEBUG; aiohttp and native do not log them at all
        assert any("x-echo" in r.getMessage() for r in debug_logs.records)  # httpcore logged the headers…
    assert not any(KEY in r.getMessage() for r in debug_logs.records)  # …without the key


async def test_masked_echoes_of_a_non_sk_key_are_redacted(serve, debug_logs) -> None:
    key = "tok_ABCDEFGH12345678QRST"
    body = {"error": {"message": "Incorrect API key tok_ABCD…QRST (also ****QRST)", "type": "invalid_request_error"}}
    server = await serve(Reply(401, (json.dumps(body).encode(),), {"content-type": "application/json"}))
    async with Client(providers={"openai-compatible": {"base_url": server.url, "api_key": key}}) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs, key=key)
    assert "QRST" not in str(caught.value) and "ABCD" not in json.dumps(caught.value.body)


async def test_implausible_usage_is_recounted_and_flagged(serve, debug_logs) -> None:
    server = await serve(ok(usage={"prompt_tokens": 1e30, "completion_tokens": -3}))
    async with client_for(server) as client:
        reply = await client.chat("hi", model="openai-compatible/m")
    assert reply.usage.estimated and reply.usage.input_tokens < 100
    [record] = client.ledger.records
    assert record.cost is not None and record.cost.total < 0.001


async def test_a_redirect_is_a_typed_error_naming_the_host_and_never_followed(serve, debug_logs) -> None:
    location = {"location": "https://evil.example/v1/chat/completions", "content-type": "application/json"}
    server = await serve(Reply(307, (ok().body[0],), location))  # a JSON body that would parse as a reply
    async with client_for(server) as client:
        with pytest.raises(RedirectError, match=r"evil\.example") as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs)
    assert caught.value.location == location["location"]
    assert len(server.requests) == 1 and len(client.ledger) == 0


async def test_a_timed_out_request_is_recorded_with_unknown_cost(serve, debug_logs) -> None:
    server = await serve(Reply(hang=True))
    async with client_for(server) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.chat("hi", model="openai-compatible/m", timeout=0.3)
    assert_clean(caught.value, debug_logs)
    [record] = client.ledger.records
    assert (record.cost, record.attempts, record.error) == (None, 1, "APITimeoutError")


async def test_the_deadline_covers_admission(debug_logs) -> None:
    from llmclient import FakeDriver

    class SlowCounting(FakeDriver):
        async def count_tokens(self, model: str, messages: Any, tools: Any) -> Any:
            await asyncio.sleep(3600)  # a tokenizer that never loads (a download through a silent proxy)

    client = Client(providers={"fake": SlowCounting()}, prices={"fake/m": 1}, budget_usd=1)
    with pytest.raises(APIConnectionError, match="deadline") as caught:
        await asyncio.wait_for(client.chat("hi", model="fake/m", max_tokens=5, timeout=0.2), 30)
    assert_clean(caught.value, debug_logs)
    assert len(client.ledger) == 0


async def test_bodies_and_events_over_their_limits_are_typed_errors(serve, debug_logs) -> None:
    limits = {"provider": {"limits": Limits(max_response_bytes=4096, max_event_bytes=1024)}}
    big = await serve(ok("x" * 10_000))
    async with client_for(big, **limits) as client:
        with pytest.raises(ResponseFormatError, match="max_response_bytes") as caught:
            await client.chat("hi", model="openai-compatible/m")
    assert_clean(caught.value, debug_logs)
    assert len(client.ledger) == 1  # a 2xx: billed, recorded
    long_line = await serve(sse("x" * 5000))
    async with client_for(long_line, **limits) as client:
        with pytest.raises(StreamDecodeError, match="max_event_bytes") as streamed:
            async for _ in client.stream("hi", model="openai-compatible/m"):
                pass
    assert_clean(streamed.value, debug_logs)


@pytest.mark.parametrize(("status", "verdict", "requests"), [(500, "false", 1), (400, "true", 3)])
async def test_x_should_retry_is_obeyed(serve, status: int, verdict: str, requests: int) -> None:
    server = await serve(Reply(status, (b'{"error": {"message": "no"}}',), {"x-should-retry": verdict}))
    async with client_for(server, retry=2) as client:
        with pytest.raises(ServerError if status == 500 else Exception):
            await client.chat("hi", model="openai-compatible/m")
    assert len(server.requests) == requests
