"""Token-aware rate limits per deployment: requests and tokens per window, behind a small store interface.

A request takes one request and its worst case in tokens (the counted prompt plus `max_tokens`) when it is
admitted; when it ends, its tokens are corrected to the usage the provider reported and its window starts then. A
request therefore occupies its window from admission until `per` seconds after it ended, so however long the
network takes, two requests the limit keeps apart reach the server at least `per` seconds apart:

```python
import asyncio
from llmclient.routing.ratelimit import MemoryRateLimitStore, RateLimit

store, limit = MemoryRateLimitStore(), RateLimit(rpm=2, tpm=100, per=60.0)
first = await store.try_acquire("chat@0", limit, tokens=60)
assert not isinstance(first, float)
assert isinstance(await store.try_acquire("chat@0", limit, tokens=60), float)   # 120 tokens > 100: wait
store.settle(first, tokens=30)                                                  # it used 30
assert not isinstance(await store.try_acquire("chat@0", limit, tokens=60), float)
```

The provider's own view narrows the limit until its reset (`learn`): OpenAI's (and compatible servers')
`x-ratelimit-remaining-requests`, `-tokens` and `-reset-*` headers, or Anthropic's `anthropic-ratelimit-requests-*`
and `-tokens-*` ones (`RateLimitHint.from_headers` reads both). The in-memory store serves one process; a store
shared by several processes implements the same four methods (`RateLimitStore`).
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class RateLimit:
    """A deployment's limits: at most `rpm` requests and `tpm` tokens in any window of `per` seconds.

    Args:
        rpm: Requests per window (None: unlimited).
        tpm: Tokens per window, prompt plus output (None: unlimited).
        per: The window's length in seconds (60: per minute, as providers state them).
    """

    rpm: int | None = None
    tpm: int | None = None
    per: float = 60.0

    def __post_init__(self) -> None:
        if (self.rpm is not None and self.rpm < 1) or (self.tpm is not None and self.tpm < 1) or self.per <= 0:
            raise ValueError("rpm and tpm must be >= 1 and per > 0")


@dataclass(eq=False)
class Admission:
    """One admitted request: what it holds in its deployment's window until `settle` (or `refund`)."""

    key: str
    tokens: int
    id: int = 0


class RateLimitStore(Protocol):
    """Where rate-limit state lives: in this process (`MemoryRateLimitStore`) or shared between processes."""

    async def try_acquire(self, key: str, limit: RateLimit, tokens: int) -> Admission | float:
        """Take one request and `tokens` for `key` now, or return the seconds until they could fit."""
        ...

    def settle(self, admission: Admission, tokens: int | None) -> None:
        """The request ended: its tokens become `tokens` (None keeps the reservation) and its window starts now.

        Returns at once (it runs in the pipeline's synchronous finish): a store that writes to a database queues it.
        """
        ...

    def refund(self, admission: Admission) -> None:
        """The request was answered without being processed: keep the request, give its tokens back."""
        ...

    async def learn(self, key: str, headers: Mapping[str, str]) -> None:
        """Narrow `key`'s limit to what the provider's rate-limit headers say is left until their reset."""
        ...


@dataclass
class _Window:
    in_flight: dict[int, int] = field(default_factory=dict)  # admission id → tokens held
    in_flight_tokens: int = 0
    ended: deque[tuple[float, int]] = field(default_factory=deque)  # (when it ended, tokens), oldest first
    ended_tokens: int = 0
    # The provider's word: requests / tokens left, until when that holds, and requests admitted since it was said.
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    requests_reset: float = 0.0
    tokens_reset: float = 0.0
    admitted_since: int = 0

    def expire(self, horizon: float) -> None:
        ended = self.ended
        while ended and ended[0][0] <= horizon:
            self.ended_tokens -= ended.popleft()[1]


