"""The retry policy decides what is retried and how long to wait."""

from __future__ import annotations

import dataclasses

import pytest

from llmclient import RetryPolicy
from llmclient.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=8.0, jitter=False)
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.backoff(1024) == policy.backoff(5000) == 8.0  # a policy that retries for ever keeps its cap


def test_jitter_stays_within_half_to_full_backoff() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    for attempt in range(1, 6):
        base = min(8.0, 2.0 ** (attempt - 1))
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert all(base / 2 <= wait <= base for wait in waits)
        assert len(set(waits)) > 1


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ServerError("x", status=503), True),
        (RateLimitError("x", status=429), True),
        (APIConnectionError("x"), True),
        (BadRequestError("x", status=400), False),
        (AuthenticationError("x", status=401), False),
        (InsufficientBalanceError("x", status=402), False),
        (StreamInterruptedError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_what_is_retried(error: Exception, retried: bool) -> None:
    assert RetryPolicy().should_retry(error) is retried


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retry_after=10)
    assert policy.wait_for(1, RateLimitError("x", retry_after=4.0)) == 4.0
    assert policy.should_retry(RateLimitError("x", retry_after=10.0))
    assert not policy.should_retry(RateLimitError("x", retry_after=11.0))


def test_invalid_policies_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    assert RetryPolicy().with_max_retries(None).max_retries == 2
    assert RetryPolicy().with_max_retries(5).max_retries == 5


def test_the_documented_defaults() -> None:
    # docs/errors.md ("Retries") and docs/quickstart.md promise these; a changed default changes every client.
    policy = RetryPolicy()
    assert (policy.max_retries, policy.initial_backoff, policy.max_backoff) == (2, 0.5, 8.0)
    assert (policy.jitter, policy.max_retry_after) == (True, 60.0)
    assert policy.should_retry(RateLimitError("x", retry_after=60.0))
    assert not policy.should_retry(RateLimitError("x", retry_after=60.5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_retries = 5  # type: ignore[misc]  # shared by every call of a client: it must not change


def test_negative_backoffs_are_refused_and_zero_is_allowed() -> None:
    with pytest.raises(ValueError, match="backoff must be >= 0"):
        RetryPolicy(initial_backoff=-0.1)
    with pytest.raises(ValueError, match="backoff must be >= 0"):
        RetryPolicy(max_backoff=-1)
    policy = RetryPolicy(max_retries=0, initial_backoff=0, max_backoff=0, jitter=False)
    assert policy.max_retries == 0 and policy.backoff(3) == 0


def test_without_retry_after_the_wait_is_the_backoff() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=8.0, jitter=False)
    assert [policy.wait_for(n, ServerError("x", status=503)) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert policy.wait_for(2, RateLimitError("x")) == 1.0  # a 429 without Retry-After backs off too


def test_jitter_reaches_the_whole_range() -> None:
    # Not only within [backoff/2, backoff] but spread over it: 400 draws all in one half would be a broken jitter.
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    waits = [policy.backoff(1) for _ in range(400)]
    assert min(waits) < 0.6 and max(waits) > 0.9
