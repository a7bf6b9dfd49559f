"""`QdrantVectorIndex`: `VectorIndex`'s API on Qdrant, in-process (qdrant-client's local mode) or on a server.

```python
from functools import partial
from llmclient import Client
from llmclient.vectors.qdrant import QdrantVectorIndex

client = Client()
index = QdrantVectorIndex(":memory:", "notes", embed=partial(client.embed, model="fake/embedder"))
await index.add_texts(["cats purr", "dogs bark"], ids=["c", "d"], metadata=[{"kind": "cat"}, {"kind": "dog"}])
best = (await index.search("cats purr", k=1, where={"kind": "cat"}))[0]
assert (best.id, best.metadata) == ("c", {"kind": "cat"})
index.close()
```

The same code runs against a server: pass its URL (`http://localhost:6333`) or a `QdrantClient` of your own.
Local mode scans every point (exact). A server searches its HNSW index once a segment outgrows Qdrant's
indexing threshold, approximately; `exact=True` asks it for a full scan instead. Qdrant's point ids are unsigned
ints or UUIDs, so an item's id becomes a UUID derived from it (version 5) and the id itself is kept in the payload.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from llmclient.errors import InvalidRequestError, MissingExtraError
from llmclient.vectors.base import EngineIndex
from llmclient.vectors.index import EmbedFunction, IndexRecord, SearchResult
from llmclient.vectors.records import ID_FIELD, TEXT_FIELD, Row, cosine_score, metadata_from
from llmclient.vectors.similarity import Metric

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

# Qdrant's distances (https://qdrant.tech/documentation/concepts/search/#metrics, checked 2026-12-07): its score
# is the cosine or dot similarity, or the euclidean distance itself.
_DISTANCES: dict[Metric, str] = {"cosine": "Cosine", "dot": "Dot", "euclidean": "Euclid"}
_METRICS: dict[str, Metric] = {distance: metric for metric, distance in _DISTANCES.items()}
_POINT_IDS = uuid.UUID("6f1d5c1e-3a51-4f0e-9a59-58e2b8a8e1c4")  # the namespace of the UUIDs derived from our ids


@functools.lru_cache(maxsize=1 << 16)  # an add asks for each id twice: is it stored, then the write
def point_id(id: str) -> str:
    """The Qdrant point id that holds the item `id` (stable across processes and machines)."""
    return str(uuid.uuid5(_POINT_IDS, id))


def qdrant_client(location: str, *, api_key: str | None = None) -> QdrantClient:
    """A `QdrantClient`: in memory (`":memory:"`), a folder (local mode) or a server's `http(s)://` URL."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as exc:
        raise MissingExtraError("the Qdrant index needs qdrant-client: pip install 'llmclient[qdrant]'") from exc
    if location == ":memory:":
        return QdrantClient(location=location)
    if location.startswith(("http://", "https://")):
        return QdrantClient(url=location, api_key=api_key)
    return QdrantClient(path=location)


