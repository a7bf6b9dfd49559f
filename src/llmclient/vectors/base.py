"""The half of the vector-database adapters they share: `EngineIndex`, and how a record is stored.

The Chroma, Qdrant and Pinecone adapters differ only in how they talk to their engine; `EngineIndex` holds the
rest, once:

* validation exactly as the in-memory `VectorIndex` does it (shapes, NaN, ids, JSON metadata, unit vectors under
  cosine), then the engine's own limits, then the vector length and the ids against what the collection holds —
  all before the first write, so bad input writes nothing;
* writing in batches, and on a failure an `IncompleteWriteError` that says which ids were stored;
* the in-memory index's `where` language (every `key: value` pair must equal the item's metadata), which each
  adapter translates into its engine's own filter;
* the async methods: texts are embedded by the `embed` function you pass (`partial(client.embed, model=...)`, so
  the client's cache, batching, budgets and ledger apply), then the engine's blocking call runs in a worker
  thread so the event loop keeps serving other tasks.


How a record is stored, so that `where` means the same on every engine, is `llmclient.vectors.records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from llmclient.errors import (
    DimensionMismatchError,
    IncompleteWriteError,
    InvalidRequestError,
    LLMClientError,
    VectorStoreError,
)
from llmclient.vectors.index import EmbedFunction, IndexRecord, SearchResult, VectorIndex, _per_item
from llmclient.vectors.records import Row, encoded, where_conditions
from llmclient.vectors.similarity import METRICS, Metric, ZeroVectorWarning

_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


def _unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """`rows` scaled to unit length; a zero row stays zero, with the in-memory index's warning."""
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    zeros = norms == 0
    if zeros.any():
        warnings.warn("a zero vector has no direction: its cosine with anything is 0.0", ZeroVectorWarning, 4)
    unit: npt.NDArray[np.float32] = rows / np.where(zeros, np.float32(1), norms)[:, None]
    return unit


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class EngineIndex(ABC):
    """`VectorIndex`'s methods over a vector database; a subclass supplies the engine calls (the `_` hooks).

    Args:
        embed: metric: dimensions: As for `VectorIndex`.
        batch_size: Items per write request (the last batch may be smaller).
        serialise: Run one engine call at a time (for engines that are not thread-safe, e.g. Qdrant's local mode).
    """

    backend: ClassVar[str]
    """The engine's name, as errors report it (`provider`)."""
    read_size: ClassVar[int] = 1000
    """Ids per read or delete request."""

    name: str

    def __init__(
        self,
        *,
        embed: EmbedFunction | None,
        metric: Metric,
        dimensions: int | None,
        batch_size: int,
        serialise: bool = False,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        if dimensions is not None and dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.embed = embed
        self.metric: Metric = metric
        self.batch_size = batch_size
        self._dimensions = dimensions
        self._ready = False
        self._lock: contextlib.AbstractContextManager[Any] = threading.Lock() if serialise else contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dimensions={self._dimensions}, metric={self.metric!r})"

    # -- the engine: what a subclass supplies ------------------------------------------------------------------

    @abstractmethod
    def _describe(self) -> tuple[int | None, Metric | None] | None:
        """The collection's vector length and metric (either None when the engine does not say), None if absent."""

    @abstractmethod
    def _create(self, dimensions: int) -> None:
        """Create the collection."""

    @abstractmethod
    def _existing(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the collection holds (at most `read_size` of them)."""

    @abstractmethod
    def _write(self, rows: Sequence[Row]) -> None:
        """Store one batch of new items."""

    @abstractmethod
    def _delete(self, ids: Sequence[str]) -> None:
        """Delete items that exist (at most `read_size`)."""

    @abstractmethod
    def _fetch(self, ids: Sequence[str]) -> list[IndexRecord]:
        """The stored items among `ids` (at most `read_size`), in any order."""

    @abstractmethod
    def _all_ids(self) -> list[str]:
        """Every id, in the engine's order."""

    @abstractmethod
    def _count(self) -> int:
        """How many items the collection holds."""

    @abstractmethod
    def _query(self, vector: npt.NDArray[np.float32], k: int, where: list[tuple[str, Any]]) -> list[SearchResult]:
        """The `k` nearest items matching every (key, value) of `where`, best first, scored as `VectorIndex` does."""

    @abstractmethod
    def _drop(self) -> None:
        """Delete the collection's items (and the collection, where the engine has one to delete)."""

    @abstractmethod
    def _close(self) -> None:
        """Release the engine's client, where this index created it."""

    def _status(self, error: Exception) -> tuple[int | None, bool]:
        """The HTTP status of an engine's exception (None when it has none) and whether trying again may help."""
        return None, False

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _call(self, action: str, function: Callable[..., T], *args: Any) -> T:
        """Run one engine call, turning what the engine raises into `VectorStoreError` (the cause chained)."""
        with self._lock:
            try:
                return function(*args)
            except LLMClientError:
                raise
            except Exception as exc:
                status, retryable = self._status(exc)
                raise VectorStoreError(
                    f"{self.backend} could not {action} ({self.name}): {type(exc).__name__}: {exc}",
                    provider=self.backend,
                    status=status,
                    retryable=retryable or status in _RETRYABLE_STATUSES,
                ) from exc

    def _open(self) -> None:
        """Read the collection's vector length and metric, creating it when absent and `dimensions` was given."""
        found = self._call("open the collection", self._describe)
        if found is None:
            if self._dimensions is not None:
                self._call("create the collection", self._create, self._dimensions)
                self._ready = True
            return
        dimensions, metric = found
        if metric is not None and metric != self.metric:
            raise InvalidRequestError(
                f"the {self.backend} collection {self.name!r} uses the {metric!r} metric, not {self.metric!r}; "
                f"open it with metric={metric!r}"
            )
        if dimensions is not None and self._dimensions is not None and dimensions != self._dimensions:
            raise DimensionMismatchError(
                f"the {self.backend} collection {self.name!r} holds {dimensions}-dimensional vectors, "
                f"not {self._dimensions}"
            )
        self._dimensions = dimensions if dimensions is not None else self._dimensions
        self._ready = True

    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        if self._ready:
            for part in chunks(ids, self.read_size):
                found |= self._call("read", self._existing, part)
        return found

    def _check(self, rows: Sequence[Row]) -> None:
        """Refuse what the engine would refuse, before anything is written (a subclass adds its limits)."""
        return None

    # -- the VectorIndex API -----------------------------------------------------------------------------------

    @property
    def dimensions(self) -> int | None:
        """The vector length (None until known: the first vectors added, or the existing collection's)."""
        return self._dimensions

    @property
    def ids(self) -> list[str]:
        """Every id, in the engine's order."""
        return self._call("list ids", self._all_ids) if self._ready else []

    def __len__(self) -> int:
        return self._call("count", self._count) if self._ready else 0

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and id in self._existing_ids([id])

    async def add_texts(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Embed `texts` with the index's `embed` function and add them; returns their ids.

        Raises:
            IncompleteWriteError: A write failed part-way; its `stored_ids` say which items were stored.
        """
        if isinstance(texts, str):
            raise TypeError("add_texts() takes a list of texts; wrap a single text in a list")
        texts = list(texts)
        vectors = await VectorIndex(embed=self.embed)._embed(texts)  # the in-memory index's checks of `embed`
        return await asyncio.to_thread(self.add, vectors, ids=ids, metadata=metadata, texts=texts)

    def add(
        self,
        vectors: npt.ArrayLike,
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Add vectors with optional ids (else random ones), metadata and texts, `batch_size` items per request.

        Everything is checked before the first write: shapes, NaN, ids (repeated, or already stored), metadata,
        the engine's limits and the vector length against the collection's.

        Raises:
            DimensionMismatchError: The vectors' length differs from the collection's.
            ValueError: Lengths differ, an id is repeated or already stored, or a vector holds NaN or Inf.
            InvalidRequestError: An item breaks one of the engine's limits (the message names it).
            IncompleteWriteError: A write failed; `stored_ids`, `unstored_ids` and `uncertain_ids` say which is which.
        """
        rows = self._rows(vectors, ids, metadata, texts)
        if not rows:
            return []
        self._check(rows)
        if not self._ready:
            self._call("create the collection", self._create, len(rows[0].vector))
            self._dimensions, self._ready = len(rows[0].vector), True
        taken = self._existing_ids([row.id for row in rows])
        if taken:
            raise ValueError(f"ids already in the index: {sorted(taken)[:5]}; remove() them first")
        stored: list[str] = []
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            try:
                self._call("write", self._write, batch)
            except VectorStoreError as error:
                raise self._incomplete(error, rows, stored, batch, start) from error
            stored.extend(row.id for row in batch)
        return stored

    def _rows(
        self,
        vectors: npt.ArrayLike,
        ids: Sequence[str] | None,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        texts: Sequence[str | None] | None,
    ) -> list[Row]:
        # The in-memory index validates shapes, NaN, ids and texts; reuse it on this batch alone. The metadata is
        # checked here instead, by encoding it once (the JSON the engines store), and unit vectors are made in
        # float32: the engines compute in float32, and VectorIndex's float64 pass would double the cost of an add.
        batch = VectorIndex(metric="dot" if self.metric == "cosine" else self.metric, dimensions=self._dimensions)
        if ids is None:
            shape = np.shape(vectors)
            ids = [uuid.uuid4().hex for _ in range(shape[0] if len(shape) > 1 else len(shape))]
        given = batch.add(vectors, ids=ids, texts=texts)
        items = [encoded(item) for item in _per_item(metadata, len(given), "metadata")]
        matrix, texts = batch.vectors, _per_item(texts, len(given), "texts")
        if self.metric == "cosine":
            matrix = _unit(matrix)
        return [Row(id, matrix[position], texts[position], *items[position]) for position, id in enumerate(given)]

    def _incomplete(
        self, error: VectorStoreError, rows: Sequence[Row], stored: list[str], batch: Sequence[Row], start: int
    ) -> IncompleteWriteError:
        """Which items of the failed batch the engine holds after all (a lost answer may hide a done write)."""
        batch_ids = [row.id for row in batch]
        try:
            landed, uncertain = self._existing_ids(batch_ids), []
        except VectorStoreError:
            landed, uncertain = set(), batch_ids
        stored_ids = stored + [id for id in batch_ids if id in landed]
        unstored_ids = [id for id in batch_ids if id not in landed and not uncertain]
        unstored_ids += [row.id for row in rows[start + len(batch) :]]
        unsure = f", {len(uncertain)} unknown" if uncertain else ""
        return IncompleteWriteError(
            f"add() stored {len(stored_ids)} of {len(rows)} items{unsure} before the {self.backend} write failed "
            f"({error.message}); stored_ids, unstored_ids and uncertain_ids say which",
            stored_ids=stored_ids,
            unstored_ids=unstored_ids,
            uncertain_ids=uncertain,
            provider=self.backend,
            status=error.status,
            retryable=error.retryable,
        )

    def remove(self, ids: Sequence[str]) -> int:
        """Remove items by id (unknown ids are ignored); returns how many were removed."""
        if isinstance(ids, str):
            raise TypeError("remove() takes a list of ids; wrap a single id in a list")
        wanted = list(dict.fromkeys(ids))
        present = self._existing_ids(wanted)
        doomed = [id for id in wanted if id in present]
        for part in chunks(doomed, self.read_size):
            self._call("remove", self._delete, part)
        return len(doomed)

    def get(self, id: str) -> IndexRecord:
        """The stored vector, text and metadata of `id` (KeyError when absent)."""
        found = self._call("read", self._fetch, [id]) if self._ready else []
        if not found:
            raise KeyError(id)
        return found[0]

    def records(self) -> Iterator[IndexRecord]:
        """Every item, in the order of `ids`, read `read_size` at a time."""
        for part in chunks(self.ids, self.read_size):
            fetched = {record.id: record for record in self._call("read", self._fetch, part)}
            yield from (fetched[id] for id in part if id in fetched)

    async def search(
        self, query: str | npt.ArrayLike, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[SearchResult]:
        """The `k` items nearest to `query` (a text, embedded with `embed`, or a vector), best first."""
        if isinstance(query, str):
            vector: npt.ArrayLike = (await VectorIndex(embed=self.embed)._embed([query]))[0]
        else:
            vector = query
        return await asyncio.to_thread(self.search_vector, vector, k, where=where)

    def search_vector(
        self, vector: npt.ArrayLike, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[SearchResult]:
        """`search` with a vector query. `where` keeps items whose metadata has all of these key–value pairs.

        A hit's `index` is -1: these engines keep no insertion position (use its `id`).
        """
        query = np.asarray(vector, dtype=np.float32)
        if query.ndim != 1:
            raise ValueError(f"the query must be one vector (1-D), got shape {query.shape}")
        if self._dimensions is not None and query.shape[0] != self._dimensions:
            raise DimensionMismatchError(
                f"the index holds {self._dimensions}-dimensional vectors; the query has {query.shape[0]}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if not np.isfinite(query).all():
            raise ValueError("the query vector contains NaN or Inf")
        conditions = where_conditions(where, self.backend)
        if self.metric == "cosine" and not query.any():  # every engine scores it 0.0, as VectorIndex does
            warnings.warn("a zero vector has no direction: its cosine with anything is 0.0", ZeroVectorWarning, 2)
        if not self._ready or self._dimensions is None:
            return []
        # Under cosine the engines normalise the query themselves: sent as it is, it costs nothing extra here.
        return self._call("search", self._query, query, k, conditions)

    def drop(self) -> None:
        """Delete every item (and the collection, where the engine has one of its own)."""
        if self._ready:
            self._call("drop the collection", self._drop)
        self._ready = False

    def close(self) -> None:
        """Release the engine's client where this index created it (one passed in stays open)."""
        self._close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
