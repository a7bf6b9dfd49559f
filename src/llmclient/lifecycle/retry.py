"""The retry policy and the one loop that applies it: the only retry layer in llmclient.

Retried: errors whose `retryable` is true (408, 409, 429, 5xx, connection errors and timeouts). Never retried:
400/401/403/404/422, quota and balance errors, and a stream after its first chunk. A `Retry-After` (or
`retry-after-ms`) from the provider is honoured up to `max_retry_after`; a longer one ends the retries at once,
since waiting minutes inside a call is worse than telling the caller.

```python
from llmclient import RetryPolicy

policy = RetryPolicy(max_retries=3, initial_backoff=0.5, max_backoff=8.0)
assert policy.backoff(1) <= 1.0
```

The loop is `RetryPolicy.run`, a dozen lines of our own rather than tenacity's: every call goes through it, most
succeed at once, and tenacity's per-call machinery costs tens of microseconds for nothing on that path.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from llmclient.errors import LLMClientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a call.

    Args:
        max_retries: Retries after the first attempt (so at most `max_retries + 1` requests).
        initial_backoff: Seconds before the first retry, doubled each time.
        max_backoff: The longest wait between attempts.
        jitter: Spread waits randomly over [backoff/2, backoff] so clients do not retry in step.
        max_retry_after: The longest provider-requested wait honoured; a longer one is not retried.
    """

    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff must be >= 0")

    def with_max_retries(self, max_retries: int | None) -> RetryPolicy:
        """This policy with another retry count (None keeps it)."""
        return self if max_retries is None else replace(self, max_retries=max_retries)

    def backoff(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1-based), without any Retry-After."""
        # The exponent stops at 1023: 2.0 ** 1024 raises OverflowError, and the cap is reached long before anyway.
        wait: float = min(self.max_backoff, self.initial_backoff * 2.0 ** min(attempt - 1, 1023))
        return wait * (0.5 + random.random() / 2) if self.jitter else wait

    def should_retry(self, error: BaseException) -> bool:
        """Whether `error` may be retried at all (the attempt count aside)."""
        if not isinstance(error, LLMClientError) or not error.retryable:
            return False
        retry_after = getattr(error, "retry_after", None)
        return retry_after is None or retry_after <= self.max_retry_after

    def wait_for(self, attempt: int, error: BaseException | None) -> float:
        """The wait before retry `attempt` after `error`: the provider's Retry-After when given, else backoff."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        return self.backoff(attempt)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> T:
        """Await `attempt()` until it succeeds, fails with an error not worth retrying, or retries run out.

        The last error is raised as it is. Waits use `wait_for` (the provider's Retry-After, else backoff);
        `on_retry(retry, wait, error)` hears of each retry before its wait (the pipeline's observers use it).
        """
        import asyncio  # on first use, like httpx: `import llmclient` stays light

        retries = 0
        while True:
            try:
                return await attempt()
            except Exception as error:
                if retries >= self.max_retries or not self.should_retry(error):
                    raise
                retries += 1
                wait = self.wait_for(retries, error)
                if on_retry is not None:
                    on_retry(retries, wait, error)
                await asyncio.sleep(wait)
