"""Open an index on any engine the same way, and drop it after the test.

Chroma runs embedded (in memory) and as a server (`chroma run`, the session's `chroma_url`); Qdrant in local mode;
Pinecone's adapter against the loopback data plane (the session's `pinecone_server`, one index per metric).
Servers start only when a test asks for their engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llmclient.vectors.base import EngineIndex
from llmclient.vectors.similarity import Metric

ENGINES = ["chroma", "chroma-server", "qdrant", "pinecone"]
# ef_search >= the collection's size: Chroma's HNSW search then visits every vector, so it is exact (2,000 here).
EXACT_HNSW = {"ef_search": 2000}
PINECONE_INDEX = {"cosine": "cosine", "dot": "dot", "euclidean": "euclidean"}  # 32 dimensions (root conftest)

OpenIndex = Callable[..., EngineIndex]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn (a test narrows the list with its own `parametrize("engine", ...)`)."""
    name: str = request.param
    return name


@pytest.fixture
def open_index(request: pytest.FixtureRequest) -> Iterator[OpenIndex]:
    """`open_index(engine, metric, dimensions=32, **options)`: a fresh, empty index on that engine."""
    opened: list[EngineIndex] = []

    def open(engine: str, metric: Metric = "cosine", *, dimensions: int = 32, **options: Any) -> EngineIndex:
        name = f"test-{uuid.uuid4().hex[:12]}"
        index: EngineIndex
        if engine in ("chroma", "chroma-server"):
            from llmclient.vectors.chroma import ChromaVectorIndex

            where = request.getfixturevalue("chroma_url") if engine == "chroma-server" else None
            options.setdefault("hnsw", EXACT_HNSW)
            index = ChromaVectorIndex(where, name, metric=metric, **options)
        elif engine == "qdrant":
            from llmclient.vectors.qdrant import QdrantVectorIndex

            index = QdrantVectorIndex(":memory:", name, metric=metric, **options)
        elif engine == "pinecone":
            from llmclient.vectors.pinecone import PineconeVectorIndex

            hosts = request.getfixturevalue("pinecone_server")
            host = hosts["docs"] if dimensions == 8 else hosts[PINECONE_INDEX[metric]]
            index = PineconeVectorIndex(host, api_key="pc-test", namespace=name, metric=metric, **options)
        else:
            raise ValueError(engine)
        opened.append(index)
        return index

    yield open
    for index in opened:
        index.drop()
        index.close()


@pytest.fixture
def reopen() -> Callable[..., EngineIndex]:
    """`reopen(index, **options)`: the same collection through the same client, opened again (as another process
    would)."""
    return _reopen


def _reopen(index: EngineIndex, **options: Any) -> EngineIndex:
    from llmclient.vectors.chroma import ChromaVectorIndex
    from llmclient.vectors.pinecone import PineconeVectorIndex
    from llmclient.vectors.qdrant import QdrantVectorIndex

    if isinstance(index, ChromaVectorIndex):
        return ChromaVectorIndex(index.client, index.name, **options)
    if isinstance(index, QdrantVectorIndex):
        return QdrantVectorIndex(index.client, index.name, **options)
    assert isinstance(index, PineconeVectorIndex)
    return PineconeVectorIndex(index.index, namespace=index.namespace, **options)
