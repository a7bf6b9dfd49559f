"""The one rule of issue 15 across every public entry point: against a server that answers everything with a body
nested 100,000 levels deep, each call ends in an llmclient error, clean of the key, and nothing billed goes
unrecorded. Also: one `Client` reused across `asyncio.run()` calls."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

from hostile.server import DEEP, KEY, PRICES, Reply, assert_clean, client_for
from llmclient import Client, LLMClientError, SyncClient


class Answer(BaseModel):
    text: str


async def drain(stream: Any) -> None:
    async for _ in stream:
        pass


ENTRY_POINTS: dict[str, Callable[[Client], Awaitable[Any]]] = {
    "chat": lambda c: c.chat("hi", model="openai-compatible/m"),
    "chat-structured": lambda c: c.chat("hi", model="openai-compatible/m", response_model=Answer),
    "stream": lambda c: drain(c.stream("hi", model="openai-compatible/m")),
    "run": lambda c: c.run("hi", model="openai-compatible/m", tools=[len]),
    "embed": lambda c: c.embed(["a", "b"], model="openai-compatible/m"),
    "similarity": lambda c: c.similarity("a", ["b"], model="openai-compatible/m"),
    "search": lambda c: c.search("a", ["b", "c"], model="openai-compatible/m"),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
async def test_every_entry_point_fails_typed_and_clean_against_a_hostile_server(serve, entry: str, debug_logs) -> None:
    server = await serve(Reply(200, (DEEP,), {"content-type": "application/json"}))
    async with client_for(server) as client:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the rule is checked below: only llmclient errors
            await ENTRY_POINTS[entry](client)
    assert_clean(caught.value, debug_logs)
    # Every request answered with a 2xx was billed, so each logical call that sent one has exactly one record.
    assert len(client.ledger) == (1 if server.requests else 0)
    assert all(record.attempts == len(server.requests) for record in client.ledger.records)


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the pool keeps the connection of the first loop

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        usage = {"prompt_tokens": 3, "completion_tokens": 1}
        body = json.dumps({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], "usage": usage})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def threaded_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


# The first loop closes with the client's pooled connection open; Python reports that socket when it is collected.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_one_client_works_across_asyncio_run_calls(threaded_server: str) -> None:
    client = Client(providers={"openai-compatible": {"base_url": threaded_server, "api_key": KEY}}, prices=PRICES)
    assert asyncio.run(client.chat("hi", model="openai-compatible/m")).text == "hi"
    assert asyncio.run(client.chat("hi", model="openai-compatible/m")).text == "hi"  # a new loop, new connections
    assert len(client.ledger) == 2
    asyncio.run(client.aclose())
    gc.collect()  # the first loop's socket is reported here, under this test's filters, not in a later test


def test_the_sync_client_follows_the_rule_too(threaded_server: str) -> None:
    options = {"openai-compatible": {"base_url": threaded_server, "api_key": KEY}}
    with SyncClient(providers=options) as client, pytest.raises(LLMClientError) as caught:
        client.chat(None, model="openai-compatible/m")  # type: ignore[arg-type]
    assert_clean(caught.value)
