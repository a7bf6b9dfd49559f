"""Every server of the fleet, over every backend: chat, streams with each line end, embeddings, a gzip answer, a
2 MB answer, keep-alive, and many calls at once through a small pool. Every backend must give the same answers, and
they must be the app's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from interop.calls import BACKENDS, chat, client_for, embed, expected_chat, expected_vectors, stream
from interop.servers import PLAIN, Server

TEXTS = ["the first text", "第二", "and a third"]
CLOSES_EVERY_CONNECTION = {"http.server HTTP/1.0"}


async def answers(server: Server, backend: str) -> dict[str, Any]:
    """What one backend gets from one server."""
    async with client_for(server, backend) as client:
        sequential = [await chat(client, f"call {n}") for n in range(5)]
        got: dict[str, Any] = {
            "chat": [answer for answer, _ in sequential],
            "connections for 5 calls in a row": len({peer for _, peer in sequential}),
            "streams": [await stream(client, "stream me", variant) for variant in ("m", "m-crlf", "m-cr")],
            "embed": await embed(client, TEXTS),
            "gzip": (await chat(client, "packed", "m-gzip"))[0],
            "2 MB": (await chat(client, "big", "m-big"))[0],
        }
    async with client_for(server, backend, max_connections=8) as client:
        chats = asyncio.gather(*(chat(client, f"at once {n}") for n in range(40)))
        streams = asyncio.gather(*(stream(client, f"stream {n}") for n in range(15)))
        got["at once"] = ([answer for answer, _ in await chats], await streams)
    return got


def expected(server: Server) -> dict[str, Any]:
    return {
        "chat": [expected_chat(f"call {n}") for n in range(5)],
        "connections for 5 calls in a row": 5 if server.name in CLOSES_EVERY_CONNECTION else 1,
        "streams": [expected_chat("stream me", variant) for variant in ("m", "m-crlf", "m-cr")],
        "embed": expected_vectors(TEXTS),
        "gzip": expected_chat("packed", "m-gzip"),
        "2 MB": expected_chat("big", "m-big"),
        "at once": (
            [expected_chat(f"at once {n}") for n in range(40)],
            [expected_chat(f"stream {n}") for n in range(15)],
        ),
    }


@pytest.mark.parametrize("name", list(PLAIN))
async def test_every_backend_gets_the_apps_answers(fleet: dict[str, Server], name: str) -> None:
    server = fleet[name]
    want = expected(server)
    for backend in BACKENDS:
        got = await answers(server, backend)
        wrong = {key: got[key] for key in want if got[key] != want[key]}
        assert not wrong, f"{backend} over {name}: {str(wrong)[:2000]}"
