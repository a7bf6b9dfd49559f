"""The embedding cache: what `Client.embed` keeps so a text is embedded and billed once.

The cache keeps one vector per (provider, model, dimensions, sha256 of the text), so a text embedded once is
neither sent nor billed again:

```python
import numpy as np
from llmclient.embeddings.cache import MemoryEmbeddingCache, cache_key

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
import itertools
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llmclient._sanitize import split_location
from llmclient.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vector = npt.NDArray[np.float32]
else:
    Vector = Any


# -- the cache ---------------------------------------------------------------------------------------------------


def cache_key(provider: str, model: str, dimensions: int | None, text: str, *, truncated_to: int | None = None) -> str:
    """The cache key of one text: provider, model and dimensions in clear, the text as its sha256.

    A text cut to fit the model (`truncate=True`) has a key of its own, so a later call without truncation never
    receives the vector of the shortened text.
    """
    return cache_keys(provider, model, dimensions, [text], truncated_to=truncated_to)[0]


def cache_keys(
    provider: str, model: str, dimensions: int | None, texts: Sequence[str], *, truncated_to: int | None = None
) -> list[str]:
    """`cache_key` of each text, with what they share built once (an embedding job keys thousands at a time)."""
    prefix = f"{provider}/{model}/{dimensions or 'default'}/"
    suffix = "" if truncated_to is None else f"/truncated-{truncated_to}"
    sha256 = hashlib.sha256
    return [prefix + sha256(text.encode("utf-8", "surrogatepass")).hexdigest() + suffix for text in texts]


@runtime_checkable
class EmbeddingCache(Protocol):
    """Where `Client.embed` keeps vectors between calls. Implementations must be safe to call from threads.

    An embedding job's keys and items may compute each key as it is read (a SHA-256 per text), so a cache reads
    only what it needs: the in-memory one reads no key while it is empty, and only the last `max_entries` items.
    """

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
            if not self._items:  # nothing to find: the keys (computed as they are read) are not even read
                return found
            for key in keys:
                vector = self._items.get(key)
                if vector is not None:
                    self._items.move_to_end(key)
                    found[key] = vector
        return found

    def put_many(self, items: Mapping[str, Vector]) -> None:
        pairs = _latest(items, self.max_entries)  # the earlier ones would be evicted by the later ones
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


def _latest(items: Mapping[str, Vector], count: int) -> list[tuple[str, Vector]]:
    """The last `count` items, in order; read from the end when the items can be (a dict's can), so that keys
    computed as they are read are computed for those alone."""
    if len(items) <= count:
        return list(items.items())
    try:
        latest = list(itertools.islice(reversed(items.items()), count))  # type: ignore[call-overload]
    except TypeError:  # a mapping that can only be read forwards
        return list(items.items())[-count:]
    latest.reverse()
    return latest


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
        try:
            _, path = split_location(text, ("sqlite",))
        except ValueError as exc:  # it names the scheme alone: the rest of a URL may hold a password
            raise ConfigurationError(f"embedding_cache: {exc}") from None
        return SQLiteEmbeddingCache(path)
    if isinstance(spec, EmbeddingCache):
        return spec
    raise TypeError(f"embedding_cache must be None, a bool, a path or an EmbeddingCache, not {type(spec).__name__}")


__all__ = [
    "EmbeddingCache",
    "MemoryEmbeddingCache",
    "SQLiteEmbeddingCache",
    "Vector",
    "cache_key",
    "cache_keys",
    "open_embedding_cache",
]
