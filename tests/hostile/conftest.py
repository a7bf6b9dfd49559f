"""Fixtures of the hostile suite: a scripted loopback server and clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hostile.server import HostileServer, Reply, Request, debug_logs  # noqa: F401 - a fixture


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[HostileServer]]]:
    servers: list[HostileServer] = []

    async def start(script: Callable[[Request], Reply] | Reply) -> HostileServer:
        server = HostileServer(script if callable(script) else (lambda _: script))
        servers.append(await server.start())
        return server

    yield start
    for server in servers:
        await server.close()
