"""A secret scan: an API key given to the client never shows up in reprs, errors, their chains or the logs.

The key is planted in the provider config, echoed back by the provider (in a 401 body, nested fields, a stream's
error event, a non-JSON body) and carried by a transport error's message. Everything a user could print or log is
then searched for it, with DEBUG logging on for llmclient, httpx and httpcore.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmclient import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    Client,
    ConfigurationError,
    LLMClientError,
    ResponseFormatError,
    RetryPolicy,
    StreamInterruptedError,
)

KEY = "sk-test-SECRET-4f9a8b7c6d5e"
# A key without the `sk-` shape (a self-hosted server's token) must be scrubbed by value, not by pattern.
PLAIN_KEY = "vllm-token-SECRET-7c1d2e3f4a5b"
MODEL = "openai/gpt-3.5-turbo"
SSE = (Path(__file__).parent / "fixtures" / "openai" / "stream.sse").read_bytes()
FIRST_EVENTS = b"\n\n".join(SSE.split(b"\n\n")[:2]) + b"\n\n"  # the role event and "Hello"


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    for name in ("llmclient", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)


class Drop(httpx.AsyncByteStream):
    """A body that sends some events, then fails with `error`."""

    def __init__(self, content: bytes, error: Exception) -> None:
        self.content = content
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.content
        raise self.error


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception behind it (`__cause__` and `__context__`), each once."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def everything_printable(client: Client, error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    texts = [repr(client)]
    for driver in client._resolver.drivers:
        texts += [str(driver), repr(driver)]
    for exc in chain(error):
        texts += [str(exc), repr(exc), repr(exc.args)]
        if isinstance(exc, LLMClientError):
            texts += [exc.message, repr(getattr(exc, "partial_text", ""))]
        if isinstance(exc, APIError):
            texts += [json.dumps(exc.body), repr(exc.body), repr(exc.error_code)]
    texts.append("".join(traceback.format_exception(error)))
    texts.append(caplog.text)
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
    return "\n".join(texts)


def make_client(handler: Callable[[httpx.Request], httpx.Response], *, key: str = KEY, **config: Any) -> Client:
    return Client(
        transport=httpx.MockTransport(handler),
        providers={"openai": {"api_key": key, **config}},
        retry=RetryPolicy(max_retries=1, initial_backoff=0, max_backoff=0, jitter=False),
    )


async def send(client: Client, how: str) -> None:
    """One chat call, or one stream read to its end."""
    if how == "chat":
        await client.chat("Hi", model=MODEL)
    else:
        async for _ in client.stream("Hi", model=MODEL):
            pass


async def call(client: Client, how: str) -> LLMClientError:
    with pytest.raises(LLMClientError) as caught:
        await send(client, how)
    return caught.value


def assert_no_key(text: str, key: str = KEY) -> None:
    assert key not in text
    # Nor a long piece of it, as a cut-off message would leave.
    fragments = {key[i : i + 12] for i in range(len(key) - 11)}
    assert not [fragment for fragment in fragments if fragment in text]


def echoing_401(key: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com.",
            "type": "invalid_request_error",
            "param": key,
            "code": "invalid_api_key",
            "details": {"key": key, "seen": [key, {"authorization": f"Bearer {key}"}]},
        }
    }


# -- the key in the config, echoed in a 401 ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["chat", "stream"])
async def test_key_echoed_in_a_401_body_is_nowhere(caplog: pytest.LogCaptureFixture, how: str) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(401, json=echoing_401(KEY), headers={"x-request-id": "req_401"})

    async with make_client(handler) as client:
        error = await call(client, how)
        assert_no_key(everything_printable(client, error, caplog))
    assert type(error) is AuthenticationError
    assert sent[0].headers["authorization"] == f"Bearer {KEY}"  # it was used, just never shown
    assert len(sent) == 1
    assert error.request_id == "req_401"
    body = error.body
    assert body["error"]["details"]["seen"][1]["authorization"] == "Bearer [REDACTED]"
    assert body["error"]["param"] == "[REDACTED]"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda key: f"<html><body><h1>401</h1><p>bad key {key}</p></body></html>", id="html"),
        pytest.param(lambda key: f"unauthorized: {key}", id="text"),
        # The key straddles the 500-character cut of the message.
        pytest.param(lambda key: "x" * 475 + f" {key} " + "y" * 100, id="text-cut-at-the-key"),
        pytest.param(lambda key: json.dumps({"error": f"bad key {key}"}), id="json-string"),
        pytest.param(lambda key: json.dumps({"error": {"detail": {"key": key}}}), id="json-no-message"),
    ],
)
@pytest.mark.parametrize("key", [KEY, PLAIN_KEY], ids=["sk-key", "plain-key"])
async def test_key_echoed_in_any_error_body_shape_is_nowhere(
    caplog: pytest.LogCaptureFixture, content: Callable[[str], str], key: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text=content(key))

    async with make_client(handler, key=key) as client:
        error = await call(client, "chat")
        assert_no_key(everything_printable(client, error, caplog), key)
    assert type(error) is AuthenticationError


@pytest.mark.parametrize("key", [KEY, PLAIN_KEY], ids=["sk-key", "plain-key"])
async def test_key_echoed_in_a_stream_error_event_is_nowhere(caplog: pytest.LogCaptureFixture, key: str) -> None:
    event = json.dumps({"error": {"message": f"key {key} was revoked mid-stream"}}).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=FIRST_EVENTS + b"data: " + event + b"\n\n")

    async with make_client(handler, key=key) as client:
        error = await call(client, "stream")
        assert_no_key(everything_printable(client, error, caplog), key)
    assert type(error) is StreamInterruptedError
    assert error.partial_text == "Hello"


@pytest.mark.parametrize("key", [KEY, PLAIN_KEY], ids=["sk-key", "plain-key"])
async def test_key_echoed_in_a_non_json_2xx_body_is_nowhere(caplog: pytest.LogCaptureFixture, key: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=f"proxy error for {key}")

    async with make_client(handler, key=key) as client:
        error = await call(client, "chat")
        assert_no_key(everything_printable(client, error, caplog), key)
    assert type(error) is ResponseFormatError


# -- the key in a transport error ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (httpx.ConnectError, APIConnectionError),
        (httpx.ReadError, APIConnectionError),
        (httpx.RemoteProtocolError, APIConnectionError),
        (httpx.ReadTimeout, APITimeoutError),
    ],
)
@pytest.mark.parametrize("how", ["chat", "stream"])
async def test_key_in_a_transport_error_is_nowhere(
    caplog: pytest.LogCaptureFixture, raised: type[httpx.TransportError], kind: type[LLMClientError], how: str
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise raised(f"failed for {KEY}", request=request)

    async with make_client(handler) as client:
        error = await call(client, how)
        assert_no_key(everything_printable(client, error, caplog))
    assert type(error) is kind
    assert len(sent) == 2  # retried once, and neither attempt's error shows the key


@pytest.mark.parametrize("key", [KEY, PLAIN_KEY], ids=["sk-key", "plain-key"])
async def test_key_in_an_error_that_cuts_a_stream_is_nowhere(caplog: pytest.LogCaptureFixture, key: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = Drop(FIRST_EVENTS, httpx.RemoteProtocolError(f"peer reset while sending {key}", request=request))
        return httpx.Response(200, stream=body)

    async with make_client(handler, key=key) as client:
        error = await call(client, "stream")
        assert_no_key(everything_printable(client, error, caplog), key)
    assert type(error) is StreamInterruptedError
    assert error.partial_text == "Hello"


async def test_reprs_of_client_and_driver_hide_the_key(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]})

    async with make_client(handler) as client:
        driver = client.driver("openai")
        reply = await client.chat("Hi", model=MODEL)
        texts = [repr(client), str(client), repr(driver), str(driver), repr(client.ledger.records), caplog.text]
    assert reply.text == "hi"
    assert "HTTP Request: POST" in caplog.text  # httpx's own log line: the logs were on and captured
    assert_no_key("\n".join(texts))


# -- base_url validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("https://alice:hunter2-SECRET@api.example.com/v1", id="user-and-password"),
        pytest.param("https://hunter2-SECRET@api.example.com/v1", id="user-only"),
        pytest.param("https://:hunter2-SECRET@api.example.com/v1", id="password-only"),
        pytest.param("https://api.example.com/v1?api_key=hunter2-SECRET", id="query"),
        pytest.param("https://api.example.com/v1#hunter2-SECRET", id="fragment"),
        pytest.param("ftp://api.example.com/hunter2-SECRET", id="ftp"),
        pytest.param("file:///etc/hunter2-SECRET", id="file"),
        pytest.param("ws://api.example.com/hunter2-SECRET", id="websocket"),
        pytest.param("api.example.com/hunter2-SECRET", id="no-scheme"),
        pytest.param("https:///hunter2-SECRET", id="no-host"),
    ],
)
@pytest.mark.parametrize("how", ["chat", "stream"])
async def test_bad_base_url_fails_at_the_first_call_without_sending(
    caplog: pytest.LogCaptureFixture, base_url: str, how: str
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    client = make_client(handler, base_url=base_url)  # building the client sends and checks nothing yet
    async with client:
        with pytest.raises(ConfigurationError) as caught:
            await send(client, how)
        printable = everything_printable(client, caught.value, caplog)
    assert type(caught.value) is ConfigurationError
    assert sent == []
    assert "hunter2" not in printable
    assert "alice" not in printable
    assert_no_key(printable)


async def test_bad_base_url_from_the_environment_is_rejected_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://alice:hunter2-SECRET@api.example.com/v1")
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    async with make_client(handler) as client:
        with pytest.raises(ConfigurationError) as caught:
            await client.chat("Hi", model=MODEL)
        printable = everything_printable(client, caught.value, caplog)
    assert type(caught.value) is ConfigurationError
    assert sent == []
    assert "hunter2" not in printable
