"""An attempt that may have been billed is recorded whatever happens after it: a timeout after the request left,
then a 500 or a 401 on the retry or on another deployment. The record has an unknown cost (never 0), and the
budget's reservation is settled (kept as spent), not released."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llmclient import (
    APITimeoutError,
    AuthenticationError,
    Client,
    FakeDriver,
    LLMClientError,
    RetryPolicy,
    ServerError,
    StreamInterruptedError,
)
from llmclient.routing import Deployment, ModelGroup

PRICES = {"fake/paid": 1, "fake/a": 1, "fake/b": 1}  # USD per million tokens in and out
RETRY = RetryPolicy(max_retries=1, initial_backoff=0, max_backoff=0, jitter=False)


def timed_out(sent: bool = True) -> APITimeoutError:
    return APITimeoutError("read timed out", request_sent=None if sent else False)


@pytest.mark.parametrize(
    "then",
    [ServerError("upstream broke", status=500, retryable=True), AuthenticationError("key revoked", status=401)],
)
async def test_a_timeout_then_a_failed_retry_is_recorded_and_its_reservation_kept(then: LLMClientError) -> None:
    client = Client(providers={"fake": FakeDriver(replies=[timed_out(), then])}, prices=PRICES, retry=RETRY)
    async with client.budget(usd="1") as budget:
        with pytest.raises(type(then)):
            await client.chat("one two three", model="fake/paid", max_tokens=10)
    [record] = client.ledger.records
    assert (record.cost, record.attempts, record.error) == (None, 2, type(then).__name__)
    assert record.usage.estimated and record.usage.input_tokens == 3
    worst_case = Decimal(3 + 10) / 1_000_000
    assert (budget.spent, budget.reserved, budget.calls) == (worst_case, 0, 1)  # settled at the reservation


async def test_a_timeout_that_never_sent_its_request_is_released_as_before() -> None:
    client = Client(providers={"fake": FakeDriver(replies=[timed_out(sent=False), ServerError("x", status=500)])},
                    prices=PRICES, retry=RETRY)  # fmt: skip
    async with client.budget(usd="1") as budget:
        with pytest.raises(ServerError):
            await client.chat("one two three", model="fake/paid", max_tokens=10)
    assert len(client.ledger) == 0 and (budget.spent, budget.reserved) == (0, 0)


async def test_a_timeout_then_a_401_from_the_fallback_deployment_is_recorded() -> None:
    deployments = [
        Deployment("fake/a", name="slow", driver=FakeDriver(replies=[timed_out()])),
        Deployment("fake/b", name="locked", driver=FakeDriver(replies=[AuthenticationError("no", status=401)])),
    ]
    client = Client(routes={"chat": ModelGroup(deployments, strategy="priority")}, prices=PRICES, retry=0)
    async with client.budget(usd="1") as budget:
        with pytest.raises(AuthenticationError):
            await client.chat("one two three", model="chat", max_tokens=10, temperature=0)
    [record] = client.ledger.records
    assert (record.cost, record.attempts, record.deployment) == (None, 2, "locked")
    assert budget.spent > 0 and budget.reserved == 0


async def test_an_answer_after_a_timeout_has_an_unknown_cost_the_timed_out_request_may_be_billed() -> None:
    client = Client(providers={"fake": FakeDriver(replies=[timed_out(), "fine"])}, prices=PRICES, retry=RETRY)
    async with client.budget(usd="1") as budget:
        reply = await client.chat("one two three", model="fake/paid", max_tokens=10)
    assert reply.text == "fine" and reply.cost is None
    [record] = client.ledger.records
    assert (record.cost, record.attempts, record.error) == (None, 2, None)
    assert budget.spent == Decimal(3 + 10) / 1_000_000  # the reservation: unknown is not free


async def test_a_stream_whose_first_attempt_timed_out_is_recorded_when_the_retry_fails() -> None:
    driver = FakeDriver(replies=[timed_out(), ServerError("x", status=503, retryable=True)])
    client = Client(providers={"fake": driver}, prices=PRICES, retry=RETRY)
    with pytest.raises((ServerError, StreamInterruptedError)):
        async for _ in client.stream("one two three", model="fake/paid", max_tokens=10):
            pass
    [record] = client.ledger.records
    assert (record.cost, record.attempts, record.kind) == (None, 2, "stream")
