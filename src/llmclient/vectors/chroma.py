"""`ChromaVectorIndex`: `VectorIndex`'s API on Chroma, in-process (embedded) or on a server (`chroma run`).

```python
from functools import partial
from llmclient import Client
from llmclient.vectors.chroma import ChromaVectorIndex

client = Client()
index = ChromaVectorIndex(None, "notes", embed=partial(client.embed, model="fake/embedder"))
await index.add_texts(["cats purr", "dogs bark"], ids=["c", "d"], metadata=[{"kind": "cat"}, {"kind": "dog"}])
best = (await index.search("cats purr", k=1, where={"kind": "cat"}))[0]
assert (best.id, best.metadata) == ("c", {"kind": "cat"})
index.drop()
```

Chroma searches an HNSW graph, so results are approximate: a query explores `ef_search` candidates (Chroma's
default 100). With `hnsw={"ef_search": n}` at least the collection's size, the search visits the whole graph and
returns what an exact scan returns (the tests compare with the in-memory index on 2,000 vectors that way). Texts
are Chroma's documents; metadata as described in `llmclient.vectors.base`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from llmclient.errors import MissingExtraError, VectorStoreError
from llmclient.vectors.base import EngineIndex
from llmclient.vectors.index import EmbedFunction, IndexRecord, SearchResult
from llmclient.vectors.records import Row, cosine_score, metadata_from
from llmclient.vectors.similarity import Metric

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

# Chroma's names for the metrics ("space"): https://docs.trychroma.com/docs/collections/configure (checked
# 2026-12-07). Its distances: cosine 1 - cos, ip 1 - a·b, l2 the squared euclidean distance.
_SPACES: dict[Metric, str] = {"cosine": "cosine", "dot": "ip", "euclidean": "l2"}
_METRICS: dict[str, Metric] = {space: metric for metric, space in _SPACES.items()}
_DIMENSIONS_KEY = "llmclient_dimensions"  # the collection's metadata: its length before any vector is stored


def chroma_client(location: str | None) -> ClientAPI:
    """A Chroma client with anonymous telemetry off: in memory (None), a folder, or a server's `http(s)://` URL."""
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as exc:
        raise MissingExtraError("the Chroma index needs chromadb: pip install 'llmclient[chroma]'") from exc
    settings = Settings(anonymized_telemetry=False)
    if location is None:
        return chromadb.EphemeralClient(settings=settings)
    if location.startswith(("http://", "https://")):
        from urllib.parse import urlsplit

        url = urlsplit(location)
        secure = url.scheme == "https"
        port = url.port or (443 if secure else 80)
        try:  # the client asks the server for its tenant at once
            return chromadb.HttpClient(host=url.hostname or "localhost", port=port, ssl=secure, settings=settings)
        except ValueError as exc:  # chromadb's word for "Could not connect to a Chroma server"
            raise VectorStoreError(f"chroma: {exc} ({location})", provider="chroma", retryable=True) from exc
    return chromadb.PersistentClient(path=location, settings=settings)


