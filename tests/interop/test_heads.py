"""An answer whose header line never ends, on every backend: sent as fast as the client reads it, or a byte at a
time. Each must end with a typed error, holding under 1 MiB; the native backend within the read timeout even when
every byte resets it (aiohttp and httpx are ended by the call's deadline then)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from interop.calls import BACKENDS, PRICES
from interop.servers import Server
from llmclient import APITimeoutError, Client, LLMClientError, Timeouts

READ_S, TOTAL_S = 0.5, 2.0


def client_of(server: Server, backend: str) -> Client:
    provider = {"base_url": server.url, "http": {"backend": backend, "trust_env": False}}
    timeout = Timeouts(connect=5, read=READ_S, total=TOTAL_S)
    return Client(providers={"openai-compatible": provider}, prices=PRICES, retry=0, timeout=timeout)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_endless_header_line_sent_fast(fleet: dict[str, Server], backend: str) -> None:
    async with client_of(fleet["endless header"], backend) as client:
        with pytest.raises(LLMClientError):  # imports and first-call set-up: not measured
            await client.chat("ping", model="openai-compatible/m")
        tracemalloc.start()
        try:
            with pytest.raises(LLMClientError) as caught:
                await client.chat("ping", model="openai-compatible/m")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert not isinstance(caught.value, APITimeoutError), caught.value  # refused for its size, not its time
    assert peak < 1 << 20, f"{peak:,} bytes"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_endless_header_line_sent_a_byte_at_a_time(fleet: dict[str, Server], backend: str) -> None:
    started = time.monotonic()
    async with client_of(fleet["endless header, slow"], backend) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.chat("ping", model="openai-compatible/m")
    elapsed = time.monotonic() - started
    if backend == "native":  # the read timeout, though a byte came every 50 ms
        assert "read timeout" in str(caught.value) and elapsed < TOTAL_S, (elapsed, caught.value)
    else:  # every byte resets their read timeout: the call's deadline ends it
        assert elapsed >= TOTAL_S * 0.9, (elapsed, caught.value)
