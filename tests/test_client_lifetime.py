"""A client in a long-running process: closing one releases every thread, socket and file it opened, and one used
across event loops (`asyncio.run` after `asyncio.run`) closes the old loop's sockets as that loop ends.

The calls go over real HTTP to bench/server.py (an OpenAI-compatible server on loopback, in its own process, with
keep-alive), so the sockets counted are this process's own. Memory over a million calls is measured by
bench/bench_soak.py, not here.
"""

from __future__ import annotations

import asyncio
import gc
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import free_port
from llmclient import Client, SyncClient
from llmclient.model_ids import ModelId, ModelResolver

SERVER = Path(__file__).resolve().parent.parent / "bench" / "server.py"
MODEL = "openai-compatible/bench"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(SERVER), "--port", str(port)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30.0)
    assert ready and process.stdout.readline().strip() == "ready"
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def options(url: str, **more: object) -> dict[str, object]:
    return {"providers": {"openai-compatible": {"base_url": url}}, "prices": {MODEL: 1}, **more}


def held() -> tuple[int, int, int, int]:
    """This process's threads (Python's and the OS's), open file descriptors and TCP connections."""
    gc.collect()  # anything only the collector would close counts as left open: collected first, then counted
    process = psutil.Process()
    return threading.active_count(), process.num_threads(), process.num_fds(), len(process.net_connections("tcp"))


@pytest.mark.timeout(180)
async def test_a_hundred_clients_opened_and_closed_leave_no_thread_socket_or_file(server: str, tmp_path: Path) -> None:
    closed: list[Client] = []  # kept: what they hold must be released by closing, not by the garbage collector

    async def cycle(n: int) -> None:
        ledger = f"sqlite:///{tmp_path / 'ledger.db'}" if n % 2 else None  # half of them open a ledger file
        async with Client(**options(server, ledger=ledger)) as client:  # type: ignore[arg-type]
            await asyncio.gather(*(client.chat("hi", model=MODEL) for _ in range(3)))  # three connections
            async for _ in client.stream("hi", model=MODEL):
                pass
        closed.append(client)

    await cycle(0)  # first use: imports, the loop's own resources
    await cycle(1)
    before = held()
    for n in range(100):
        await cycle(n)
    assert held() == before
    assert closed[-1].ledger.count() == 4 * 51  # a closed client's ledger file opens again to be read


@pytest.mark.timeout(180)
def test_a_hundred_sync_clients_opened_and_closed_leave_no_thread_socket_or_file(server: str) -> None:
    closed: list[SyncClient] = []

    def cycle() -> None:
        with SyncClient(**options(server)) as client:
            client.chat("hi", model=MODEL)
            assert "".join(chunk.delta for chunk in client.stream("hi", model=MODEL))
        closed.append(client)

    cycle()
    before = held()
    for _ in range(100):
        cycle()
    assert held() == before  # each one's loop thread joined, its default executor's threads too


@pytest.mark.parametrize("backend", ["native", "aiohttp", "httpx"])
def test_a_client_used_across_event_loops_closes_each_loop_s_sockets_as_it_ends(server: str, backend: str) -> None:
    http = {"base_url": server, "http": {"backend": backend}}
    client = Client(providers={"openai-compatible": http}, prices={MODEL: 1})

    async def calls() -> None:
        await asyncio.gather(*(client.chat("hi", model=MODEL) for _ in range(5)))

    before = held()
    for _ in range(4):
        asyncio.run(calls())  # ends its loop: the five connections it opened close with it
        assert held() == before
    asyncio.run(client.aclose())
    assert client.ledger.count() == 20


def test_the_model_ids_a_client_resolves_are_kept_within_a_bound() -> None:
    resolver = ModelResolver(aliases={"fast": "fake/echo"})
    for n in range(5000):  # a service passing its own callers' model names through
        assert resolver.resolve(f"openai/model-{n}") == ModelId("openai", f"model-{n}")
    assert resolver.resolve("fast") == ModelId("fake", "echo")
    assert len(resolver._resolved) <= 1024