class MemoryRateLimitStore:
    """Rate-limit state in this process (one event loop). Running totals make an admission O(1) while the limits
    are not reached; only a refused one looks through the window for when it frees up."""

    def __init__(self) -> None:
        # One window per key (a deployment of the configuration); each holds the requests in flight and those that
        # ended in the last `per` seconds, expired on each admission: bounded by the limit's own rate.
        self._windows: dict[str, _Window] = {}
        self._ids = itertools.count(1)

    async def try_acquire(self, key: str, limit: RateLimit, tokens: int) -> Admission | float:
        now = time.monotonic()
        window = self._windows.get(key) or self._windows.setdefault(key, _Window())
        window.expire(now - limit.per)
        wait = self._wait(window, limit, tokens, now)
        if wait > 0:
            return wait
        admission = Admission(key, tokens, next(self._ids))
        window.in_flight[admission.id] = tokens
        window.in_flight_tokens += tokens
        window.admitted_since += 1
        return admission

    @staticmethod
    def _wait(window: _Window, limit: RateLimit, tokens: int, now: float) -> float:
        # An ended request leaves the window `per` seconds after it ended; one in flight, no sooner than `per` from
        # now. The wait is until enough of them have left.
        waits = [0.0]
        held = len(window.in_flight) + len(window.ended)
        if limit.rpm is not None and held + 1 > limit.rpm:
            excess = held + 1 - limit.rpm
            waits.append(window.ended[excess - 1][0] + limit.per - now if excess <= len(window.ended) else limit.per)
        if limit.tpm is not None:
            over = window.in_flight_tokens + window.ended_tokens + min(tokens, limit.tpm) - limit.tpm
            if over > 0:
                wait, freed = limit.per, 0
                for ended, n in window.ended:
                    freed += n
                    if freed >= over:
                        wait = ended + limit.per - now
                        break
                waits.append(wait)
        requests = window.remaining_requests
        if requests is not None and now < window.requests_reset and requests - window.admitted_since < 1:
            waits.append(window.requests_reset - now)
        if window.remaining_tokens is not None and now < window.tokens_reset and window.remaining_tokens < tokens:
            waits.append(window.tokens_reset - now)
        return max(waits)

    def settle(self, admission: Admission, tokens: int | None) -> None:
        window = self._windows.get(admission.key)
        if window is None or admission.id not in window.in_flight:
            return
        held = window.in_flight.pop(admission.id)
        window.in_flight_tokens -= held
        used = held if tokens is None else tokens
        window.ended.append((time.monotonic(), used))
        window.ended_tokens += used

    def refund(self, admission: Admission) -> None:
        self.settle(admission, 0)

    async def learn(self, key: str, headers: Mapping[str, str]) -> None:
        window = self._windows.setdefault(key, _Window())
        now = time.monotonic()
        hint = RateLimitHint.from_headers(headers)
        if hint.requests is not None:
            # Requests still in flight may not be counted in `remaining` yet: they count against it from now on.
            window.remaining_requests = hint.requests
            window.admitted_since = len(window.in_flight)
            window.requests_reset = now + hint.requests_reset
        if hint.tokens is not None:
            window.remaining_tokens = hint.tokens
            window.tokens_reset = now + hint.tokens_reset


@dataclass(frozen=True)
class RateLimitHint:
    """What a provider's rate-limit headers say is left: requests and tokens, and seconds until each resets.

    Args:
        requests: Requests left (None: not said).
        requests_reset: Seconds until the request limit resets (1 when not said).
        tokens: Tokens left (None: not said).
        tokens_reset: Seconds until the token limit resets (1 when not said).
    """

    requests: int | None = None
    requests_reset: float = 1.0
    tokens: int | None = None
    tokens_reset: float = 1.0

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, now: float | None = None) -> RateLimitHint:
        """Read OpenAI's `x-ratelimit-*` headers (resets as durations: `"6m0s"`) or Anthropic's
        `anthropic-ratelimit-*` ones (resets as RFC 3339 times,
        https://platform.claude.com/docs/en/api/rate-limits#response-headers); `now` is the wall clock's time."""
        if "anthropic-ratelimit-requests-remaining" in headers or "anthropic-ratelimit-tokens-remaining" in headers:
            wall = time.time() if now is None else now
            return cls(
                requests=_int(headers.get("anthropic-ratelimit-requests-remaining")),
                requests_reset=_until(headers.get("anthropic-ratelimit-requests-reset"), wall) or 1.0,
                tokens=_int(headers.get("anthropic-ratelimit-tokens-remaining")),
                tokens_reset=_until(headers.get("anthropic-ratelimit-tokens-reset"), wall) or 1.0,
            )
        return cls(
            requests=_int(headers.get("x-ratelimit-remaining-requests")),
            requests_reset=parse_duration(headers.get("x-ratelimit-reset-requests")) or 1.0,
            tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
            tokens_reset=parse_duration(headers.get("x-ratelimit-reset-tokens")) or 1.0,
        )


def _until(stamp: str | None, now: float) -> float | None:
    """Seconds from `now` until an RFC 3339 time (`"2026-12-07T10:00:30Z"`); None when absent or unreadable."""
    if not stamp:
        return None
    import datetime  # only for Anthropic's reset times

    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - now)


def parse_duration(text: str | None) -> float | None:
    """OpenAI's reset durations (`"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"`) or plain seconds, in seconds."""
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts) if parts else None


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(float(text))
    except ValueError:
        return None


RATE_LIMIT_HEADERS = (
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
)
"""OpenAI's rate-limit headers (used by compatible servers); drivers surface these, and Anthropic's
`anthropic-ratelimit-*`, on `ChatResponse.rate_limits`."""
