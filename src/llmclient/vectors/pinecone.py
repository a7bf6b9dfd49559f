"""`PineconeVectorIndex`: `VectorIndex`'s API on a Pinecone index, through Pinecone's own SDK (`pinecone`).

```python fixture:pinecone_host
from functools import partial
from llmclient import Client
from llmclient.vectors.pinecone import PineconeVectorIndex

client = Client()
index = PineconeVectorIndex(pinecone_host, api_key="pc-test", namespace="doc-module",
                            embed=partial(client.embed, model="fake/embedder"))
await index.add_texts(["cats purr", "dogs bark"], ids=["c", "d"], metadata=[{"kind": "cat"}, {"kind": "dog"}])
best = (await index.search("cats purr", k=1, where={"kind": "cat"}))[0]
assert (best.id, best.metadata) == ("c", {"kind": "cat"})
index.drop()
index.close()
```

The index itself is made in Pinecone (console, or `Pinecone().create_index(...)`, with its dimension and metric);
this class reads and writes one namespace of it over the data-plane REST API (version 2026-07, the SDK's). Tested
against a loopback server written to Pinecone's published data-plane API (tests/vectors/pinecone_server.py), not
against the hosted service. Pinecone is eventually consistent
(https://docs.pinecone.io/guides/index-data/upsert-data, checked 2026-12-07): a record just written may take a
moment to show in searches and counts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from llmclient.errors import InvalidRequestError, MissingAPIKeyError, MissingExtraError
from llmclient.vectors.base import EngineIndex
from llmclient.vectors.index import EmbedFunction, IndexRecord, SearchResult
from llmclient.vectors.records import TEXT_FIELD, Row, cosine_score, metadata_from
from llmclient.vectors.similarity import Metric

if TYPE_CHECKING:
    from pinecone import Index

# Pinecone's metric names, and its euclidean score: the *squared* distance
# (https://docs.pinecone.io/guides/index-data/indexing-overview#similarity-metrics, checked 2026-12-07).
_METRICS: dict[Metric, str] = {"cosine": "cosine", "dot": "dotproduct", "euclidean": "euclidean"}
_OURS: dict[str, Metric] = {theirs: ours for ours, theirs in _METRICS.items()}
# Upsert limits (https://docs.pinecone.io/reference/api/database-limits, checked 2026-12-07): 1000 records or
# 2 MB per request, 40 KB of metadata per record, ids of at most 512 characters (ASCII, says the SDK).
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LENGTH = 512


def pinecone_index(host: str, *, api_key: str | None = None) -> Index:
    """The SDK's data-plane client for the index at `host` (the API key from `PINECONE_API_KEY` when not given)."""
    try:
        from pinecone import Index
    except ImportError as exc:
        raise MissingExtraError("the Pinecone index needs the pinecone SDK: pip install 'llmclient[pinecone]'") from exc
    key = api_key or os.environ.get("PINECONE_API_KEY")
    if not key:
        raise MissingAPIKeyError("Pinecone needs an API key: pass api_key= or set PINECONE_API_KEY")
    return Index(host=host, api_key=key)


