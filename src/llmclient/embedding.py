"""What `Client.embed` needs besides a driver: provider limits, the embedding cache, batching and truncation.

The cache keeps one vector per (provider, model, dimensions, sha256 of the text), so a text embedded once is
neither sent nor billed again:

```python
import numpy as np
from llmclient.embedding import MemoryEmbeddingCache, cache_key

cache = MemoryEmbeddingCache(max_entries=2)
key = cache_key("openai", "text-embedding-3-small", None, "hello")
cache.put_many({key: np.ones(3, dtype=np.float32)})
assert list(cache.get_many([key, "missing"])) == [key]
```

`Client(embedding_cache=...)` takes `None` (the default: in memory, least recently used out first),
`False` (no cache), `"sqlite:///path/to/cache.db"` or a path (kept on disk across runs), or any object with
`get_many` and `put_many` (see `EmbeddingCache`). numpy is imported on first use, keeping `import llmclient` light.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from llmclient.errors import InputTooLongError, InvalidRequestError, MissingExtraError
from llmclient.types import TokenCount

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from llmclient.embed_job import EmbedJob

    Vector = npt.NDArray[np.float32]
else:
    Vector = Any

T = TypeVar("T")
R = TypeVar("R")

PROGRESS_THRESHOLD = 1000
"""Inputs to send from which `embed(progress=None)` shows a progress bar (when stderr is a terminal)."""


@dataclass(frozen=True)
class EmbeddingLimits:
    """What one embeddings request of a provider may hold; `Client.embed` splits its inputs to fit.

    Args:
        max_inputs_per_request: The most inputs in one request.
        max_tokens_per_request: The most tokens summed over one request's inputs (None: no limit).
        max_input_tokens: The most tokens in one input (None: no limit known; a price entry's
            `max_input_tokens` applies too, and the smaller wins).
        allow_empty_inputs: Whether an empty string is a valid input.
    """

    max_inputs_per_request: int = 2048
    max_tokens_per_request: int | None = None
    max_input_tokens: int | None = None
    allow_empty_inputs: bool = True


DEFAULT_LIMITS = EmbeddingLimits()


# -- the cache ---------------------------------------------------------------------------------------------------


def cache_key(provider: str, model: str, dimensions: int | None, text: str, *, truncated_to: int | None = None) -> str:
    """The cache key of one text: provider, model and dimensions in clear, the text as its sha256.

    A text cut to fit the model (`truncate=True`) has a key of its own, so a later call without truncation never
    receives the vector of the shortened text.
    """
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    suffix = "" if truncated_to is None else f"/truncated-{truncated_to}"
    return f"{provider}/{model}/{dimensions or 'default'}/{digest}{suffix}"


@runtime_checkable
class EmbeddingCache(Protocol):
    """Where `Client.embed` keeps vectors between calls. Implementations must be safe to call from threads."""

    def get_many(self, keys: Sequence[str]) -> dict[str, Vector]:
        """The vectors found for `keys` (missing keys are left out)."""
        ...

    def put_many(self, items: Mapping[str, Vector]) -> None:
        """Store vectors under their keys."""
        ...


class MemoryEmbeddingCache:
    """An in-process LRU cache: the least recently used vector goes first once `max_entries` are held.

    At 1536 float32 dimensions, the default 10,000 entries take about 60 MB.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._items: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, Vector]:
        found: dict[str, Vector] = {}
        with self._lock:
            for key in keys:
                vector = self._items.get(key)
                if vector is not None:
                    self._items.move_to_end(key)
                    found[key] = vector
        return found

    def put_many(self, items: Mapping[str, Vector]) -> None:
        pairs = list(items.items())[-self.max_entries :]  # the earlier ones would be evicted by the later ones
        with self._lock:
            for key, vector in pairs:
                stored = vector.copy()
                stored.flags.writeable = False  # callers get copies; the cache's own rows never change
                if key in self._items:
                    self._items.move_to_end(key)
                self._items[key] = stored
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every vector."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"MemoryEmbeddingCache({len(self)} of {self.max_entries} entries)"


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    key        TEXT PRIMARY KEY,   -- provider/model/dimensions/sha256(text)
    dimensions INTEGER NOT NULL,
    vector     BLOB    NOT NULL,   -- little-endian float32
    created    REAL    NOT NULL    -- Unix time
)
"""
_SQLITE_BATCH = 500  # keys per SELECT, well under SQLite's limit on bound parameters


class SQLiteEmbeddingCache:
    """A cache in a SQLite file (stdlib sqlite3, WAL mode) that lasts across runs and processes.

    Each operation opens and closes its own connection, so the cache holds no open file between calls and needs no
    closing. Nothing is evicted; delete the file (or call `clear`) to start again.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SQLITE_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, Vector]:
        import numpy as np

        found: dict[str, Vector] = {}
        with self._connect() as db:
            for start in range(0, len(keys), _SQLITE_BATCH):
                batch = list(keys[start : start + _SQLITE_BATCH])
                marks = ",".join("?" * len(batch))
                rows = db.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", batch)
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype="<f4")
        return found

    def put_many(self, items: Mapping[str, Vector]) -> None:
        import numpy as np

        now = time.time()
        rows = [
            (key, int(vector.shape[0]), np.asarray(vector, dtype="<f4").tobytes(), now) for key, vector in items.items()
        ]
        with self._connect() as db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")

    def clear(self) -> None:
        """Delete every stored vector."""
        with self._connect() as db:
            db.execute("DELETE FROM embeddings")

    def __len__(self) -> int:
        with self._connect() as db:
            count: int = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        return count

    def __repr__(self) -> str:
        return f"SQLiteEmbeddingCache({str(self.path)!r})"


