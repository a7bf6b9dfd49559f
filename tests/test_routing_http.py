"""Routing over real HTTP: OpenAI-compatible servers on loopback (aiohttp) that answer 429, 402, 503, hang, stream,
or count what they are sent; the client is the public `Client` with model groups over them."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from llmclient import Client, Message, RetryPolicy, StreamInterruptedError
from llmclient.routing import Deployment, ModelGroup

MODEL = "openai-compatible/m"


@dataclass
class Arrival:
    at: float
    body: dict[str, Any]
    tokens: int = 0
    cancelled: bool = False


@dataclass
class LLMServer:
    """An OpenAI-compatible chat endpoint whose answer the test sets; it logs every request it receives."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    cut_after_first_chunk: bool = False
    prompt_tokens: int = 5
    log: list[Arrival] = field(default_factory=list)
    in_flight: int = 0
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        arrival = Arrival(time.monotonic(), body)
        self.log.append(arrival)
        self.arrived.set()
        self.in_flight += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.status != 200:
                error = {"error": {"message": f"status {self.status}"}}
                return web.json_response(error, status=self.status, headers=self.headers)
            output = min(body.get("max_tokens") or 3, 1 + len(self.log) % 3)
            arrival.tokens = self.prompt_tokens + output
            usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": output}
            if body.get("stream"):
                return await self._stream(request, usage)
            choice = {"index": 0, "message": {"role": "assistant", "content": "x " * output}, "finish_reason": "stop"}
            return web.json_response({"model": "m", "choices": [choice], "usage": usage}, headers=self.headers)
        except asyncio.CancelledError:
            arrival.cancelled = True
            raise
        finally:
            self.in_flight -= 1

    async def _stream(self, request: web.Request, usage: dict[str, int]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        first = {"model": "m", "choices": [{"index": 0, "delta": {"content": "streamed"}}]}
        await response.write(f"data: {json.dumps(first)}\n\n".encode())
        if self.cut_after_first_chunk:
            request.transport.close()  # type: ignore[union-attr]
            return response
        last = {"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        return response


Start = Callable[..., Awaitable[LLMServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def start(**settings: Any) -> LLMServer:
        server = LLMServer(**settings)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", server.handle)
        runner = web.AppRunner(app, handler_cancellation=True)  # a closed connection cancels the handler
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        server.url = f"http://{host}:{port}/v1"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


def at(server: LLMServer, **settings: Any) -> Deployment:
    return Deployment(MODEL, base_url=server.url, price=0, **settings)


async def test_a_429_deployment_is_not_called_again_before_its_retry_after(serve: Start) -> None:
    busy, free = await serve(status=429, headers={"retry-after": "2"}), await serve()
    routes = {"chat": ModelGroup([at(busy), at(free)], strategy="priority")}
    async with Client(routes=routes) as client:
        replies = [await client.chat("hi", model="chat") for _ in range(5)]
        replies += await asyncio.gather(*(client.chat("hi", model="chat") for _ in range(10)))
        assert {r.deployment for r in replies} == {"chat@1"}
        assert len(busy.log) == 1
        busy.status = 200  # recovered: once its Retry-After has passed, the next call probes it back
        await asyncio.sleep(max(0.0, busy.log[0].at + 2.05 - time.monotonic()))
        probe = await client.chat("hi", model="chat")
    assert probe.deployment == "chat@0"
    assert len(busy.log) == 2 and busy.log[1].at - busy.log[0].at >= 2.0
    assert client.ledger.records[0].attempts == 2  # the first call: 429, then the other deployment


async def test_a_402_deployment_cools_down(serve: Start) -> None:
    broke, paid = await serve(status=402), await serve()
    routes = {"chat": ModelGroup([at(broke), at(paid)], strategy="priority")}
    async with Client(routes=routes) as client:
        replies = await asyncio.gather(*(client.chat("hi", model="chat") for _ in range(8)))
        replies.append(await client.chat("hi", model="chat"))
    assert {r.deployment for r in replies} == {"chat@1"}
    assert len(broke.log) <= 8 and len(paid.log) == 9  # the concurrent first wave may each find it; later ones not
    assert all(a.at <= broke.log[0].at + 0.5 for a in broke.log)


async def test_a_long_prompt_goes_to_the_larger_window_without_a_failed_attempt(serve: Start) -> None:
    small, large = await serve(), await serve()
    prices = {MODEL: {"input_cost_per_token": 0, "output_cost_per_token": 0, "max_input_tokens": 4096}}
    deployments = [Deployment(MODEL, base_url=small.url), at(large, context_window=32768)]
    routes = {"chat": ModelGroup(deployments, strategy="priority")}
    prompt = "lorem ipsum dolor sit amet " * 1200  # about 6,000 tokens
    async with Client(routes=routes, prices=prices) as client:
        reply = await client.chat(prompt, model="chat", max_tokens=16)
        short = await client.chat("short", model="chat", max_tokens=16)
    assert reply.deployment == "chat@1" and client.ledger.records[0].attempts == 1
    assert len(small.log) == 1 and small.log[0].body["messages"][0]["content"] == "short"
    assert short.deployment == "chat@0"


async def test_cancelling_during_a_fallback_leaves_no_request_behind(serve: Start) -> None:
    failing, hanging = await serve(status=503), await serve(delay=30)
    routes = {"chat": ModelGroup([at(failing), at(hanging)], strategy="priority")}
    async with Client(routes=routes, retry=RetryPolicy(max_retries=3, initial_backoff=0)) as client:
        task = asyncio.create_task(client.chat("hi", model="chat"))
        await hanging.arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if hanging.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        sent = len(failing.log) + len(hanging.log)
        await asyncio.sleep(0.2)
    assert hanging.in_flight == 0 and hanging.log[0].cancelled  # the connection was closed, the handler stopped
    assert len(failing.log) + len(hanging.log) == sent == 2  # nothing sent after the cancellation
    assert len(client.ledger) == 0  # nothing billed, nothing recorded


async def test_a_stream_that_failed_before_its_first_chunk_is_served_by_the_fallback(serve: Start) -> None:
    down, up = await serve(status=500), await serve()
    routes = {"chat": ModelGroup([at(down), at(up)], strategy="priority")}
    async with Client(routes=routes, retry=0) as client:
        stream = client.stream("hi", model="chat")
        text = "".join([chunk.delta async for chunk in stream])
    assert (text, stream.response.deployment) == ("streamed", "chat@1")
    assert client.ledger.records[-1].deployment == "chat@1"


async def test_a_stream_cut_after_its_first_chunk_does_not_move(serve: Start) -> None:
    cut, spare = await serve(cut_after_first_chunk=True), await serve()
    routes = {"chat": ModelGroup([at(cut), at(spare)], strategy="priority")}
    async with Client(routes=routes) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in client.stream("hi", model="chat"):
                pass
    assert caught.value.partial_text == "streamed" and spare.log == []


async def test_rate_limit_headers_send_calls_elsewhere_until_their_reset(serve: Start) -> None:
    spent = await serve(headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"})
    other = await serve()
    routes = {"chat": ModelGroup([at(spent), at(other)], strategy="priority")}
    async with Client(routes=routes) as client:
        served = [(await client.chat("hi", model="chat")).deployment for _ in range(4)]
    assert served == ["chat@0", "chat@1", "chat@1", "chat@1"]


def busiest_window(log: list[Arrival], per: float) -> tuple[int, int]:
    """The most requests and tokens the server saw in any window of `per` seconds (each window starting at an
    arrival, which is where a maximum starts)."""
    arrivals = sorted(log, key=lambda a: a.at)
    most_requests = most_tokens = 0
    for i, first in enumerate(arrivals):
        inside = [a for a in arrivals[i:] if a.at < first.at + per]
        most_requests = max(most_requests, len(inside))
        most_tokens = max(most_tokens, sum(a.tokens for a in inside))
    return most_requests, most_tokens


async def test_200_concurrent_calls_never_exceed_rpm_or_tpm_in_any_window(serve: Start) -> None:
    messages = [Message(role="user", content="Count these words for the rate limit test")]
    server = await serve()
    per, rpm, tpm = 0.5, 30, 400
    routes = {"limited": [at(server, rpm=rpm, tpm=tpm, per=per)]}
    async with Client(routes=routes) as client:
        # The server counts prompts as the client does (as OpenAI's tokenizer and tiktoken agree).
        server.prompt_tokens = (await client.count_tokens(messages, model="limited")).tokens
        replies = await asyncio.gather(*(client.chat(messages, model="limited", max_tokens=4) for _ in range(200)))
    assert len(replies) == len(server.log) == 200
    requests, tokens = busiest_window(server.log, per)
    assert requests <= rpm and tokens <= tpm
    assert requests >= rpm // 2 or tokens >= tpm // 2  # the limits were reached, not avoided by going slowly


async def test_three_processes_sharing_the_store_never_exceed_rpm_or_tpm(serve: Start, postgres_url: str) -> None:
    from llmclient.stores import PostgresStore

    PostgresStore(postgres_url).migrate()  # once here, rather than three processes racing for the advisory lock
    server = await serve()
    prompt = "Count these words for the rate limit test"
    per, rpm, tpm, calls = 1.0, 12, 110, 15
    async with Client(routes={"count": [at(server)]}) as counter:
        server.prompt_tokens = (await counter.count_tokens(prompt, model="count")).tokens
    args = [postgres_url, server.url, str(calls), str(rpm), str(tpm), str(per), prompt]
    run = (sys.executable, str(Path(__file__).parent / "stores" / "ratelimit_worker.py"), *args)
    pipe = asyncio.subprocess.PIPE
    workers = [await asyncio.create_subprocess_exec(*run, stdout=pipe, stderr=pipe) for _ in range(3)]
    outputs = await asyncio.gather(*(worker.communicate() for worker in workers))
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr.decode()[-3000:]
        assert json.loads(stdout.decode().splitlines()[-1]) == {"served": calls}
    assert len(server.log) == 3 * calls
    requests, tokens = busiest_window(server.log, per)
    assert requests <= rpm and tokens <= tpm
    assert requests >= rpm * 3 // 4 or tokens >= tpm * 3 // 4  # the limits were reached, not avoided by going slowly
