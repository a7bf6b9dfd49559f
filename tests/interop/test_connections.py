"""Connections the server ends or limits, on every backend: a close right after each complete answer, waitress's
connection limit, TLS from a throwaway authority."""

from __future__ import annotations

import asyncio
import time

import psutil
import pytest

from interop.calls import BACKENDS, chat, client_for, expected_chat, stream
from interop.servers import Server
from llmclient import APIConnectionError

KEEPALIVE_EXPIRY_S = 1.0


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_server_closing_after_each_complete_answer(fleet: dict[str, Server], backend: str) -> None:
    # HTTP/1.1 answers without `connection: close`, each followed by the close: 20 calls back to back, 0 failures.
    server = fleet["http.server closing after each answer"]
    async with client_for(server, backend) as client:
        answers = [await chat(client, f"call {n}") for n in range(20)]
        streams = [await stream(client, f"stream {n}") for n in range(5)]
        at_once = await asyncio.gather(*(chat(client, f"at once {n}") for n in range(20)))
    assert [answer for answer, _ in answers] == [expected_chat(f"call {n}") for n in range(20)]
    assert len({peer for _, peer in answers}) == 20  # every call on a connection of its own
    assert streams == [expected_chat(f"stream {n}") for n in range(5)]
    assert [answer for answer, _ in at_once] == [expected_chat(f"at once {n}") for n in range(20)]


def open_connections(port: int) -> int:
    """This process's established connections to `port`."""
    connections = psutil.Process().net_connections(kind="tcp")
    return sum(1 for c in connections if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


@pytest.mark.parametrize(
    ("backend", "idle"), [*((backend, None) for backend in BACKENDS), ("native", 20)], ids=[*BACKENDS, "native-20-idle"]
)
async def test_waitress_at_its_connection_limit(fleet: dict[str, Server], backend: str, idle: int | None) -> None:
    # waitress takes 100 connections at most, its listener among them, and keeps idle ones for 120 s; a client
    # that keeps its idle ones too leaves the calls beyond waiting in waitress's backlog until they expire.
    server = fleet["waitress, 100 connections"]
    options = {} if idle is None else {"max_idle_connections": idle}
    async with client_for(server, backend, keepalive_expiry=KEEPALIVE_EXPIRY_S, **options) as client:
        started = time.monotonic()
        answers = await asyncio.wait_for(asyncio.gather(*(chat(client, f"call {n}") for n in range(101))), 30)
        finished = time.monotonic()
        assert [answer for answer, _ in answers] == [expected_chat(f"call {n}") for n in range(101)]
        if idle is not None:
            assert open_connections(server.port) <= idle  # the rest closed as their calls ended
        if backend == "httpx":
            return  # httpx keeps 20 idle and closes expired ones only when the pool is next used
        await asyncio.sleep(max(0, finished + KEEPALIVE_EXPIRY_S + 0.3 - time.monotonic()))
        assert open_connections(server.port) == 0, f"idle connections older than {KEEPALIVE_EXPIRY_S} s"
        # ... and the pool works on: new connections, the same answers.
        assert (await chat(client, "again"))[0] == expected_chat("again")
    assert finished - started < 10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["hypercorn over TLS", "granian over TLS"])
async def test_tls_verified_against_a_throwaway_authority(fleet: dict[str, Server], backend: str, name: str) -> None:
    server = fleet[name]
    async with client_for(server, backend) as client:  # verify= the authority's bundle
        answers = [await chat(client, f"call {n}") for n in range(3)]
        assert [answer for answer, _ in answers] == [expected_chat(f"call {n}") for n in range(3)]
        assert len({peer for _, peer in answers}) == 1
        assert await stream(client, "stream me", "m-cr") == expected_chat("stream me", "m-cr")
    async with client_for(server, backend, verify=True) as client:  # certifi's authorities: not this one
        with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await chat(client, "refused")
