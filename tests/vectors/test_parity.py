"""Every engine returns what the in-memory VectorIndex returns: the same 2,000 vectors and metadata give the same
top-10 ids (and scores, metadata and texts) for cosine, dot and euclidean, with and without a `where` filter."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from llmclient import VectorIndex
from llmclient.vectors.base import EngineIndex
from llmclient.vectors.similarity import Metric

OpenIndex = Callable[..., EngineIndex]  # tests/vectors/conftest.py's open_index

COUNT, DIMENSIONS = 2000, 32
WHERE = [None, {"lang": "de"}, {"lang": "en", "even": True}, {"n": 1234}, {"lang": "xx"}]


def corpus() -> tuple[np.ndarray, list[str], list[dict[str, object]], list[str]]:
    rng = np.random.default_rng(31)
    vectors = rng.standard_normal((COUNT, DIMENSIONS)).astype(np.float32)
    ids = [f"doc{i}" for i in range(COUNT)]
    metadata: list[dict[str, object]] = [
        {"lang": ("en", "de", "fr")[i % 3], "n": i, "even": i % 2 == 0, "tags": ["a", str(i % 5)], "note": None}
        for i in range(COUNT)
    ]
    return vectors, ids, metadata, [f"text number {i}" for i in range(COUNT)]


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_top_10_matches_the_in_memory_index(open_index: OpenIndex, engine: str, metric: Metric) -> None:
    vectors, ids, metadata, texts = corpus()
    memory = VectorIndex(metric=metric)
    memory.add(vectors, ids=ids, metadata=metadata, texts=texts)
    index = open_index(engine, metric)
    assert index.add(vectors, ids=ids, metadata=metadata, texts=texts) == ids
    assert len(index) == COUNT and index.dimensions == DIMENSIONS

    queries = np.random.default_rng(7).standard_normal((4, DIMENSIONS)).astype(np.float32)
    for query in queries:
        for where in WHERE:
            expected = memory.search_vector(query, 10, where=where)
            found = index.search_vector(query, 10, where=where)
            assert [hit.id for hit in found] == [hit.id for hit in expected], (engine, metric, where)
            np.testing.assert_allclose(
                [hit.score for hit in found], [hit.score for hit in expected], rtol=1e-4, atol=1e-4
            )
            assert [(hit.text, hit.metadata) for hit in found] == [(hit.text, hit.metadata) for hit in expected]
