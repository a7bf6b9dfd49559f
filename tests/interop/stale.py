"""Stale keep-alive: calls separated by a blocking call longer than the server's keep-alive timeout, so the server
closes the idle connection while the event loop cannot see it (issue 25: 10 of 20 calls failed on every server)."""

from __future__ import annotations

import time

from interop.calls import BACKENDS, chat, client_for, expected_chat, in_threads
from interop.servers import KEEPALIVE_S, PLAIN, Server
from llmclient import LLMClientError

CALLS = int(__import__("os").environ.get("STALE_CALLS", 20))


async def blocked_loop_calls(server: Server, backend: str) -> tuple[int, int]:
    """20 calls, retries off, the loop blocked between them: how many gave the right answer, over how many
    connections (each one more than the first is a connection the server closed while the loop was blocked)."""
    right, peers = 0, set()
    async with client_for(server, backend) as client:
        for n in range(CALLS):
            try:
                answer, peer = await chat(client, f"call {n}")
            except LLMClientError:
                continue
            right += answer == expected_chat(f"call {n}")
            peers.add(peer)
            # Long enough for waitress too: it looks for idle connections when its loop next wakes after 1 s.
            time.sleep(KEEPALIVE_S + 0.6)  # noqa: ASYNC251 - the point: a blocking call between two requests
    return right, len(peers)


def blocked_loop_runs(fleet: dict[str, Server]) -> dict[str, tuple[int, int] | BaseException]:
    """Every plain server on every backend, each on its own loop and thread, all at once."""
    jobs = {
        f"{backend} over {name}": (lambda server=fleet[name], backend=backend: blocked_loop_calls(server, backend))
        for name in PLAIN
        for backend in BACKENDS
    }
    return in_threads(jobs)
