"""pgvector returns what the in-memory VectorIndex returns, on the same vectors, for every metric."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from llmclient import Client, DimensionMismatchError, VectorIndex
from llmclient.stores import PgVectorIndex
from llmclient.vectors.similarity import Metric


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_pgvector_returns_the_same_top_k_as_the_in_memory_index(postgres_url: str, metric: Metric) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((500, 24)).astype(np.float32)
    ids = [f"doc{i}" for i in range(500)]
    metadata = [{"lang": "en" if i % 3 else "de", "n": i} for i in range(500)]
    memory = VectorIndex(metric=metric)
    memory.add(vectors, ids=ids, metadata=metadata)
    shared = PgVectorIndex(postgres_url, f"parity_{metric}", metric=metric)
    shared.add(vectors, ids=ids, metadata=metadata)
    assert len(shared) == 500 and "doc7" in shared and shared.dimensions == 24

    for query in rng.standard_normal((5, 24)).astype(np.float32):
        for where in (None, {"lang": "de"}):
            expected = memory.search_vector(query, 10, where=where)
            found = shared.search_vector(query, 10, where=where)
            assert [hit.id for hit in found] == [hit.id for hit in expected]
            np.testing.assert_allclose([h.score for h in found], [h.score for h in expected], rtol=1e-5, atol=1e-5)
            assert found[0].metadata == expected[0].metadata
    np.testing.assert_allclose(shared.get("doc3").vector, memory.get("doc3").vector, rtol=1e-6)


async def test_texts_are_embedded_through_the_client_and_hnsw_finds_them(postgres_url: str) -> None:
    client = Client()
    index = PgVectorIndex(postgres_url, "notes", embed=partial(client.embed, model="fake/embedder"), hnsw=True)
    texts = [f"note number {i}" for i in range(50)]
    await index.add_texts(texts, metadata=[{"even": i % 2 == 0} for i in range(50)])
    best = (await index.search("note number 7", k=1))[0]
    assert best.text == "note number 7"
    assert all(hit.metadata["even"] for hit in await index.search("note number 7", k=5, where={"even": True}))
    assert client.ledger.records[0].kind == "embed"
    with pytest.raises(DimensionMismatchError):
        index.search_vector(np.ones(3), 1)
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.ones((1, index.dimensions or 0)), ids=[index.ids[0]])
    assert index.remove(index.ids[:10]) == 10 and len(index) == 40
    reopened = PgVectorIndex(postgres_url, "notes")
    assert reopened.dimensions == index.dimensions and len(reopened) == 40
    index.drop()
    assert len(PgVectorIndex(postgres_url, "notes")) == 0
