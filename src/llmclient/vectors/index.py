"""`VectorIndex`: an in-process vector store (numpy arrays, saved to one `.npz` file) for corpora that fit in memory.

```python
from functools import partial
from llmclient import Client, VectorIndex

client = Client()
index = VectorIndex(embed=partial(client.embed, model="fake/embedder"))
await index.add_texts(["cats purr", "dogs bark"], ids=["c", "d"], metadata=[{"kind": "cat"}, {"kind": "dog"}])
best = (await index.search("cats purr", k=1))[0]
assert (best.id, best.metadata) == ("c", {"kind": "cat"})
```

The index never imports the client: it takes any async `embed` function that returns an `EmbedResponse` or an
array, so every text goes through the client's cache, ledger and budgets. Past one machine, move the same ids,
vectors and metadata to a vector database (see `records` and the embeddings docs), or keep the index in
PostgreSQL with pgvector from the start: `llmclient.stores.PgVectorIndex(url, name)` has the same methods.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from llmclient.errors import DimensionMismatchError, InvalidRequestError
from llmclient.vectors.similarity import METRICS, Metric, ZeroVectorWarning, top_k

EmbedFunction = Callable[[list[str]], Awaitable[Any]]
"""An async function from texts to their vectors: an `EmbedResponse` or an (n, d) array."""

Filter = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool]

FORMAT = "llmclient.VectorIndex"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SearchResult:
    """One hit of a search, best first.

    Attributes:
        index: The hit's position: in the corpus given to `Client.search`, or in the `VectorIndex`.
        score: Cosine or dot similarity (larger is closer) or euclidean distance (smaller is closer).
        text: The text, where known.
        id: The id in a `VectorIndex` (None for `Client.search`).
        metadata: The metadata stored with it in a `VectorIndex`.
    """

    index: int
    score: float
    text: str | None = None
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexRecord:
    """Everything stored for one item: what an export to a vector database needs."""

    id: str
    vector: npt.NDArray[np.float32]
    text: str | None
    metadata: dict[str, Any]


class VectorIndex:
    """Vectors with ids, texts and metadata, searched exactly (top-k over every row, in chunks).

    Args:
        embed: An async function turning texts into vectors (e.g. `partial(client.embed, model=...)`); needed by
            `add_texts` and by `search` with a text query.
        metric: `"cosine"` (default; vectors are stored unit-normalised, so a search is one dot product per row),
            `"dot"` or `"euclidean"`.
        dimensions: The vector length; by default taken from the first vectors added.
    """

    def __init__(
        self, *, embed: EmbedFunction | None = None, metric: Metric = "cosine", dimensions: int | None = None
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        if dimensions is not None and dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        self.embed = embed
        self.metric: Metric = metric
        self._dimensions = dimensions
        self._vectors = np.zeros((0, dimensions or 0), dtype=np.float32)
        self._size = 0
        self._ids: list[str] = []
        self._texts: list[str | None] = []
        self._metadata: list[dict[str, Any]] = []
        self._positions: dict[str, int] = {}
        self._next_id = 0

    def __repr__(self) -> str:
        return f"VectorIndex({self._size} vectors, dimensions={self._dimensions}, metric={self.metric!r})"

    def __len__(self) -> int:
        return self._size

    def __contains__(self, id: object) -> bool:
        return id in self._positions

    @property
    def dimensions(self) -> int | None:
        """The vector length (None until the first vectors are added)."""
        return self._dimensions

    @property
    def ids(self) -> list[str]:
        """Every id, in index order."""
        return list(self._ids)

    @property
    def vectors(self) -> npt.NDArray[np.float32]:
        """The stored vectors, one row per id (a read-only view; unit length under the cosine metric)."""
        view = self._vectors[: self._size]
        view.flags.writeable = False
        return view

    # -- adding ------------------------------------------------------------------------------------------------

    async def add_texts(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Embed `texts` with the index's `embed` function and add them; returns their ids."""
        if isinstance(texts, str):
            raise TypeError("add_texts() takes a list of texts; wrap a single text in a list")
        vectors = await self._embed(list(texts))
        return self.add(vectors, ids=ids, metadata=metadata, texts=texts)

    def add(
        self,
        vectors: npt.ArrayLike,
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Add vectors (one per row) with optional ids, metadata (JSON-serialisable dicts) and texts.

        Returns:
            The ids, generated ("0", "1", …) where none were given.

        Raises:
            DimensionMismatchError: The vectors' length differs from the index's.
            ValueError: An id is already in the index or repeated, lengths differ, or a vector holds NaN or Inf.
            TypeError: Metadata that JSON cannot hold.
        """
        rows = np.asarray(vectors, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2:
            raise ValueError(f"vectors must be 2-D (n, dimensions), got shape {rows.shape}")
        count = rows.shape[0]
        if self._dimensions is not None and rows.shape[1] != self._dimensions:
            raise DimensionMismatchError(
                f"the index holds {self._dimensions}-dimensional vectors; these have {rows.shape[1]}"
            )
        if rows.shape[1] == 0:
            raise ValueError("vectors must have at least one dimension")
        if not np.isfinite(rows).all():
            raise ValueError("vectors contain NaN or Inf")
        new_ids = self._new_ids(ids, count)
        new_metadata = [_json_copy(item) for item in _per_item(metadata, count, "metadata")]
        new_texts = list(_per_item(texts, count, "texts"))
        if self.metric == "cosine":
            rows = _unit_rows(rows)
        self._dimensions = rows.shape[1]
        self._reserve(count)
        self._vectors[self._size : self._size + count] = rows
        for offset, id in enumerate(new_ids):
            self._positions[id] = self._size + offset
        self._size += count
        self._ids.extend(new_ids)
        self._texts.extend(new_texts)
        self._metadata.extend(new_metadata)
        return new_ids

    def remove(self, ids: Sequence[str]) -> int:
        """Remove items by id (unknown ids are ignored); returns how many were removed. Positions shift down."""
        doomed = {self._positions[id] for id in ids if id in self._positions}
        if not doomed:
            return 0
        keep = [position for position in range(self._size) if position not in doomed]
        self._vectors = np.ascontiguousarray(self._vectors[keep])
        self._ids = [self._ids[p] for p in keep]
        self._texts = [self._texts[p] for p in keep]
        self._metadata = [self._metadata[p] for p in keep]
        self._positions = {id: position for position, id in enumerate(self._ids)}
        self._size = len(keep)
        return len(doomed)

    def get(self, id: str) -> IndexRecord:
        """The stored vector, text and metadata of `id` (KeyError when absent)."""
        position = self._positions[id]
        return self._record(position)

    def records(self) -> Iterator[IndexRecord]:
        """Every item in index order: the shape to upsert into a vector database."""
        for position in range(self._size):
            yield self._record(position)

    # -- searching ---------------------------------------------------------------------------------------------

    async def search(
        self, query: str | npt.ArrayLike, k: int = 10, *, where: Filter | None = None
    ) -> list[SearchResult]:
        """The `k` items nearest to `query` (a text, embedded with `embed`, or a vector), best first.

        Args:
            query: A text or a vector.
            k: How many results; fewer when fewer items match.
            where: Keep only items whose metadata has these key–value pairs (`{"lang": "en"}`), or for which
                this function of the metadata returns True.
        """
        vector = (await self._embed([query]))[0] if isinstance(query, str) else query
        return self.search_vector(vector, k, where=where)

    def search_vector(self, vector: npt.ArrayLike, k: int = 10, *, where: Filter | None = None) -> list[SearchResult]:
        """`search` with a vector query (synchronous: no embedding needed)."""
        query = np.asarray(vector)
        if query.ndim != 1:
            raise ValueError(f"the query must be one vector (1-D), got shape {query.shape}")
        if self._dimensions is not None and query.shape[0] != self._dimensions:
            raise DimensionMismatchError(
                f"the index holds {self._dimensions}-dimensional vectors; the query has {query.shape[0]}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        positions = self._matching(where)
        if self._size == 0 or (positions is not None and len(positions) == 0):
            return []
        corpus = self._vectors[: self._size] if positions is None else self._vectors[positions]
        if self.metric == "cosine":  # stored rows are unit length: cosine is a dot product with the unit query
            found = top_k(_unit_rows(query[None, :].astype(np.float32))[0], corpus, k, metric="dot")
            scores = np.clip(found.scores, -1.0, 1.0)
        else:
            found = top_k(query, corpus, k, metric=self.metric)
            scores = found.scores
        results = []
        for hit, score in zip(found.indices.tolist(), scores.tolist(), strict=True):
            position = hit if positions is None else int(positions[hit])
            results.append(
                SearchResult(
                    index=position,
                    score=score,
                    text=self._texts[position],
                    id=self._ids[position],
                    metadata=dict(self._metadata[position]),
                )
            )
        return results

    # -- saving ------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to `path` (an `.npz` file: the vectors as an array, everything else as JSON).

        The file is written beside the target and renamed over it, so a crash never leaves half an index.
        """
        target = Path(path)
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "metric": self.metric,
            "dimensions": self._dimensions,
            "next_id": self._next_id,
            "ids": self._ids,
            "texts": self._texts,
            "metadata": self._metadata,
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(
                    file,
                    vectors=self._vectors[: self._size],
                    manifest=np.array(json.dumps(manifest, ensure_ascii=False)),
                )
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, embed: EmbedFunction | None = None) -> VectorIndex:
        """Read an index written by `save` (no pickles are loaded)."""
        with np.load(Path(path), allow_pickle=False) as data:
            try:
                manifest = json.loads(str(data["manifest"][()]))
                vectors = np.asarray(data["vectors"], dtype=np.float32)
            except KeyError as exc:
                raise ValueError(f"{os.fspath(path)!r} is not a saved VectorIndex (missing {exc})") from exc
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise ValueError(f"{os.fspath(path)!r} is not a VectorIndex file of version {FORMAT_VERSION}")
        ids, texts, metadata = manifest["ids"], manifest["texts"], manifest["metadata"]
        if not (len(ids) == len(texts) == len(metadata) == vectors.shape[0]) or len(set(ids)) != len(ids):
            raise ValueError(f"{os.fspath(path)!r} is inconsistent: ids, texts, metadata and vectors disagree")
        index = cls(embed=embed, metric=manifest["metric"], dimensions=manifest["dimensions"])
        index._vectors = np.ascontiguousarray(vectors.reshape(len(ids), manifest["dimensions"] or 0))
        index._size = len(ids)
        index._ids, index._texts, index._metadata = list(ids), list(texts), list(metadata)
        index._positions = {id: position for position, id in enumerate(ids)}
        index._next_id = int(manifest.get("next_id", len(ids)))
        return index

    # -- internals ---------------------------------------------------------------------------------------------

    async def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if self.embed is None:
            raise ValueError("this index has no embed function; pass VectorIndex(embed=...) or add vectors")
        result = await self.embed(texts)
        vectors = np.asarray(getattr(result, "vectors", result), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ValueError(f"embed returned shape {vectors.shape} for {len(texts)} texts")
        return vectors

    def _new_ids(self, ids: Sequence[str] | None, count: int) -> list[str]:
        if ids is None:
            generated: list[str] = []
            while len(generated) < count:
                candidate = str(self._next_id)
                self._next_id += 1
                if candidate not in self._positions:
                    generated.append(candidate)
            return generated
        if isinstance(ids, str):
            raise TypeError("ids must be a list of strings, not one string")
        given = list(ids)
        if len(given) != count:
            raise ValueError(f"got {len(given)} ids for {count} vectors")
        for id in given:
            if not isinstance(id, str):
                raise TypeError(f"ids must be strings, got {type(id).__name__}")
        repeated = sorted({id for id in given if id in self._positions} | _repeats(given))
        if repeated:
            raise ValueError(f"ids already in the index or repeated: {repeated[:5]}; remove() them first")
        return given

    def _reserve(self, count: int) -> None:
        needed = self._size + count
        capacity, width = self._vectors.shape
        if needed <= capacity and width == self._dimensions:
            return
        grown = np.zeros((max(needed, math.ceil(capacity * 1.5), 16), self._dimensions or 0), dtype=np.float32)
        if self._size:
            grown[: self._size] = self._vectors[: self._size]
        self._vectors = grown

    def _matching(self, where: Filter | None) -> npt.NDArray[np.intp] | None:
        if where is None:
            return None
        if callable(where):
            test = where
        else:
            wanted = dict(where)

            def test(metadata: Mapping[str, Any]) -> bool:
                return all(key in metadata and metadata[key] == value for key, value in wanted.items())

        return np.array([p for p, item in enumerate(self._metadata) if test(item)], dtype=np.intp)

    def _record(self, position: int) -> IndexRecord:
        return IndexRecord(
            id=self._ids[position],
            vector=self._vectors[position].copy(),
            text=self._texts[position],
            metadata=dict(self._metadata[position]),
        )


def _per_item(values: Sequence[Any] | None, count: int, name: str) -> list[Any]:
    if values is None:
        return [None] * count
    if isinstance(values, (str, Mapping)):
        raise TypeError(f"{name} must be a list with one entry per vector")
    items = list(values)
    if len(items) != count:
        raise ValueError(f"got {len(items)} {name} for {count} vectors")
    return items


def _json_copy(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy exactly as it will read back from a saved index (tuples become lists); TypeError if JSON can't."""
    if metadata is None:
        return {}
    try:
        copied: dict[str, Any] = json.loads(json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from exc
    return copied


def _repeats(ids: list[str]) -> set[str]:
    return {id for id, times in Counter(ids).items() if times > 1}


def _unit_rows(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.sqrt(np.einsum("ij,ij->i", rows.astype(np.float64), rows.astype(np.float64)))
    zeros = norms == 0
    if zeros.any():
        warnings.warn(
            "a zero vector has no direction: its cosine with anything is 0.0", ZeroVectorWarning, stacklevel=3
        )
    unit: npt.NDArray[np.float32] = (rows / np.where(zeros, 1.0, norms)[:, None]).astype(np.float32)
    return unit


__all__ = ["EmbedFunction", "IndexRecord", "SearchResult", "VectorIndex"]


async def search_texts(
    query: str,
    corpus: Sequence[str],
    embed: Callable[[list[str]], Awaitable[npt.NDArray[np.float32]]],
    *,
    k: int = 10,
    metric: Metric = "cosine",
) -> list[SearchResult]:
    """The `k` texts of `corpus` most similar to `query`, embedding both in one `embed` call (`Client.search`)."""
    if not isinstance(query, str):
        raise InvalidRequestError(f"search() takes a text query, not {type(query).__name__}")
    if isinstance(corpus, str):
        raise InvalidRequestError("search() takes a list of texts as the corpus; wrap a single text in a list")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidRequestError(f"k must be a positive int, got {k!r}")
    if metric not in METRICS:
        raise InvalidRequestError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    texts = list(corpus)
    if not texts:
        return []
    vectors = await embed([query, *texts])
    found = top_k(vectors[0], vectors[1:], k, metric=metric)
    return [
        SearchResult(index=position, score=score, text=texts[position])
        for position, score in zip(found.indices.tolist(), found.scores.tolist(), strict=True)
    ]