def open_embedding_cache(spec: EmbeddingCache | str | Path | bool | None) -> EmbeddingCache | None:
    """The cache for `Client(embedding_cache=...)`: None/True → in memory, False → none, a path or
    `"sqlite:///path"` → on disk, an `EmbeddingCache` → itself (to share one between clients)."""
    if spec is None or spec is True:
        return MemoryEmbeddingCache()
    if spec is False:
        return None
    if isinstance(spec, (str, Path)):
        text = str(spec)
        if text == "memory":
            return MemoryEmbeddingCache()
        if text.startswith("sqlite:///"):
            text = text[len("sqlite:///") :]
        elif "://" in text:
            raise ValueError(f"unsupported embedding cache {spec!r}; use 'sqlite:///path/to/cache.db' or a path")
        return SQLiteEmbeddingCache(text)
    if isinstance(spec, EmbeddingCache):
        return spec
    raise TypeError(f"embedding_cache must be None, a bool, a path or an EmbeddingCache, not {type(spec).__name__}")


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

    An input over `max_input_tokens` raises `InputTooLongError` naming its index when the count is exact (an
    estimate is left to the provider to judge), or is cut to the limit when `truncate` is set.
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
            elif counted.exact:
                index = job.first_index[text]
                raise InputTooLongError(
                    f"input {index} has {tokens} tokens, more than the {max_input_tokens} that {provider}/{model} "
                    "accepts; shorten or split it, or pass truncate=True",
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
    on_done: Callable[[T, R], None],
) -> None:
    """Send every batch, at most `concurrency` at a time; `on_done` sees each result as it arrives.

    On the first failure the batches not yet finished are cancelled and the failure (the earliest batch's, when
    several failed) is raised; results that arrived before it have already gone to `on_done`.
    """
    if not batches:
        return
    if len(batches) == 1:  # the common call: no task to schedule and wait for
        result = await send(batches[0])
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
    "DEFAULT_LIMITS",
    "PROGRESS_THRESHOLD",
    "EmbeddingCache",
    "EmbeddingLimits",
    "MemoryEmbeddingCache",
    "SQLiteEmbeddingCache",
    "cache_key",
    "fit_to_limits",
    "open_embedding_cache",
    "plan_batches",
    "progress_bar",
    "run_batches",
    "truncate_to_tokens",
]