class QdrantVectorIndex(EngineIndex):
    """Vectors with ids, texts and metadata in a Qdrant collection, with `VectorIndex`'s methods.

    Args:
        client: A `QdrantClient`, or where to open one: `":memory:"`, a folder (local mode, persistent) or a
            server's URL. A client opened here is closed by `close()`.
        name: The collection; created on the first `add` when absent.
        embed: metric: dimensions: As for `VectorIndex`.
        exact: On a server, scan every point instead of searching the HNSW index (local mode always scans).
        api_key: The server's API key, for a URL.
        batch_size: Points per upsert.
    """

    backend = "qdrant"

    def __init__(
        self,
        client: QdrantClient | str,
        name: str,
        *,
        embed: EmbedFunction | None = None,
        metric: Metric = "cosine",
        dimensions: int | None = None,
        exact: bool = False,
        api_key: str | None = None,
        batch_size: int = 1000,
    ) -> None:
        self._owns_client = isinstance(client, str)
        self.client = qdrant_client(client, api_key=api_key) if isinstance(client, str) else client
        self.name = name
        from qdrant_client.local.qdrant_local import QdrantLocal

        # Local mode is plain Python over numpy arrays with no locking of its own, and it warns that search
        # parameters do nothing there (it always scans): serialise its calls and send it none.
        self.local = isinstance(self.client._client, QdrantLocal)
        self.exact = exact
        super().__init__(embed=embed, metric=metric, dimensions=dimensions, batch_size=batch_size, serialise=self.local)
        self._open()

    def _describe(self) -> tuple[int | None, Metric | None] | None:
        if not self.client.collection_exists(self.name):
            return None
        vectors = self.client.get_collection(self.name).config.params.vectors
        from qdrant_client import models

        if not isinstance(vectors, models.VectorParams):
            raise InvalidRequestError(f"the Qdrant collection {self.name!r} has named vectors; use one without")
        return vectors.size, _METRICS.get(vectors.distance.value)

    def _create(self, dimensions: int) -> None:
        from qdrant_client import models

        distance = models.Distance(_DISTANCES[self.metric])
        self.client.create_collection(self.name, vectors_config=models.VectorParams(size=dimensions, distance=distance))

    def _existing(self, ids: Sequence[str]) -> set[str]:
        wanted = {point_id(id): id for id in ids}  # no payload to read back: local mode copies every one it returns
        points = self.client.retrieve(self.name, ids=list(wanted), with_payload=False, with_vectors=False)
        return {wanted[str(point.id)] for point in points}

    def _write(self, rows: Sequence[Row]) -> None:
        from qdrant_client import models

        batch = models.Batch(
            ids=[point_id(row.id) for row in rows],
            vectors=np.stack([row.vector for row in rows]).tolist(),
            payloads=[row.fields(text=True, id=True) for row in rows],
        )
        self.client.upsert(self.name, points=batch, wait=True)

    def _delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        selector = models.PointIdsList(points=[point_id(id) for id in ids])
        self.client.delete(self.name, points_selector=selector, wait=True)

    def _fetch(self, ids: Sequence[str]) -> list[IndexRecord]:
        points = self.client.retrieve(self.name, ids=[point_id(id) for id in ids], with_payload=True, with_vectors=True)
        return [
            IndexRecord(
                id=_id_of(point),
                vector=np.asarray(point.vector, dtype=np.float32),
                text=(point.payload or {}).get(TEXT_FIELD),
                metadata=metadata_from(point.payload),
            )
            for point in points
        ]

    def _all_ids(self) -> list[str]:
        ids: list[str] = []
        offset: Any = None
        while True:
            points, offset = self.client.scroll(
                self.name, limit=self.read_size, offset=offset, with_payload=[ID_FIELD], with_vectors=False
            )
            ids.extend(_id_of(point) for point in points)
            if offset is None:
                return ids

    def _count(self) -> int:
        return self.client.count(self.name, exact=True).count

    def _query(self, vector: npt.NDArray[np.float32], k: int, where: list[tuple[str, Any]]) -> list[SearchResult]:
        from qdrant_client import models

        found = self.client.query_points(
            self.name,
            query=vector.tolist(),
            limit=k,
            query_filter=models.Filter(must=[_condition(key, value) for key, value in where]) if where else None,
            search_params=models.SearchParams(exact=True) if self.exact and not self.local else None,
            with_payload=True,
        )
        return [
            SearchResult(
                index=-1,
                score=cosine_score(point.score) if self.metric == "cosine" else float(point.score),
                text=(point.payload or {}).get(TEXT_FIELD),
                id=_id_of(point),
                metadata=metadata_from(point.payload),
            )
            for point in found.points
        ]

    def _drop(self) -> None:
        self.client.delete_collection(self.name)

    def _close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _status(self, error: Exception) -> tuple[int | None, bool]:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(error, UnexpectedResponse):
            return error.status_code, False
        return None, isinstance(error, ResponseHandlingException)  # no answer: refused, reset or timed out


def _condition(key: str, value: Any) -> models.FieldCondition:
    from qdrant_client import models

    if isinstance(value, (str, bool)):
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))
    # A number as a closed range: it matches an int and a float of the same value (1 == 1.0), as the in-memory
    # index and the other engines do; MatchValue would match integers only.
    return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))


def _id_of(point: Any) -> str:
    """Our id of a point (a point another program wrote, without one, goes by its Qdrant id)."""
    payload = point.payload or {}
    return str(payload.get(ID_FIELD, point.id))
