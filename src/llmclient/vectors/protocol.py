"""`VectorStore`: the API every vector index has, written down once (a proposal for all index backends).

`VectorIndex`, `PgVectorIndex` and the adapters in `llmclient.vectors` (Chroma, Qdrant, Pinecone) all satisfy it
already, structurally: code typed against it runs on any of them, and `isinstance(index, VectorStore)` holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy.typing as npt

from llmclient.vectors.index import EmbedFunction, IndexRecord, SearchResult
from llmclient.vectors.similarity import Metric


@runtime_checkable
class VectorStore(Protocol):
    """The API every vector index has: `VectorIndex`, `PgVectorIndex` and the adapters in `llmclient.vectors`.

    Code written against it runs on any of them: the same ids, `where` filters and score conventions (cosine and
    dot are similarities, larger is closer; euclidean is a distance, smaller is closer).
    """

    embed: EmbedFunction | None
    metric: Metric

    @property
    def dimensions(self) -> int | None: ...

    @property
    def ids(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def __contains__(self, id: object) -> bool: ...

    async def add_texts(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]: ...

    def add(
        self,
        vectors: npt.ArrayLike,
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> list[str]: ...

    def remove(self, ids: Sequence[str]) -> int: ...

    def get(self, id: str) -> IndexRecord: ...

    def records(self) -> Iterator[IndexRecord]: ...

    async def search(self, query: str | npt.ArrayLike, k: int = 10, *, where: Any = None) -> list[SearchResult]: ...

    def search_vector(self, vector: npt.ArrayLike, k: int = 10, *, where: Any = None) -> list[SearchResult]: ...
