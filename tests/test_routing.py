"""Routing on the fake driver: strategies, which errors move, attempt bounds, cooldowns, where the deployment is
reported (response, ledger, errors), rate-limit state, the configuration file and the command line."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from llmclient import (
    AuthenticationError,
    BadRequestError,
    ChatRequest,
    ChatResponse,
    Client,
    ConfigurationError,
    FakeDriver,
    InsufficientBalanceError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SQLiteLedger,
)
from llmclient.accounting.ledger import SQLITE_SCHEMA
from llmclient.cli import main
from llmclient.config import client_options
from llmclient.errors import parse_retry_after
from llmclient.routing import Cooldown, Deployment, ModelGroup, moves
from llmclient.routing.groups import Health
from llmclient.routing.ratelimit import MemoryRateLimitStore, RateLimit, RateLimitHint, parse_duration

NO_WAIT = RetryPolicy(max_retries=2, initial_backoff=0, jitter=False)


def fake(*replies: Any) -> FakeDriver:
    return FakeDriver(replies=list(replies))


def group(*drivers: FakeDriver, strategy: str = "priority", **kwargs: Any) -> dict[str, ModelGroup]:
    deployments = [Deployment(f"fake/m{i}", driver=d) for i, d in enumerate(drivers)]
    return {"chat": ModelGroup(deployments, strategy=strategy, **kwargs)}  # type: ignore[arg-type]


async def test_priority_serves_in_order_and_reports_the_deployment_everywhere() -> None:
    async with Client(routes=group(fake("one"), fake("two"))) as client:
        reply = await client.chat("hi", model="chat")
    assert (reply.text, reply.deployment, reply.model) == ("one", "chat@0", "m0")
    record = client.ledger.records[-1]
    assert (record.deployment, record.provider, record.model, record.attempts) == ("chat@0", "fake", "m0", 1)
    assert client.ledger.by_deployment()["chat@0"].calls == 1


@pytest.mark.parametrize(
    ("error", "moved"),
    [
        (RateLimitError("slow", status=429, retry_after=30), True),
        (InsufficientBalanceError("Insufficient Balance", status=402), True),
        (ServerError("down", status=503), True),
        (AuthenticationError("bad key", status=401), False),
        (BadRequestError("bad", status=400), False),
    ],
)
async def test_what_moves_to_the_next_deployment(error: Exception, moved: bool) -> None:
    second = fake("from the second")
    async with Client(routes=group(fake(error), second), retry=NO_WAIT) as client:
        if moved:
            reply = await client.chat("hi", model="chat")
            assert (reply.text, reply.deployment) == ("from the second", "chat@1")
            assert client.ledger.records[-1].attempts == 2
        else:
            with pytest.raises(type(error)) as caught:
                await client.chat("hi", model="chat")
            assert caught.value.deployment == "chat@0"
            assert "deployment chat@0" in str(caught.value)
            assert second.requests == []
    assert moves(error) is moved


async def test_attempts_are_one_per_deployment_plus_the_retries() -> None:
    down = [fake(*(ServerError("down", status=500) for _ in range(9))) for _ in range(3)]
    async with Client(routes=group(*down), retry=NO_WAIT) as client:
        with pytest.raises(ServerError) as caught:
            await client.chat("hi", model="chat")
    # 3 deployments once each, then the policy's 2 retries: 5 requests, never 3 × 3.
    assert sum(len(d.requests) for d in down) == 5
    assert caught.value.deployment is not None


async def test_a_rate_limited_deployment_is_skipped_until_its_retry_after() -> None:
    first, second = fake(RateLimitError("slow", status=429, retry_after=60)), fake()
    async with Client(routes=group(first, second)) as client:
        replies = [await client.chat(f"hi {i}", model="chat") for i in range(5)]
    assert len(first.requests) == 1
    assert [r.deployment for r in replies] == ["chat@1"] * 5


@pytest.mark.parametrize("asked", ["999999", "inf"])
async def test_a_retry_after_of_days_or_forever_cools_down_for_at_most_longest(asked: str) -> None:
    retry_after = parse_retry_after({"retry-after": asked})
    assert retry_after is not None and retry_after >= 999999  # what the server said
    assert Cooldown().period(Health(), RateLimitError("slow", status=429, retry_after=retry_after)) == 600.0
    only = fake(RateLimitError("slow", status=429, retry_after=retry_after), "back again")
    routes = {"chat": ModelGroup([Deployment("fake/a", driver=only)], cooldown=Cooldown(longest=0.2))}
    async with Client(routes=routes, retry=NO_WAIT) as client:
        with pytest.raises(RateLimitError):
            await client.chat("hi", model="chat")
        await asyncio.sleep(0.25)  # longest passed: probed back, though the server asked for far longer
        assert (await client.chat("hi", model="chat")).text == "back again"


async def test_a_group_whose_deployments_all_cool_down_fails_fast_with_retry_after() -> None:
    only = fake(InsufficientBalanceError("Insufficient Balance", status=402))
    async with Client(routes=group(only), retry=NO_WAIT) as client:
        with pytest.raises(InsufficientBalanceError):
            await client.chat("hi", model="chat")
        with pytest.raises(RateLimitError, match="cooling down") as caught:
            await client.chat("hi", model="chat")
    assert caught.value.retry_after is not None and caught.value.retry_after > 200  # 402: out for 5 minutes
    assert len(only.requests) == 1


async def test_fallback_groups_serve_when_the_group_is_out() -> None:
    routes: dict[str, Any] = {
        "chat": ModelGroup([Deployment("fake/a", driver=fake(ServerError("down", status=500)))], fallbacks=["big"]),
        "big": [Deployment("fake/b", driver=fake("big answer"))],
    }
    async with Client(routes=routes, retry=0) as client:
        reply = await client.chat("hi", model="chat")
    assert (reply.text, reply.deployment) == ("big answer", "big@0")


async def test_weighted_spreads_by_weight_and_never_picks_weight_zero() -> None:
    routes = {
        "chat": [
            Deployment("fake/a", weight=3),
            Deployment("fake/b", weight=1),
            Deployment("fake/c", weight=0),
        ]
    }
    async with Client(routes=routes) as client:
        served = Counter([(await client.chat("x", model="chat")).deployment for _ in range(400)])
    assert served["chat@2"] == 0
    assert 240 < served["chat@0"] < 360  # 300 expected; far outside binomial noise otherwise


class Gate(FakeDriver):
    """A fake that holds every request until released, so calls pile up in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await self.open.wait()
        return await super().chat(request)


