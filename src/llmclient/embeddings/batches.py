"""Batching an embedding job to a provider's limits: token checks and truncation, batch planning, concurrent
sending, and the optional progress bar."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from llmclient.drivers import EmbeddingLimits
from llmclient.errors import InputTooLongError, InvalidRequestError, MissingExtraError
from llmclient.types import TokenCount

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from llmclient.embeddings.texts import EmbedJob

    Vector = npt.NDArray[np.float32]
else:
    Vector = Any

T = TypeVar("T")
R = TypeVar("R")

PROGRESS_THRESHOLD = 1000
"""Inputs to send from which `embed(progress=None)` shows a progress bar (when stderr is a terminal)."""


MAX_TOKEN_BYTES = 128
"""The longest token, in UTF-8 bytes, of o200k_base, cl100k_base and DeepSeek's vocabulary (a test checks them): a
text of n bytes is at least n / 128 tokens in any of them, whatever its estimate says."""


def least_tokens(text: str) -> int:
    """The fewest tokens `text` can be with a vocabulary whose tokens are at most `MAX_TOKEN_BYTES` long."""
    return -(-len(text.encode("utf-8", "surrogatepass")) // MAX_TOKEN_BYTES)


async def fit_to_limits(
    job: EmbedJob,
    count: Callable[[str], Awaitable[TokenCount]] | None,
    *,
    limits: EmbeddingLimits,
    max_input_tokens: int | None,
    truncate: bool,
    provider: str,
    model: str,
) -> list[int]:
    """Check the texts still to send against the provider's limits; return their token counts ([] when `count` is
    None: nothing needs them).

    An input over `max_input_tokens` raises `InputTooLongError` naming its index when the count is exact, or when
    an estimate is over and so is `least_tokens` (certainly too long; a closer call is left to the provider), or is
    cut to the limit when `truncate` is set.
    """
    if not limits.allow_empty_inputs:
        for text in job.pending:
            if not text:
                raise InvalidRequestError(
                    f"input {job.first_index[text]} is an empty string, which {provider} rejects; drop it first",
                    provider=provider,
                    model=model,
                )
    if count is None:
        return []
    counts: list[int] = []
    for position, text in enumerate(job.pending):
        counted = await count(text)
        tokens = counted.tokens
        if max_input_tokens is not None and tokens > max_input_tokens:
            if truncate:
                cut = await truncate_to_tokens(text, max_input_tokens, _tokens_of(count))
                job.truncate(position, cut, max_input_tokens)
                tokens = (await count(cut)).tokens
            elif counted.exact or least_tokens(text) > max_input_tokens:
                index = job.first_index[text]
                has = f"has {tokens} tokens"
                if not counted.exact:  # an estimate, but the byte bound alone is over the limit
                    tokens = least_tokens(text)
                    has = f"has at least {tokens} tokens ({len(text.encode('utf-8', 'surrogatepass'))} bytes, and no "
                    has += f"token is longer than {MAX_TOKEN_BYTES} bytes; about {counted.tokens} by estimate)"
                raise InputTooLongError(
                    f"input {index} {has}, more than the {max_input_tokens} that {provider}/{model} accepts; "
                    "shorten or split it, or pass truncate=True",
                    index=index,
                    tokens=tokens,
                    limit=max_input_tokens,
                    provider=provider,
                    model=model,
                )
        counts.append(tokens)
    return counts


def _tokens_of(count: Callable[[str], Awaitable[TokenCount]]) -> Callable[[str], Awaitable[int]]:
    async def tokens(text: str) -> int:
        return (await count(text)).tokens

    return tokens


def plan_batches(counts: Sequence[int], max_inputs: int, max_tokens: int | None) -> list[range]:
    """Split inputs with these token counts into consecutive batches within both limits.

    One input over `max_tokens` on its own still gets a batch (the per-input limit is checked before this).
    """
    batches: list[range] = []
    start, tokens = 0, 0
    for index, count in enumerate(counts):
        full = index - start >= max_inputs or (max_tokens is not None and tokens + count > max_tokens)
        if full and index > start:
            batches.append(range(start, index))
            start, tokens = index, 0
        tokens += count
    if start < len(counts):
        batches.append(range(start, len(counts)))
    return batches


async def truncate_to_tokens(text: str, limit: int, count: Callable[[str], Awaitable[int]]) -> str:
    """The longest prefix of `text` that `count` says has at most `limit` tokens (a binary search on length)."""
    low, high = 0, len(text)
    # Tokens rarely span more than 8 characters, so the answer is usually below limit × 8: search there first.
    guess = min(high, limit * 8)
    if guess < high and await count(text[:guess]) > limit:
        high = guess
    while low < high:
        middle = (low + high + 1) // 2
        if await count(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


async def run_batches(
    batches: Sequence[T],
    send: Callable[[T], Awaitable[R]],
    *,
    concurrency: int,
    on_done: Callable[[T, R], None] | None = None,
) -> None:
    """Send every batch, at most `concurrency` at a time; `on_done` (if given) sees each result as it arrives.

    On the first failure the batches not yet finished are cancelled and the failure (the earliest batch's, when
    several failed) is raised; results that arrived before it have already gone to `on_done`.
    """
    if not batches:
        return
    if len(batches) == 1:  # the common call: no task to schedule and wait for
        result = await send(batches[0])
        if on_done is not None:
            on_done(batches[0], result)
        return
    import asyncio  # here, not at module level: `import llmclient` stays fast

    semaphore = asyncio.Semaphore(concurrency)
    failed = False

    async def one(batch: T) -> None:
        nonlocal failed
        async with semaphore:
            if failed:  # set before the failing batch let go of the semaphore: nothing more is sent
                return
            try:
                result = await send(batch)
            except BaseException:
                failed = True
                raise
        if on_done is not None:
            on_done(batch, result)

    tasks = [asyncio.ensure_future(one(batch)) for batch in batches]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome


class ProgressBar(Protocol):
    """The part of tqdm's interface that `embed` uses."""

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...


def progress_bar(enabled: bool | None, total: int, description: str) -> ProgressBar | None:
    """A tqdm bar on stderr, or None. `enabled=None` shows one for `PROGRESS_THRESHOLD` inputs or more when stderr
    is a terminal and tqdm is installed; True requires tqdm; False never shows one."""
    if enabled is False or total == 0:
        return None
    if enabled is None and (total < PROGRESS_THRESHOLD or not _stderr_is_terminal()):
        return None
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError as exc:
        if enabled is None:
            return None
        raise MissingExtraError("progress=True needs tqdm: pip install tqdm") from exc
    bar: ProgressBar = tqdm.tqdm(total=total, desc=description, unit="input", leave=False, file=sys.stderr)
    return bar


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


__all__ = [
    "MAX_TOKEN_BYTES",
    "PROGRESS_THRESHOLD",
    "ProgressBar",
    "fit_to_limits",
    "least_tokens",
    "plan_batches",
    "progress_bar",
    "run_batches",
    "truncate_to_tokens",
]
