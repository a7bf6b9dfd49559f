"""Rate limits shared through PostgreSQL (the embedded server): the in-memory store's semantics, and stores
sharing them (tests/test_routing_http.py runs three against a loopback server)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llmclient import Client, ConfigurationError, RateLimitError
from llmclient.accounting.catalog import PriceTable
from llmclient.config import client_options
from llmclient.http import Timeouts
from llmclient.lifecycle.resolve import Drivers
from llmclient.routing import MemoryRateLimitStore, ModelGroup, Router
from llmclient.routing.ratelimit import Admission, RateLimit
from llmclient.stores import FleetDegradedWarning, PostgresRateLimitStore, PostgresStore, StoreUnavailableError, urls


async def test_admission_waits_settles_and_refunds_as_in_memory(postgres_url: str) -> None:
    store = PostgresRateLimitStore(postgres_url)
    limit = RateLimit(rpm=2, tpm=100, per=60.0)
    first = await store.try_acquire("chat@0", limit, tokens=60)
    assert isinstance(first, Admission)
    wait = await store.try_acquire("chat@0", limit, tokens=60)  # 120 tokens > 100
    assert isinstance(wait, float) and 59 < wait <= 60  # the first is in flight: a full window
    store.settle(first, tokens=30)  # it used 30
    assert store.flush(5)
    second = await store.try_acquire("chat@0", limit, tokens=60)
    assert isinstance(second, Admission)
    store.refund(second)  # a refund keeps the request, gives the tokens back
    assert store.flush(5)
    third = await store.try_acquire("chat@0", limit, tokens=10)  # 2 requests in the window: rpm reached
    assert isinstance(third, float) and 0 < third <= 60
    assert isinstance(await store.try_acquire("other", limit, tokens=60), Admission)  # windows are per key


async def test_a_window_frees_per_seconds_after_a_request_ended(postgres_url: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    clock = [now]
    store = PostgresRateLimitStore(PostgresStore(postgres_url, clock=lambda: clock[0]))
    limit = RateLimit(rpm=1, per=10.0)
    admission = await store.try_acquire("d", limit, tokens=0)
    assert isinstance(admission, Admission)
    clock[0] = now + timedelta(seconds=5)
    store.settle(admission, None)
    assert store.flush(5)
    clock[0] = now + timedelta(seconds=12)
    assert await store.try_acquire("d", limit, tokens=0) == pytest.approx(3.0)  # ended at 5 s: free at 15 s
    clock[0] = now + timedelta(seconds=15)
    assert isinstance(await store.try_acquire("d", limit, tokens=0), Admission)


async def test_a_dead_process_hold_ends_with_its_lease(postgres_url: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    clock = [now]
    store = PostgresRateLimitStore(PostgresStore(postgres_url, clock=lambda: clock[0]), lease=30)
    limit = RateLimit(rpm=1, per=10.0)
    assert isinstance(await store.try_acquire("d", limit, tokens=0), Admission)  # never settled
    clock[0] = now + timedelta(seconds=35)
    assert await store.try_acquire("d", limit, tokens=0) == pytest.approx(5.0)  # counted as ended at 30 s
    clock[0] = now + timedelta(seconds=40)
    assert isinstance(await store.try_acquire("d", limit, tokens=0), Admission)


async def test_rate_limit_headers_are_shared(postgres_url: str) -> None:
    one, other = PostgresRateLimitStore(postgres_url), PostgresRateLimitStore(PostgresStore(postgres_url))
    await one.learn("d", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"})
    wait = await other.try_acquire("d", RateLimit(), tokens=0)
    assert isinstance(wait, float) and 29 < wait <= 30


async def test_the_database_down_fails_closed_or_open_by_choice() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1
    closed = PostgresRateLimitStore(PostgresStore(url, timeout=1))
    with pytest.raises(StoreUnavailableError):
        await closed.try_acquire("d", RateLimit(rpm=1), tokens=0)
    opened = PostgresRateLimitStore(PostgresStore(url, timeout=1), fail_open=True)
    with pytest.warns(FleetDegradedWarning, match="fail_open"):
        admission = await opened.try_acquire("d", RateLimit(rpm=1), tokens=0)
    assert isinstance(admission, Admission)
    opened.settle(admission, 5)  # nothing to write
    assert opened.flush(0)


async def test_clients_share_a_group_s_window_through_its_url(postgres_url: str) -> None:
    group = {"deployments": [{"model": "fake/m", "rpm": 1, "per": 60}], "store": postgres_url, "max_wait": 0}
    async with Client(routes={"chat": group}) as one, Client(routes={"chat": group}) as other:
        await one.chat("hi", model="chat")
        with pytest.raises(RateLimitError, match="rate-limit capacity"):  # the other client's request counts
            await other.chat("hi", model="chat")


def test_a_router_takes_a_url_for_groups_without_a_store_of_their_own(postgres_url: str) -> None:
    own = MemoryRateLimitStore()
    routes = {"a": ModelGroup(["fake/m"], store=own), "b": ["fake/n"]}
    drivers = Drivers(None, transport=None, timeouts=Timeouts.from_value(None))
    with pytest.raises(ConfigurationError, match="open_store"):  # routing knows the interface, not PostgreSQL
        Router(routes, drivers, PriceTable.from_option(None), store=postgres_url)
    opened = urls.open_rate_limit_store
    router = Router(routes, drivers, PriceTable.from_option(None), store=postgres_url, open_store=opened)
    assert router.store is PostgresRateLimitStore.shared(postgres_url)
    assert router.stores == {"a@0": own, "b@0": router.store}


async def test_the_configuration_file_names_a_group_s_store(postgres_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[routes.chat]\nstore = "{postgres_url}"\nmax_wait = 0\n\n'
        '[[routes.chat.deployments]]\nmodel = "fake/m"\nname = "main"\nrpm = 1\n',
        encoding="utf-8",
    )
    async with Client(**client_options(config)) as one, Client(**client_options(config)) as other:
        await one.chat("hi", model="chat")
        with pytest.raises(RateLimitError):
            await other.chat("hi", model="chat")


async def test_running_totals_match_the_holds_after_settles_refunds_and_expiry(postgres_url: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    clock = [now]
    store = PostgresRateLimitStore(PostgresStore(postgres_url, clock=lambda: clock[0]))
    limit = RateLimit(rpm=100, tpm=10_000, per=10.0)
    for step in range(30):
        clock[0] = now + timedelta(seconds=step)
        admitted = await asyncio.gather(*(store.try_acquire("d", limit, tokens=50) for _ in range(3)))
        first, second, third = (a for a in admitted if isinstance(a, Admission))
        store.settle(first, 20)
        store.refund(second)
        store.settle(third, None)  # keeps its 50
        assert store.flush(5)
    [totals] = store.store.fetch(
        "SELECT w.held, w.held_tokens, (SELECT count(*) FROM llmclient_rate_holds), "
        "(SELECT sum(tokens) FROM llmclient_rate_holds) FROM llmclient_rate_windows w"
    )
    assert totals == (30, 700, 30, 700)  # the last 10 steps' holds (ended <= 19 s left at 29 s): 3 × (20 + 0 + 50)