async def test_least_busy_sends_to_the_deployment_with_fewest_in_flight() -> None:
    gates = [Gate(), Gate()]
    async with Client(routes=group(*gates, strategy="least-busy")) as client:
        tasks = [asyncio.create_task(client.chat("x", model="chat")) for _ in range(6)]
        await asyncio.sleep(0.05)
        assert [len(g.requests) for g in gates] == [0, 0]
        for gate in gates:
            gate.open.set()
        replies = await asyncio.gather(*tasks)
    assert Counter(r.deployment for r in replies) == {"chat@0": 3, "chat@1": 3}


class Slow(FakeDriver):
    async def chat(self, request: ChatRequest) -> ChatResponse:
        await asyncio.sleep(0.02)
        return await super().chat(request)


async def test_latency_prefers_the_faster_deployment_once_both_are_measured() -> None:
    async with Client(routes=group(Slow(), FakeDriver(), strategy="latency")) as client:
        served = [(await client.chat("x", model="chat")).deployment for _ in range(10)]
    assert served[2:] == ["chat@1"] * 8  # the first two measure each deployment once


async def test_a_deployment_price_overrides_the_table_and_the_cost_strategy_uses_it() -> None:
    routes: dict[str, Any] = {
        "chat": ModelGroup(
            [Deployment("fake/x", name="dear", price=10), Deployment("fake/x", name="cheap", price=1)],
            strategy="cost",
        )
    }
    async with Client(routes=routes) as client:
        reply = await client.chat("one two", model="chat")
    assert reply.deployment == "cheap"
    assert reply.cost is not None and str(reply.cost.total) == "0.000006"  # 6 tokens at $1 per million


async def test_context_window_moves_only_to_a_larger_window() -> None:
    prompt = "word " * 300
    routes = {"chat": ModelGroup([Deployment("fake/s", context_window=100), Deployment("fake/l", context_window=4000)])}
    async with Client(routes=routes) as client:
        reply = await client.chat(prompt, model="chat")
    assert reply.deployment == "chat@1"
    assert client.ledger.records[-1].attempts == 1


async def test_streams_fall_back_before_their_first_chunk() -> None:
    async with Client(routes=group(fake(ServerError("down", status=502)), fake("streamed")), retry=0) as client:
        stream = client.stream("hi", model="chat")
        text = "".join([chunk.delta async for chunk in stream])
    assert (text, stream.response.deployment) == ("streamed", "chat@1")


async def test_a_group_name_counts_tokens_and_is_the_default_model() -> None:
    async with Client(routes=group(fake("ok")), default_model="chat") as client:
        assert (await client.chat("hi")).deployment == "chat@0"
        assert (await client.count_tokens("hello world", model="chat")).tokens > 0
        assert client.resolve("chat").model == "m0"


