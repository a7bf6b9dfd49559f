"""`PgVectorIndex`: `VectorIndex`'s API on PostgreSQL with pgvector, for an index every process and machine shares.

```python fixture:postgres_url
from functools import partial
from llmclient import Client
from llmclient.stores import PgVectorIndex

client = Client()
index = PgVectorIndex(postgres_url, "notes", embed=partial(client.embed, model="fake/embedder"))
await index.add_texts(["cats purr", "dogs bark"], ids=["c", "d"], metadata=[{"kind": "cat"}, {"kind": "dog"}])
best = (await index.search("cats purr", k=1, where={"kind": "cat"}))[0]
assert (best.id, best.metadata) == ("c", {"kind": "cat"})
index.drop()
```

Search is exact by default (a scan over every row, like the in-memory index, so both return the same top-k); with
`hnsw=True` an HNSW index answers approximately and much faster on large tables. `where` filters are metadata
containment (`metadata @> {...}` in SQL). Texts are embedded by the `embed` function you pass, so they are priced,
cached and recorded by the client exactly as with `VectorIndex`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from llmclient.errors import DimensionMismatchError, InvalidRequestError
from llmclient.stores.base import identifier
from llmclient.stores.postgres import PostgresStore
from llmclient.vectors.index import EmbedFunction, IndexRecord, SearchResult, VectorIndex, _unit_rows
from llmclient.vectors.similarity import METRICS, Metric

if TYPE_CHECKING:
    import psycopg

# pgvector's operator and HNSW operator class per metric; a score is derived from the operator's distance.
_OPERATORS = {
    "cosine": ("<=>", "vector_cosine_ops"),
    "dot": ("<#>", "vector_ip_ops"),
    "euclidean": ("<->", "vector_l2_ops"),
}

_REGISTRY = """
CREATE TABLE IF NOT EXISTS llmclient_indexes (
    name       text PRIMARY KEY,
    dimensions integer NOT NULL,
    metric     text NOT NULL
)
"""


class PgVectorIndex:
    """Vectors with ids, texts and metadata in a PostgreSQL table (pgvector), with `VectorIndex`'s methods.

    Args:
        store: The database (or its URL).
        name: The index's name; its table is `llmclient_index_<name>` (lower-case letters, digits, underscores).
        embed: As for `VectorIndex`.
        metric: "cosine" (default; vectors stored unit-length), "dot" or "euclidean".
        dimensions: The vector length; by default taken from the first vectors added (or the existing table).
        hnsw: Search with an HNSW index (approximate, fast on large tables) instead of exactly; opening an
            existing index with `hnsw=True` builds it over the rows already there (load first, then build: faster).
            Recall is tuned on the server (`ALTER DATABASE ... SET hnsw.ef_search = 200`; pgvector's default 40).
    """

    def __init__(
        self,
        store: PostgresStore | str,
        name: str,
        *,
        embed: EmbedFunction | None = None,
        metric: Metric = "cosine",
        dimensions: int | None = None,
        hnsw: bool = False,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        self.store = store if isinstance(store, PostgresStore) else PostgresStore.shared(store)
        self.name = name
        self.table = identifier(f"llmclient_index_{name}")
        self.embed = embed
        self.metric: Metric = metric
        self.hnsw = hnsw
        self._dimensions = dimensions
        self._ready = False
        self._load_registry()

    def __repr__(self) -> str:
        return f"PgVectorIndex({self.name!r}, dimensions={self._dimensions}, metric={self.metric!r})"

    # -- table -------------------------------------------------------------------------------------------------

    def _load_registry(self) -> None:
        async def read(connection: psycopg.AsyncConnection[Any]) -> Any:
            await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await connection.execute(_REGISTRY)
            sql = "SELECT dimensions, metric FROM llmclient_indexes WHERE name = %s"
            return await (await connection.execute(sql, (self.name,))).fetchone()

        row = self.store.run(read)
        if row is None:
            if self._dimensions is not None:
                self.store.run(partial(self._create, dimensions=self._dimensions), deadline=_BULK_S)
            return
        dimensions, metric = row
        if metric != self.metric:
            raise InvalidRequestError(f"the index {self.name!r} exists with metric {metric!r}, not {self.metric!r}")
        if self._dimensions is not None and self._dimensions != dimensions:
            raise DimensionMismatchError(f"the index {self.name!r} holds {dimensions}-dimensional vectors")
        self._dimensions = dimensions
        self._ready = True
        if self.hnsw:  # building once over loaded rows is much faster than growing the graph row by row
            self.store.run(self._create_hnsw, deadline=_BULK_S)

    async def _create_hnsw(self, connection: psycopg.AsyncConnection[Any]) -> None:
        operator_class = _OPERATORS[self.metric][1]
        await connection.execute(
            f"CREATE INDEX IF NOT EXISTS {self.table}_hnsw ON {self.table} USING hnsw (embedding {operator_class})"
        )

    async def _create(self, connection: psycopg.AsyncConnection[Any], dimensions: int) -> None:
        async with connection.transaction():
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (seq bigserial, id text PRIMARY KEY, text text, "
                f"metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({int(dimensions)}) NOT NULL)"
            )
            await connection.execute(
                f"CREATE INDEX IF NOT EXISTS {self.table}_metadata ON {self.table} USING gin (metadata)"
            )
            if self.hnsw:
                await self._create_hnsw(connection)
            await connection.execute(
                "INSERT INTO llmclient_indexes (name, dimensions, metric) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (self.name, dimensions, self.metric),
            )
        self._dimensions = dimensions
        self._ready = True

    def drop(self) -> None:
        """Delete the index's table and its registration."""

        async def drop(connection: psycopg.AsyncConnection[Any]) -> None:
            async with connection.transaction():
                await connection.execute(f"DROP TABLE IF EXISTS {self.table}")
                await connection.execute("DELETE FROM llmclient_indexes WHERE name = %s", (self.name,))

        self.store.run(drop)
        self._ready = False

    # -- the VectorIndex API -----------------------------------------------------------------------------------

    @property
    def dimensions(self) -> int | None:
        """The vector length (None until the first vectors are added)."""
        return self._dimensions

    def __len__(self) -> int:
        if not self._ready:
            return 0
        [(count,)] = self.store.fetch(f"SELECT count(*) FROM {self.table}")
        return int(count)

    def __contains__(self, id: object) -> bool:
        if not self._ready or not isinstance(id, str):
            return False
        return bool(self.store.fetch(f"SELECT 1 FROM {self.table} WHERE id = %s", (id,)))

    @property
    def ids(self) -> list[str]:
        """Every id, in insertion order."""
        if not self._ready:
            return []
        return [row[0] for row in self.store.fetch(f"SELECT id FROM {self.table} ORDER BY seq", ())]

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
        vectors = await VectorIndex._embed(self, list(texts))  # type: ignore[arg-type]
        given, work = self._adding(vectors, ids=ids, metadata=metadata, texts=texts)
        await self.store.call(work, retries=0, deadline=_BULK_S)
        return given

    def add(
        self,
        vectors: npt.ArrayLike,
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Add vectors with optional ids (else random ones), metadata and texts, in one COPY.

        Raises:
            DimensionMismatchError: The vectors' length differs from the index's.
            ValueError: Lengths differ, an id is repeated or already stored, or a vector holds NaN or Inf.
        """
        given, work = self._adding(vectors, ids=ids, metadata=metadata, texts=texts)
        self.store.run(work, retries=0, deadline=_BULK_S)
        return given

    def _adding(
        self,
        vectors: npt.ArrayLike,
        *,
        ids: Sequence[str] | None,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        texts: Sequence[str | None] | None,
    ) -> tuple[list[str], Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]]:
        """The ids and the database work of adding a batch, checked first by the in-memory index's rules."""
        batch = VectorIndex(metric=self.metric, dimensions=self._dimensions)
        import uuid

        given = list(ids) if ids is not None else [uuid.uuid4().hex for _ in range(np.asarray(vectors).shape[0])]
        batch.add(vectors, ids=given, metadata=metadata, texts=texts)
        dimensions = int(batch.dimensions or 0)
        rows = [
            (record.id, record.text, json.dumps(record.metadata, ensure_ascii=False), _vector_text(record.vector))
            for record in batch.records()
        ]

        async def copy(connection: psycopg.AsyncConnection[Any]) -> None:
            if not self._ready:
                await self._create(connection, dimensions)
            async with connection.transaction():
                existing = await (
                    await connection.execute(f"SELECT id FROM {self.table} WHERE id = ANY(%s) LIMIT 5", (given,))
                ).fetchall()
                if existing:
                    raise ValueError(f"ids already in the index: {[row[0] for row in existing]}; remove() them first")
                cursor = connection.cursor()
                async with cursor.copy(f"COPY {self.table} (id, text, metadata, embedding) FROM STDIN") as stream:
                    for row in rows:
                        await stream.write_row(row)

        return given, copy

    def remove(self, ids: Sequence[str]) -> int:
        """Remove items by id (unknown ids are ignored); returns how many were removed."""
        if not self._ready:
            return 0
        return len(self.store.fetch(f"DELETE FROM {self.table} WHERE id = ANY(%s) RETURNING 1", (list(ids),)))

    def get(self, id: str) -> IndexRecord:
        """The stored vector, text and metadata of `id` (KeyError when absent)."""
        rows = []
        if self._ready:
            sql = f"SELECT id, text, metadata, embedding::text FROM {self.table} WHERE id = %s"
            rows = self.store.fetch(sql, (id,))
        if not rows:
            raise KeyError(id)
        return _record(rows[0])

    def records(self) -> Iterator[IndexRecord]:
        """Every item in insertion order."""
        if not self._ready:
            return iter(())
        sql = f"SELECT id, text, metadata, embedding::text FROM {self.table} ORDER BY seq"
        return iter([_record(row) for row in self.store.run(partial(_all, sql=sql), deadline=_BULK_S)])

    async def search(
        self, query: str | npt.ArrayLike, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[SearchResult]:
        """The `k` items nearest to `query` (a text, embedded with `embed`, or a vector), best first."""
        vector = (await VectorIndex._embed(self, [query]))[0] if isinstance(query, str) else query  # type: ignore[arg-type]
        work = self._searching(vector, k, where)
        return [] if work is None else _results(self.metric, await self.store.call(work))

    def search_vector(
        self, vector: npt.ArrayLike, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[SearchResult]:
        """`search` with a vector query. `where` keeps items whose metadata contains these key–value pairs."""
        work = self._searching(vector, k, where)
        return [] if work is None else _results(self.metric, self.store.run(work))

    def _searching(
        self, vector: npt.ArrayLike, k: int, where: Mapping[str, Any] | None
    ) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[list[tuple[Any, ...]]]] | None:
        """The database work of a search, its arguments checked first (None: the index is empty)."""
        query = np.asarray(vector, dtype=np.float32)
        if query.ndim != 1:
            raise ValueError(f"the query must be one vector (1-D), got shape {query.shape}")
        if self._dimensions is not None and query.shape[0] != self._dimensions:
            raise DimensionMismatchError(
                f"the index holds {self._dimensions}-dimensional vectors; the query has {query.shape[0]}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if callable(where):
            raise TypeError("a PostgreSQL index filters with a dict of metadata values, not a function")
        if not self._ready:
            return None
        if self.metric == "cosine":
            query = _unit_rows(query[None, :])[0]
        operator = _OPERATORS[self.metric][0]
        filter_sql = "" if where is None else "WHERE metadata @> %s::jsonb"
        sql = (
            f"SELECT seq, id, text, metadata, embedding {operator} %s::vector AS distance FROM {self.table} "
            f"{filter_sql} ORDER BY distance, seq LIMIT %s"
        )
        params: tuple[Any, ...] = (_vector_text(query),)
        if where is not None:
            params += (json.dumps(dict(where), ensure_ascii=False),)
        params += (k,)
        hnsw = self.hnsw

        async def search(connection: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            async with connection.transaction():
                if hnsw:  # keep scanning the graph until `k` rows pass the filter (pgvector 0.8)
                    await connection.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                else:  # exact: never let the planner pick an approximate index
                    await connection.execute("SET LOCAL enable_indexscan = off")
                return await (await connection.execute(sql, params)).fetchall()

        return search


# Seconds a bulk operation may take (a COPY of many rows, an HNSW build) before the store counts as silent.
_BULK_S = 3600.0


async def _all(connection: psycopg.AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    return await (await connection.execute(sql)).fetchall()


def _results(metric: Metric, rows: list[tuple[Any, ...]]) -> list[SearchResult]:
    return [
        SearchResult(index=int(seq) - 1, score=_score(metric, distance), text=text, id=id, metadata=metadata)
        for seq, id, text, metadata, distance in rows
    ]


def _score(metric: Metric, distance: float) -> float:
    if metric == "cosine":
        return float(min(1.0, max(-1.0, 1.0 - distance)))
    if metric == "dot":
        return float(-distance)  # pgvector's <#> is the negative inner product
    return float(distance)


def _vector_text(vector: npt.NDArray[np.float32]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector.tolist()) + "]"


def _record(row: Sequence[Any]) -> IndexRecord:
    id, text, metadata, embedding = row
    return IndexRecord(id=id, vector=np.asarray(json.loads(embedding), dtype=np.float32), text=text, metadata=metadata)
