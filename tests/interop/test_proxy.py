"""HTTP_PROXY, HTTPS_PROXY and NO_PROXY through a real forward proxy (proxy.py), on every backend: read once when
the driver is built; a proxied native client sends through aiohttp.

Which way a call went is read from the answer: the app names the client port it saw (`peer-<port>`), which is one
of this process's sockets when the call came directly, and the proxy's otherwise."""

from __future__ import annotations

import psutil
import pytest

from interop.calls import BACKENDS, chat, client_for, expected_chat, stream
from interop.servers import Server


def came_directly(peer: str | None) -> bool:
    """Whether the server's peer (`peer-<port>`, kept alive after the call) is one of this process's sockets."""
    ours = {c.laddr.port for c in psutil.Process().net_connections(kind="tcp") if c.laddr}
    return int((peer or "peer-0").removeprefix("peer-")) in ours


@pytest.mark.parametrize("backend", BACKENDS)
async def test_http_through_the_proxy_unless_no_proxy_names_the_host(
    fleet: dict[str, Server], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, server = fleet["proxy.py"], fleet["uvicorn-httptools"]
    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "all_proxy", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    async with client_for(server, backend, trust_env=True) as client:
        answer, peer = await chat(client, "via the proxy")
        assert answer == expected_chat("via the proxy") and not came_directly(peer)
        assert await stream(client, "streamed", "m-cr") == expected_chat("streamed", "m-cr")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    async with client_for(server, backend, trust_env=True) as client:
        answer, peer = await chat(client, "direct")
        assert answer == expected_chat("direct") and came_directly(peer)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_https_tunnelled_through_the_proxy(
    fleet: dict[str, Server], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, server = fleet["proxy.py"], fleet["hypercorn over TLS"]
    for name in ("HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "all_proxy", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    async with client_for(server, backend, trust_env=True) as client:  # verified against the throwaway CA
        answers = [await chat(client, f"tunnelled {n}") for n in range(3)]
        assert not any(came_directly(peer) for _, peer in answers)
    assert [answer for answer, _ in answers] == [expected_chat(f"tunnelled {n}") for n in range(3)]
    assert len({peer for _, peer in answers}) == 1  # one tunnel, kept alive