def test_bad_routes_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown fallbacks"):
        Client(routes={"chat": ModelGroup(["fake/a"], fallbacks=["nope"])})
    with pytest.raises(ConfigurationError, match="strategy"):
        Client(routes={"chat": ModelGroup(["fake/a"], strategy="fastest")})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="named"):
        Client(routes={"chat": [Deployment("fake/a", name="x"), Deployment("fake/b", name="x")]})


async def test_memory_store_limits_requests_and_tokens_and_learns_headers() -> None:
    store, limit = MemoryRateLimitStore(), RateLimit(rpm=2, tpm=100, per=60.0)
    first = await store.try_acquire("d", limit, 10)
    second = await store.try_acquire("d", limit, 10)
    assert not isinstance(first, float) and not isinstance(second, float)
    wait = await store.try_acquire("d", limit, 10)
    assert wait == 60.0  # both in flight: free no sooner than a window after they end
    store.settle(first, 5)
    assert isinstance(await store.try_acquire("d", limit, 10), float)
    await store.learn("e", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"})
    learned = await store.try_acquire("e", RateLimit(rpm=1000), 1)
    assert isinstance(learned, float) and 350 < learned <= 360
    assert (parse_duration("1h2m3.5s"), parse_duration("20ms"), parse_duration("7")) == (3723.5, 0.02, 7.0)


async def test_anthropics_rate_limit_headers_narrow_the_limit_too() -> None:
    # https://platform.claude.com/docs/en/api/rate-limits#response-headers: resets are RFC 3339 times.
    reset = datetime.datetime.fromtimestamp(time.time() + 120, tz=datetime.timezone.utc).isoformat()
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset.replace("+00:00", "Z"),
        "anthropic-ratelimit-tokens-remaining": "900",
        "anthropic-ratelimit-tokens-reset": "not a time",
    }
    hint = RateLimitHint.from_headers(headers)
    assert (hint.requests, hint.tokens, hint.tokens_reset) == (0, 900, 1.0)
    assert 110 < hint.requests_reset <= 120
    store = MemoryRateLimitStore()
    await store.learn("claude", headers)
    wait = await store.try_acquire("claude", RateLimit(rpm=1000), 1)
    assert isinstance(wait, float) and 110 < wait <= 120


async def test_rate_limits_fail_fast_when_waiting_is_off() -> None:
    routes = {"chat": ModelGroup([Deployment("fake/a", rpm=1)], max_wait=0)}
    async with Client(routes=routes) as client:
        await client.chat("hi", model="chat")
        with pytest.raises(RateLimitError, match="capacity") as caught:
            await client.chat("hi", model="chat")
    assert caught.value.status is None  # refused here, nothing sent
    assert len(client.ledger) == 1


def test_sqlite_ledger_adds_the_deployment_column_to_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = SQLITE_SCHEMA[: SQLITE_SCHEMA.index(",\n    deployment")] + "\n);"  # the first version's table
    assert "deployment" not in before and "cache_write" not in before
    with sqlite3.connect(path) as db:
        db.executescript(before)
        db.execute(
            "INSERT INTO calls (timestamp, provider, model, kind, input_tokens, cached_input_tokens, output_tokens,"
            " reasoning_tokens, estimated, latency_s, attempts, tags) VALUES (1, 'fake', 'echo', 'chat', 1, 0, 2, 0,"
            " 0, 0.1, 1, '[]')"
        )
    db.close()
    ledger = SQLiteLedger(path)
    ledger.add(dataclasses.replace(next(iter(ledger)), deployment="chat@0"))
    ledger.close()
    reopened = SQLiteLedger(path)
    assert [r.deployment for r in reopened] == [None, "chat@0"]
    assert set(reopened.by_deployment()) == {"fake", "chat@0"}
    reopened.close()


CONFIG = """
[routes.chat]
strategy = "priority"

[[routes.chat.deployments]]
model = "fake/first"
name = "primary"
price = 0

[[routes.chat.deployments]]
model = "fake/second"
"""


def test_config_file_routes_reach_the_client_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    ledger = tmp_path / "ledger.db"
    monkeypatch.setenv("LLMCLIENT_CONFIG", str(config))
    assert set(client_options()["routes"]) == {"chat"}
    assert main(["--ledger", str(ledger), "chat", "hello", "-m", "chat", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert (reply["deployment"], reply["message"]["content"]) == ("primary", "You said: hello")
    assert main(["--ledger", str(ledger), "cost", "--by", "deployment", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"]["primary"]["calls"] == 1


def test_a_route_with_a_key_needs_a_private_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[routes.chat]]\nmodel = "openai/gpt-4o"\napi_key = "sk-test-123456"\n', encoding="utf-8")
    config.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        client_options(config)