class ChromaVectorIndex(EngineIndex):
    """Vectors with ids, texts and metadata in a Chroma collection, with `VectorIndex`'s methods.

    Args:
        client: A `chromadb` client, or where to open one: None (in memory), a folder (embedded, persistent) or
            a server's URL (`http://127.0.0.1:8000`, e.g. from `chroma run`). A client opened here has anonymous
            telemetry off and is closed by `close()`.
        name: The collection (3–512 characters of `[a-zA-Z0-9._-]`); created on the first `add` when absent.
        embed: metric: dimensions: As for `VectorIndex`.
        hnsw: Chroma's HNSW settings for a new collection (`ef_search`, `ef_construction`, `max_neighbors`, ...);
            an `ef_search` at least the collection's size makes every search exact.
        batch_size: Items per write (default: the most the client accepts in one request).
    """

    backend = "chroma"

    def __init__(
        self,
        client: ClientAPI | str | None,
        name: str,
        *,
        embed: EmbedFunction | None = None,
        metric: Metric = "cosine",
        dimensions: int | None = None,
        hnsw: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
    ) -> None:
        self._owns_client = client is None or isinstance(client, str)
        self.client = chroma_client(client) if client is None or isinstance(client, str) else client
        self.name = name
        self.hnsw = dict(hnsw or {})
        self._collection: Collection | None = None
        super().__init__(
            embed=embed,
            metric=metric,
            dimensions=dimensions,
            batch_size=batch_size or self.client.get_max_batch_size(),
        )
        self._open()

    @property
    def collection(self) -> Collection:
        """The Chroma collection (after the first `add`, or when it already existed)."""
        if self._collection is None:
            raise KeyError(f"the Chroma collection {self.name!r} does not exist yet")
        return self._collection

    def _describe(self) -> tuple[int | None, Metric | None] | None:
        from chromadb.errors import NotFoundError

        try:
            # No embedding function: vectors always come from llmclient, and Chroma's default one would download
            # a model the first time it ran.
            self._collection = self.client.get_collection(self.name, embedding_function=None)
        except NotFoundError:
            return None
        return _shape(self._collection)

    def _create(self, dimensions: int) -> None:
        configuration: Any = {"hnsw": {**self.hnsw, "space": _SPACES[self.metric]}}  # Chroma validates the keys
        self._collection = self.client.get_or_create_collection(
            self.name,
            configuration=configuration,
            metadata={_DIMENSIONS_KEY: dimensions},
            embedding_function=None,
        )

    def _existing(self, ids: Sequence[str]) -> set[str]:
        return set(self.collection.get(ids=list(ids), include=[])["ids"])

    def _write(self, rows: Sequence[Row]) -> None:
        self.collection.add(
            ids=[row.id for row in rows],
            embeddings=np.stack([row.vector for row in rows]),
            metadatas=[row.fields() or None for row in rows],  # type: ignore[misc]  # Chroma refuses an empty dict
            documents=[row.text for row in rows],  # type: ignore[misc]  # None: an item without a text
        )

    def _delete(self, ids: Sequence[str]) -> None:
        self.collection.delete(ids=list(ids))

    def _fetch(self, ids: Sequence[str]) -> list[IndexRecord]:
        found = self.collection.get(ids=list(ids), include=["embeddings", "documents", "metadatas"])
        vectors, texts, metadatas = found["embeddings"], found["documents"], found["metadatas"]
        assert vectors is not None and texts is not None and metadatas is not None  # all three were included
        return [
            IndexRecord(id=id, vector=np.asarray(vector, dtype=np.float32), text=text, metadata=metadata_from(fields))
            for id, vector, text, fields in zip(found["ids"], vectors, texts, metadatas, strict=True)
        ]

    def _all_ids(self) -> list[str]:
        ids: list[str] = []
        while True:
            page = self.collection.get(include=[], limit=self.read_size, offset=len(ids))["ids"]
            ids.extend(page)
            if len(page) < self.read_size:
                return ids

    def _count(self) -> int:
        return self.collection.count()

    def _query(self, vector: npt.NDArray[np.float32], k: int, where: list[tuple[str, Any]]) -> list[SearchResult]:
        conditions: list[Any] = [{key: {"$eq": value}} for key, value in where]
        filter: Any = (conditions[0] if len(conditions) == 1 else {"$and": conditions}) if conditions else None
        query: Any = vector[None, :]  # one query: a (1, d) array
        found = self.collection.query(
            query_embeddings=query, n_results=k, where=filter, include=["documents", "metadatas", "distances"]
        )
        texts, metadatas, distances = found["documents"], found["metadatas"], found["distances"]
        assert texts is not None and metadatas is not None and distances is not None  # all three were included
        return [
            SearchResult(index=-1, score=self._score(distance), text=text, id=id, metadata=metadata_from(fields))
            for id, text, fields, distance in zip(found["ids"][0], texts[0], metadatas[0], distances[0], strict=True)
        ]

    def _score(self, distance: float) -> float:
        if self.metric == "euclidean":
            return math.sqrt(max(0.0, distance))
        similarity = 1.0 - distance  # both cosine and ip distances are 1 - similarity
        return cosine_score(similarity) if self.metric == "cosine" else similarity

    def _drop(self) -> None:
        from chromadb.errors import NotFoundError

        with contextlib.suppress(NotFoundError):  # dropped already (by another client): the same end state
            self.client.delete_collection(self.name)
        self._collection = None

    def _close(self) -> None:
        if self._owns_client:
            close_client(self.client)


def close_client(client: ClientAPI) -> None:
    """Close a Chroma client and the HTTP sessions chromadb leaves open (use it only on a client you made)."""
    # chromadb 1.5.9's HTTP client never closes its httpx sessions (its FastAPI component has no stop()): one for
    # the client, one for the admin client it makes to check the tenant. Each HttpClient has a system of its own
    # (a fresh identifier per client), so nothing else uses them; close them rather than leave sockets to the
    # garbage collector.
    servers = [getattr(client, "_server", None), getattr(getattr(client, "_admin_client", None), "_server", None)]
    client.close()  # type: ignore[attr-defined]  # chromadb's Client has it; ClientAPI does not say
    for server in servers:
        session = getattr(server, "_session", None)
        if session is not None:
            session.close()


def _shape(collection: Collection) -> tuple[int | None, Metric | None]:
    configuration = collection.configuration_json  # not .configuration: that warns about the absent embedder
    index = configuration.get("hnsw") or configuration.get("spann") or {}
    metric = _METRICS.get(index.get("space", "l2"))  # Chroma's default space is l2
    dimensions = collection.get_model().dimension or (collection.metadata or {}).get(_DIMENSIONS_KEY)
    return (int(dimensions) if dimensions else None), metric
