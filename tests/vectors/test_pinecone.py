"""The Pinecone adapter's own cases, and the loopback data plane checked against what Pinecone documents.

The server is tests/vectors/pinecone_server.py (its docstring names the API documents it follows); the adapter and
the SDK talk to it over real HTTP on loopback. Nothing here ran against the hosted service.
"""

from __future__ import annotations

import uuid

import httpx
import numpy as np
import pytest

from llmclient import IncompleteWriteError, InvalidRequestError, MissingAPIKeyError
from llmclient.vectors.pinecone import PineconeVectorIndex


def fresh(host: str, **options: object) -> PineconeVectorIndex:
    return PineconeVectorIndex(host, api_key="pc-test", namespace=f"ns-{uuid.uuid4().hex[:10]}", **options)  # type: ignore[arg-type]


def fail_next_upserts(host: str, namespace: str, **fault: object) -> None:
    """The loopback server's test switch (not part of Pinecone's API): fail upserts to `namespace`."""
    httpx.post(f"{host}/_loopback/fault", json={"namespace": namespace, **fault}).raise_for_status()


@pytest.mark.parametrize(("store", "stored"), [(False, 10), (True, 20)])
def test_a_failed_batch_says_what_was_stored(pinecone_server: dict[str, str], store: bool, stored: int) -> None:
    # store=True: Pinecone wrote the second batch but its answer was an error (a lost answer looks the same).
    host = pinecone_server["cosine"]
    index = fresh(host, batch_size=10)
    fail_next_upserts(host, index.namespace, after=1, status=400, store=store)
    ids = [f"id{i}" for i in range(25)]
    with pytest.raises(IncompleteWriteError, match=f"stored {stored} of 25 items") as caught:
        index.add(np.random.default_rng(0).standard_normal((25, 32)), ids=ids)
    error = caught.value
    assert (error.stored_ids, error.unstored_ids, error.uncertain_ids) == (ids[:stored], ids[stored:], [])
    assert (error.provider, error.status, error.retryable) == ("pinecone", 400, False)
    assert sorted(index.ids) == sorted(ids[:stored])
    index.add(np.ones((25 - stored, 32)), ids=error.unstored_ids)  # the rest, once the cause is fixed
    assert len(index) == 25
    index.drop()
    index.close()


def test_pinecone_limits_are_checked_before_anything_is_written(pinecone_server: dict[str, str]) -> None:
    index = fresh(pinecone_server["cosine"])
    with pytest.raises(InvalidRequestError, match="40960 per record"):
        index.add(np.ones((2, 32)), ids=["ok", "big"], metadata=[{}, {"text": "x" * 41_000}])
    with pytest.raises(InvalidRequestError, match="ASCII"):
        index.add(np.ones((2, 32)), ids=["ok", "café"])
    assert len(index) == 0
    index.close()


def test_the_api_key_comes_from_the_argument_or_the_environment(
    pinecone_server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="PINECONE_API_KEY"):
        PineconeVectorIndex(pinecone_server["cosine"])
    monkeypatch.setenv("PINECONE_API_KEY", "pc-from-env")
    PineconeVectorIndex(pinecone_server["cosine"]).close()


def test_the_loopback_server_answers_as_the_data_plane_api_documents(pinecone_server: dict[str, str]) -> None:
    from pinecone import Index

    index = Index(host=pinecone_server["euclidean"], api_key="pc-test")
    namespace = f"ns-{uuid.uuid4().hex[:10]}"
    origin, point = [0.0] * 32, [3.0, 4.0] + [0.0] * 30
    metadata = [{"genre": "drama", "year": 2019, "tags": ["a", "b"]}, {"genre": "comedy", "year": 2021}]
    written = index.upsert(vectors=[("o", origin, metadata[0]), ("p", point, metadata[1])], namespace=namespace)
    assert written.upserted_count == 2
    found = index.query(top_k=2, vector=origin, namespace=namespace, include_metadata=True)
    assert [(m.id, m.score) for m in found.matches] == [("o", 0.0), ("p", 25.0)]  # the squared distance, lowest first
    assert found.namespace == namespace and found.matches[0].metadata == metadata[0]
    assert isinstance(found.matches[0].metadata["year"], float)  # Pinecone keeps numbers as 64-bit floats
    for filter, ids in [
        ({"genre": "drama"}, ["o"]),
        ({"year": {"$gte": 2020}}, ["p"]),
        ({"genre": {"$in": ["comedy", "horror"]}}, ["p"]),
        ({"tags": {"$eq": "b"}}, ["o"]),  # a list field matches any of its items
        ({"$or": [{"year": 2019}, {"genre": "comedy"}]}, ["o", "p"]),
        ({"tags": {"$exists": False}}, ["p"]),
    ]:
        assert [m.id for m in index.query(top_k=5, vector=origin, namespace=namespace, filter=filter).matches] == ids
    stats = index.describe_index_stats()
    assert (stats.dimension, stats.metric, stats.namespaces[namespace].vector_count) == (32, "euclidean", 2)
    assert sorted(index.fetch(ids=["o", "x"], namespace=namespace).vectors) == ["o"]
    assert [item.id for page in index.list(namespace=namespace) for item in page.vectors] == ["o", "p"]
    index.delete(delete_all=True, namespace=namespace)
    index.close()

    raw = httpx.post(f"{pinecone_server['euclidean']}/query", json={"topK": 1, "vector": origin})
    assert raw.status_code == 401 and raw.headers["content-type"] == "text/plain"  # no Api-Key
    raw = httpx.post(f"{pinecone_server['euclidean']}/query", json={"topK": 1, "vector": [0.0]},
                     headers={"Api-Key": "k", "X-Pinecone-Api-Version": "2026-07"})  # fmt: skip
    assert raw.status_code == 400 and set(raw.json()) == {"code", "message", "details"}  # rpcStatus
    assert "dimension" in raw.json()["message"]
