"""Token-aware rate limits per deployment: requests and tokens per window, behind a small store interface.

A request takes one request and its worst case in tokens (the counted prompt plus `max_tokens`) when it is
admitted; when it ends, its tokens are corrected to the usage the provider reported and its window starts then. A
request therefore occupies its window from admission until `per` seconds after it ended, so however long the
network takes, two requests the limit keeps apart reach the server at least `per` seconds apart:

```python
import asyncio
from llmclient.pipeline.ratelimit import MemoryRateLimitStore, RateLimit

store, limit = MemoryRateLimitStore(), RateLimit(rpm=2, tpm=100, per=60.0)
first = await store.try_acquire("chat@0", limit, tokens=60)
assert not isinstance(first, float)
assert isinstance(await store.try_acquire("chat@0", limit, tokens=60), float)   # 120 tokens > 100: wait
store.settle(first, tokens=30)                                                  # it used 30
assert not isinstance(await store.try_acquire("chat@0", limit, tokens=60), float)
```

The provider's own view, from `x-ratelimit-remaining-requests`, `-tokens` and `-reset-*` headers (OpenAI and
compatible servers), narrows the limit until its reset (`learn`). The in-memory store serves one process; a store
shared by several processes implements the same four methods (`RateLimitStore`).
"""

from __future__ import annotations

import itertools
import re
import time
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
    # admission id → [ended (None while in flight), tokens]
    held: dict[int, list[float | int | None]] = field(default_factory=dict)
    # The provider's word: requests / tokens left as of `learned_at`, and until when that holds.
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    requests_reset: float = 0.0
    tokens_reset: float = 0.0
    admitted_since: int = 0


class MemoryRateLimitStore:
    """Rate-limit state in this process (thread-unsafe: one event loop)."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._ids = itertools.count(1)

    async def try_acquire(self, key: str, limit: RateLimit, tokens: int) -> Admission | float:
        now = time.monotonic()
        window = self._windows.setdefault(key, _Window())
        horizon = now - limit.per
        expired = [i for i, (ended, _) in window.held.items() if ended is not None and ended <= horizon]
        for i in expired:
            del window.held[i]
        wait = self._wait(window, limit, tokens, now)
        if wait > 0:
            return wait
        admission = Admission(key, tokens, next(self._ids))
        window.held[admission.id] = [None, tokens]
        window.admitted_since += 1
        return admission

    def _wait(self, window: _Window, limit: RateLimit, tokens: int, now: float) -> float:
        held = list(window.held.values())
        # Seconds until the oldest ended requests leave the window; in-flight ones leave only after they end.
        ended = sorted((float(end) + limit.per - now, int(n or 0)) for end, n in held if end is not None)
        waits = [0.0]
        if limit.rpm is not None and len(held) + 1 > limit.rpm:
            excess = len(held) + 1 - limit.rpm
            waits.append(ended[excess - 1][0] if excess <= len(ended) else limit.per)
        if limit.tpm is not None:
            over = sum(int(n or 0) for _, n in held) + min(tokens, limit.tpm) - limit.tpm
            freed = 0
            wait = limit.per  # in-flight tokens only: try again within a window
            for leaves, n in ended if over > 0 else ():
                freed += n
                if freed >= over:
                    wait = leaves
                    break
            if over > 0:
                waits.append(wait)
        waits.extend(self._learned_wait(window, tokens, now))
        return max(waits)

    @staticmethod
    def _learned_wait(window: _Window, tokens: int, now: float) -> list[float]:
        waits = []
        requests = window.remaining_requests
        if requests is not None and now < window.requests_reset and requests - window.admitted_since < 1:
            waits.append(window.requests_reset - now)
        if window.remaining_tokens is not None and now < window.tokens_reset and window.remaining_tokens < tokens:
            waits.append(window.tokens_reset - now)
        return waits

    def settle(self, admission: Admission, tokens: int | None) -> None:
        window = self._windows.get(admission.key)
        if window is not None and admission.id in window.held:
            entry = window.held[admission.id]
            entry[0] = time.monotonic()
            if tokens is not None:
                entry[1] = tokens

    def refund(self, admission: Admission) -> None:
        self.settle(admission, 0)

    async def learn(self, key: str, headers: Mapping[str, str]) -> None:
        window = self._windows.setdefault(key, _Window())
        now = time.monotonic()
        requests, tokens = (
            _int(headers.get("x-ratelimit-remaining-requests")),
            _int(headers.get("x-ratelimit-remaining-tokens")),
        )
        if requests is not None:
            # Requests still in flight may not be counted in `remaining` yet: they count against it from now on.
            window.remaining_requests = requests
            window.admitted_since = sum(1 for ended, _ in window.held.values() if ended is None)
            window.requests_reset = now + (parse_duration(headers.get("x-ratelimit-reset-requests")) or 1.0)
        if tokens is not None:
            window.remaining_tokens = tokens
            window.tokens_reset = now + (parse_duration(headers.get("x-ratelimit-reset-tokens")) or 1.0)


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
"""The headers drivers surface on `ChatResponse.rate_limits` (OpenAI's names, used by compatible servers)."""
