"""The HTTP backends against a real loopback server: headers, proxies, timeouts, limits, keep-alive, TLS options."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpx
import pytest
import respx
from aiohttp import web

from llmclient import APIConnectionError, APITimeoutError, Client, HTTPOptions, MissingExtraError, Timeouts
from llmclient.http import HTTPClient

COMPLETION = {
    "id": "chatcmpl-1",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
FREE = {"openai-compatible/m": 0}
BACKENDS = ["native", "aiohttp", "httpx"]


@dataclass
class Server:
    """What the loopback server saw."""

    url: str = ""
    requests: list[web.Request] = field(default_factory=list)
    peers: set[int] = field(default_factory=set)  # client ports: one per connection
    in_flight: int = 0
    most_in_flight: int = 0
    delay: float = 0.0


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    seen = Server()

    async def chat(request: web.Request) -> web.StreamResponse:
        seen.requests.append(request)
        seen.peers.add(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        seen.in_flight += 1
        seen.most_in_flight = max(seen.most_in_flight, seen.in_flight)
        try:
            await asyncio.sleep(seen.delay)
        finally:
            seen.in_flight -= 1
        return web.json_response(COMPLETION)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen.url = f"http://127.0.0.1:{port}"
    try:
        yield seen
    finally:
        await runner.cleanup()


def client_for(url: str, backend: str, **options: Any) -> Client:
    provider = {"base_url": f"{url}/v1", "http": {"backend": backend, **options.pop("http", {})}, **options}
    return Client(providers={"openai-compatible": provider}, prices=FREE, retry=0)


def backend_of(client: Client) -> str:
    http: HTTPClient = client.driver("openai-compatible")._http  # type: ignore[attr-defined]
    backend = http._backend()
    return {"H1Backend": "native", "AiohttpBackend": "aiohttp", "NoneType": "httpx"}[type(backend).__name__]


async def test_the_default_backend_is_native(server: Server) -> None:
    async with Client(providers={"openai-compatible": {"base_url": f"{server.url}/v1"}}, prices=FREE) as client:
        assert backend_of(client) == "native"
        assert (await client.chat("ping", model="openai-compatible/m")).text == "pong"


def test_a_proxy_selects_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert backend_of(client_for("https://llm.example", "native")) == "aiohttp"
    assert backend_of(client_for("http://127.0.0.1:9", "native", http={"proxy": "http://proxy:3128"})) == "aiohttp"
    assert backend_of(client_for("http://127.0.0.1:9", "native", http={"trust_env": False})) == "native"


async def test_without_the_aiohttp_extra_a_proxy_goes_through_httpx(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the core install has: aiohttp is an extra (pyproject's `aiohttp`), so it cannot be imported.
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    monkeypatch.setitem(sys.modules, "llmclient.http.backends.aiohttp_backend", None)
    async with client_for("http://llm.invalid", "native", http={"proxy": server.url, "trust_env": False}) as client:
        assert backend_of(client) == "httpx"
        assert (await client.chat("ping", model="openai-compatible/m")).text == "pong"  # the proxy saw it
    with pytest.raises(MissingExtraError, match=r"pip install 'llmclient\[aiohttp\]'"):
        client_for("http://127.0.0.1:9", "aiohttp").driver("openai-compatible")


async def test_a_transport_or_a_started_respx_mock_selects_httpx() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=COMPLETION))
    async with Client(transport=transport, providers={"openai-compatible": {"base_url": "http://x/v1"}}) as client:
        assert backend_of(client) == "httpx"
    with respx.mock:
        route = respx.post("http://127.0.0.1:9/v1/chat/completions").respond(200, json=COMPLETION)
        async with client_for("http://127.0.0.1:9", "native") as client:
            assert backend_of(client) == "httpx"
            assert (await client.chat("ping", model="openai-compatible/m")).text == "pong"
        assert route.called


@pytest.mark.parametrize("backend", BACKENDS)
async def test_headers_reach_the_server(server: Server, backend: str) -> None:
    async with client_for(server.url, backend, api_key="sk-test", headers={"x-team": "search"}) as client:
        await client.chat("ping", model="openai-compatible/m")
    headers = server.requests[-1].headers
    assert headers["x-team"] == "search"
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["user-agent"].startswith("llmclient/")
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_proxy_from_the_environment(server: Server, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The loopback server plays the proxy: a request for an unreachable host arrives at it in absolute form.
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with client_for("http://llm.invalid", backend) as client:
        assert (await client.chat("ping", model="openai-compatible/m")).text == "pong"
    assert server.requests[-1].url.host == "llm.invalid"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_explicit_proxy(server: Server, backend: str) -> None:
    async with client_for("http://llm.invalid", backend, http={"proxy": server.url, "trust_env": False}) as client:
        assert (await client.chat("ping", model="openai-compatible/m")).text == "pong"
    assert server.requests[-1].url.host == "llm.invalid"


@pytest.mark.parametrize(
    "environment",
    [
        {"HTTPS_PROXY": "http://a:1"},
        {"https_proxy": "http://b:2", "HTTPS_PROXY": "http://a:1"},  # lower case wins
        {"https_proxy": "", "HTTPS_PROXY": "http://a:1"},  # an empty lower-case one removes it
        {"HTTP_PROXY": "http://c:3", "REQUEST_METHOD": "GET"},  # CGI: HTTP_PROXY is a request header
        {"ALL_PROXY": "http://d:4", "no_proxy": "localhost"},
    ],
)
def test_the_environment_is_read_as_urllib_reads_it(monkeypatch: pytest.MonkeyPatch, environment: Any) -> None:
    import urllib.request

    from llmclient.http.options import _environment_proxies

    for name in [n for n in os.environ if n.lower().endswith("_proxy") or n == "REQUEST_METHOD"]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert _environment_proxies() == urllib.request.getproxies_environment()


def test_no_proxy_and_trust_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    options = HTTPOptions()
    assert options.proxy_for("https://api.openai.com/v1") == "http://proxy:3128"
    assert options.proxy_for("https://gpu.internal/v1") is None
    assert options.proxy_for("https://localhost:8000/v1") is None
    assert HTTPOptions(trust_env=False).proxy_for("https://api.openai.com/v1") is None
    assert HTTPOptions(proxy="http://other:8080").proxy_for("https://gpu.internal/v1") == "http://other:8080"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_read_timeout(server: Server, backend: str) -> None:
    server.delay = 1.0
    async with client_for(server.url, backend, timeouts=Timeouts(connect=5, read=0.1, total=None)) as client:
        with pytest.raises(APITimeoutError, match="read timeout"):
            await client.chat("ping", model="openai-compatible/m")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_connection_limit_and_pool_timeout(server: Server, backend: str) -> None:
    server.delay = 0.05
    async with client_for(server.url, backend, http={"max_connections": 2}) as client:
        await asyncio.gather(*[client.chat("ping", model="openai-compatible/m") for _ in range(6)])
    assert server.most_in_flight == 2
    server.delay = 1.0
    timeouts = Timeouts(connect=5, read=5, pool=0.1, total=None)
    async with client_for(server.url, backend, http={"max_connections": 1}, timeouts=timeouts) as client:
        first = asyncio.ensure_future(client.chat("ping", model="openai-compatible/m"))
        await asyncio.sleep(0.05)
        with pytest.raises(APITimeoutError):  # no free connection within `pool` seconds
            await client.chat("ping", model="openai-compatible/m")
        await first


@pytest.mark.parametrize("backend", BACKENDS)
async def test_keep_alive_reuses_one_connection(server: Server, backend: str) -> None:
    async with client_for(server.url, backend) as client:
        for _ in range(4):
            await client.chat("ping", model="openai-compatible/m")
    assert len(server.peers) == 1
    server.peers.clear()
    async with client_for(server.url, backend, http={"keepalive_expiry": 0}) as client:
        for _ in range(4):
            await client.chat("ping", model="openai-compatible/m")
    assert len(server.peers) == 4


def test_tls_verification_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    assert HTTPOptions(verify=False).ssl_context() is False
    own = ssl.create_default_context()
    assert HTTPOptions(verify=own).ssl_context() is own
    bundle = HTTPOptions(verify=certifi.where()).ssl_context()
    assert isinstance(bundle, ssl.SSLContext) and bundle.verify_mode == ssl.CERT_REQUIRED
    assert bundle.cert_store_stats()["x509_ca"] > 0
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    with pytest.raises(ssl.SSLError):  # SSL_CERT_FILE is read when trust_env is on
        HTTPOptions().ssl_context()
    assert isinstance(HTTPOptions(trust_env=False).ssl_context(), ssl.SSLContext)


def test_bad_options_fail_where_configured() -> None:
    with pytest.raises(ValueError, match="backend"):
        HTTPOptions(backend="requests")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_connections"):
        HTTPOptions(max_connections=0)
    with pytest.raises(ValueError, match="unknown HTTP option"):
        HTTPOptions.from_value({"proxies": "http://x"})


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_kept_alive_connection_closed_before_answering_is_tried_again(backend: str) -> None:
    # Every second request on a connection is met by a close, no byte of an answer: it never started there, so
    # each backend sends it again on a new connection. A new connection closed the same way is an error.
    requests = 0
    body = json.dumps(COMPLETION).encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            for answered in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                size = next(
                    int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")
                )
                await reader.readexactly(size)
                requests += 1
                if answered or refuse_all:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        writer.close()

    refuse_all = False
    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        async with client_for(url, backend, http={"trust_env": False}) as client:
            for _ in range(3):
                assert (await client.chat("ping", model="openai-compatible/m")).text == "pong"
            assert requests == 5  # the second and third calls each met one close first
            refuse_all = True
            with pytest.raises(APIConnectionError):
                await client.chat("ping", model="openai-compatible/m")
            assert requests in (6, 7)  # at most once more: the kept-alive connection, then a new one
    finally:
        listener.close()