class PineconeVectorIndex(EngineIndex):
    """Vectors with ids, texts and metadata in one namespace of a Pinecone index, with `VectorIndex`'s methods.

    Args:
        index: The SDK's `pinecone.Index` (e.g. `Pinecone().Index(host=...)`), or the index's host; an index
            opened here is closed by `close()`.
        namespace: The namespace to read and write ("" is Pinecone's default one).
        api_key: For a host; by default `PINECONE_API_KEY`.
        embed: As for `VectorIndex`.
        metric: The index's metric; checked against the one Pinecone reports.
        dimensions: The vector length; checked against the index's.
        batch_size: Records per upsert request (Pinecone takes at most 1000 and 2 MB: about 100 vectors of 1536
            dimensions with their metadata).
    """

    backend = "pinecone"
    read_size = 100  # ids travel in the fetch request's URL: keep it short

    def __init__(
        self,
        index: Index | str,
        *,
        namespace: str = "",
        api_key: str | None = None,
        embed: EmbedFunction | None = None,
        metric: Metric = "cosine",
        dimensions: int | None = None,
        batch_size: int = 100,
    ) -> None:
        if batch_size > 1000:
            raise ValueError("Pinecone takes at most 1000 records per upsert")
        self._owns_index = isinstance(index, str)
        self.index = pinecone_index(index, api_key=api_key) if isinstance(index, str) else index
        self.namespace = namespace
        self.name = f"{self.index.host}#{namespace}" if namespace else self.index.host
        super().__init__(embed=embed, metric=metric, dimensions=dimensions, batch_size=batch_size)
        self._open()

    def _describe(self) -> tuple[int | None, Metric | None] | None:
        stats = self.index.describe_index_stats()
        if stats.vector_type not in (None, "dense"):
            raise InvalidRequestError(f"the Pinecone index at {self.index.host} is {stats.vector_type}, not dense")
        return stats.dimension, (_OURS.get(stats.metric) if stats.metric else None)

    def _create(self, dimensions: int) -> None:
        """Nothing to do: a Pinecone index exists before any client writes to it, and namespaces come with records."""

    def _check(self, rows: Sequence[Row]) -> None:
        for row in rows:
            if not row.id or len(row.id) > MAX_ID_LENGTH or not row.id.isascii() or "\x00" in row.id:
                raise InvalidRequestError(f"Pinecone ids are 1 to {MAX_ID_LENGTH} ASCII characters: {row.id[:40]!r}")
            size = len(json.dumps(row.fields(text=True, ints=False), ensure_ascii=False).encode())
            if size > MAX_METADATA_BYTES:
                raise InvalidRequestError(
                    f"the item {row.id!r} has {size} bytes of metadata and text; Pinecone stores at most "
                    f"{MAX_METADATA_BYTES} per record"
                )

    def _existing(self, ids: Sequence[str]) -> set[str]:
        return set(self.index.fetch(ids=list(ids), namespace=self.namespace).vectors)

    def _write(self, rows: Sequence[Row]) -> None:
        vectors = np.stack([row.vector for row in rows]).tolist()
        records = []
        for row, values in zip(rows, vectors, strict=True):
            record: dict[str, Any] = {"id": row.id, "values": values}
            metadata = row.fields(text=True, ints=False)
            if metadata:  # a record without any is sent without the key
                record["metadata"] = metadata
            records.append(record)
        self.index.upsert(vectors=records, namespace=self.namespace)

    def _delete(self, ids: Sequence[str]) -> None:
        self.index.delete(ids=list(ids), namespace=self.namespace)

    def _fetch(self, ids: Sequence[str]) -> list[IndexRecord]:
        found = self.index.fetch(ids=list(ids), namespace=self.namespace).vectors
        return [
            IndexRecord(
                id=id,
                vector=np.asarray(vector.values, dtype=np.float32),
                text=(vector.metadata or {}).get(TEXT_FIELD),
                metadata=metadata_from(vector.metadata),
            )
            for id, vector in found.items()
        ]

    def _all_ids(self) -> list[str]:
        return [item.id for page in self.index.list(namespace=self.namespace) for item in page.vectors if item.id]

    def _count(self) -> int:
        summary = self.index.describe_index_stats().namespaces.get(self.namespace)
        return summary.vector_count if summary else 0

    def _query(self, vector: npt.NDArray[np.float32], k: int, where: list[tuple[str, Any]]) -> list[SearchResult]:
        found = self.index.query(
            top_k=k,
            vector=vector.tolist(),
            namespace=self.namespace,
            filter={key: {"$eq": value} for key, value in where} or None,  # several keys: all must match
            include_metadata=True,
        )
        return [
            SearchResult(
                index=-1,
                score=self._score(match.score),
                text=(match.metadata or {}).get(TEXT_FIELD),
                id=match.id,
                metadata=metadata_from(match.metadata),
            )
            for match in found.matches
        ]

    def _score(self, score: float) -> float:
        if self.metric == "euclidean":
            return math.sqrt(max(0.0, score))  # Pinecone reports the squared distance
        return cosine_score(score) if self.metric == "cosine" else float(score)

    def _drop(self) -> None:
        from pinecone import NotFoundError

        with contextlib.suppress(NotFoundError):  # an empty namespace does not exist: nothing to delete
            self.index.delete(delete_all=True, namespace=self.namespace)

    def _close(self) -> None:
        if self._owns_index:
            self.index.close()

    def _status(self, error: Exception) -> tuple[int | None, bool]:
        from pinecone import ApiError, PineconeConnectionError, PineconeTimeoutError

        if isinstance(error, ApiError):
            return error.status_code, False
        return None, isinstance(error, (PineconeConnectionError, PineconeTimeoutError))
