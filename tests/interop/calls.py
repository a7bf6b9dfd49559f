"""What the interop tests ask of a server through llmclient, once per backend, and what the app must answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from interop.app import reply_text, usage, vector
from interop.servers import Server
from llmclient import Client

BACKENDS = ("native", "aiohttp", "httpx")
VARIANTS = ("m", "m-cr", "m-crlf", "m-gzip", "m-big")
PRICES = {f"openai-compatible/{variant}": 0 for variant in VARIANTS}
T = TypeVar("T")


def client_for(server: Server, backend: str, **http: Any) -> Client:
    """A client of `server` sending through `backend`, retries off, the environment's proxies ignored."""
    options: dict[str, Any] = {"backend": backend, "trust_env": False, **http}
    if server.ca is not None:
        options.setdefault("verify", str(server.ca))
    provider = {"base_url": server.url, "http": options}
    return Client(providers={"openai-compatible": provider}, prices=PRICES, retry=0)


@dataclass(frozen=True)
class Chat:
    text: str
    usage: tuple[int, int]
    finish: str | None


async def chat(client: Client, prompt: str, variant: str = "m") -> tuple[Chat, str | None]:
    """One chat answer, and the connection it came over (`peer-<client port>`, from the answer's request id)."""
    reply = await client.chat(prompt, model=f"openai-compatible/{variant}")
    return Chat(
        reply.text, (reply.usage.input_tokens, reply.usage.output_tokens), reply.finish_reason
    ), reply.request_id


async def stream(client: Client, prompt: str, variant: str = "m") -> Chat:
    text, tokens, finish = [], (0, 0), None
    async for chunk in client.stream(prompt, model=f"openai-compatible/{variant}"):
        text.append(chunk.delta)
        finish = chunk.finish_reason or finish
        if chunk.usage is not None:
            tokens = (chunk.usage.input_tokens, chunk.usage.output_tokens)
    return Chat("".join(text), tokens, finish)


async def embed(client: Client, texts: list[str]) -> list[list[float]]:
    reply = await client.embed(texts, model="openai-compatible/m")
    return [[float(x) for x in row] for row in reply.vectors]


def expected_chat(prompt: str, variant: str = "m") -> Chat:
    text = reply_text(prompt, variant)
    counted = usage(prompt, text)
    return Chat(text, (counted["prompt_tokens"], counted["completion_tokens"]), "stop")


def expected_vectors(texts: list[str]) -> list[list[float]]:
    return [vector(text, index) for index, text in enumerate(texts)]


def in_threads(jobs: dict[str, Callable[[], Coroutine[Any, Any, T]]]) -> dict[str, T | BaseException]:
    """Run each job on its own event loop in its own thread, all at once; a job's exception is its result."""
    results: dict[str, T | BaseException] = {}

    def run(name: str, job: Callable[[], Coroutine[Any, Any, T]]) -> None:
        try:
            results[name] = asyncio.run(job())
        except BaseException as exc:  # reported by the test, with the others' results
            results[name] = exc

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
