"""The vector-database adapters behave as the in-memory VectorIndex does, on every engine: texts embedded through
the client, ids, metadata, removal, and bad input refused with a typed error before anything is written."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest

from llmclient import (
    Client,
    DimensionMismatchError,
    IncompleteWriteError,
    InvalidRequestError,
    MissingExtraError,
    VectorIndex,
    VectorStoreError,
    ZeroVectorWarning,
)
from llmclient.vectors.base import EngineIndex
from llmclient.vectors.protocol import VectorStore

OpenIndex = Callable[..., EngineIndex]  # tests/vectors/conftest.py's open_index

FRUIT = ["apples are red", "bananas are yellow", "cherries are dark red", "grapes grow in bunches"]


async def test_texts_are_embedded_through_the_client(open_index: OpenIndex, engine: str) -> None:
    client = Client()
    index = open_index(engine, dimensions=8, embed=partial(client.embed, model="fake/embedder"))
    kinds = [{"kind": "fruit", "colour": colour} for colour in ("red", "yellow", "red", "green")]
    assert await index.add_texts(FRUIT, ids=["a", "b", "c", "g"], metadata=kinds) == ["a", "b", "c", "g"]
    assert [record.kind for record in client.ledger.records] == ["embed"]  # one call for the four texts

    best = await index.search("cherries are dark red", k=2, where={"colour": "red"})
    assert best[0].id == "c" and {hit.id for hit in best} == {"a", "c"}
    assert best[0].text == "cherries are dark red" and best[0].metadata == kinds[2]
    assert best[0].score == pytest.approx(1.0, abs=1e-5) and best[0].index == -1

    generated = await index.add_texts(["plums are purple"])
    assert len(generated) == 1 and generated[0] in index and len(index) == 5
    assert sorted(index.ids) == sorted(["a", "b", "c", "g", *generated])
    assert index.get("b").text == "bananas are yellow" and index.get("b").metadata == kinds[1]
    memory = VectorIndex(embed=partial(client.embed, model="fake/embedder"))
    await memory.add_texts(FRUIT, ids=["a", "b", "c", "g"])
    np.testing.assert_allclose(index.get("g").vector, memory.get("g").vector, rtol=1e-6, atol=1e-6)
    assert {record.id for record in index.records()} == set(index.ids)
    assert index.remove(["a", "nope", "a"]) == 1 and "a" not in index and len(index) == 4
    with pytest.raises(KeyError):
        index.get("a")


async def test_searches_run_concurrently_off_the_event_loop(open_index: OpenIndex, engine: str) -> None:
    vectors = np.random.default_rng(3).standard_normal((200, 32)).astype(np.float32)
    index = open_index(engine)
    index.add(vectors, ids=[f"v{i}" for i in range(200)])
    found = await asyncio.gather(*(index.search(vector, k=3) for vector in vectors[:8]))
    assert [hits[0].id for hits in found] == [f"v{i}" for i in range(8)]


def test_metadata_reads_back_exactly(open_index: OpenIndex, engine: str) -> None:
    special = {"nested": {"a": [1, 2.5, None]}, "none": None, "big": 2**60, "a.b": 1, "$x": "y", "名": "猫", "f": 0.1}
    plain = {"名": "猫", "f": 0.1, "n": 3, "ok": True}  # every value an engine field (no JSON copy where ints stay)
    index = open_index(engine)
    index.add(np.ones((3, 32)), ids=["special", "plain", "none"], metadata=[special, plain, None], texts=[None] * 3)
    for id, metadata in [("special", special), ("plain", plain), ("none", {})]:
        record = index.get(id)
        assert record.metadata == metadata and record.text is None
        assert {key: type(value) for key, value in record.metadata.items()} == {
            key: type(value) for key, value in metadata.items()
        }  # 3 stays an int, 0.1 a float
    hits = index.search_vector(np.ones(32), 3, where={"名": "猫", "f": 0.1})
    assert {hit.id: hit.metadata for hit in hits} == {"special": special, "plain": plain}


async def test_a_dimension_mismatch_is_refused_before_anything_is_written(
    open_index: OpenIndex, engine: str, reopen: Callable[..., EngineIndex]
) -> None:
    client = Client()
    index = open_index(engine, embed=partial(client.embed, model="fake/embedder"))  # 8-dimensional vectors
    index.add(np.ones((2, 32)), ids=["x", "y"])
    with pytest.raises(DimensionMismatchError, match="32-dimensional"):
        await index.add_texts(["too short"], ids=["z"])
    assert len(client.ledger) == 1  # the embedding was paid for and recorded, not lost
    with pytest.raises(DimensionMismatchError):
        index.search_vector(np.ones(8))
    assert len(index) == 2 and "z" not in index
    with pytest.raises(DimensionMismatchError):
        reopen(index, dimensions=16)
    assert reopen(index).dimensions == 32


def test_ids_already_stored_are_refused_before_anything_is_written(open_index: OpenIndex, engine: str) -> None:
    index = open_index(engine)
    index.add(np.ones((2, 32)), ids=["a", "b"])
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.ones((2, 32)), ids=["c", "a"])
    with pytest.raises(ValueError, match="repeated"):
        index.add(np.ones((2, 32)), ids=["d", "d"])
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((1, 32), np.nan), ids=["e"])
    assert sorted(index.ids) == ["a", "b"]


def test_a_where_the_engines_cannot_answer_alike_is_refused(open_index: OpenIndex, engine: str) -> None:
    index = open_index(engine)
    index.add(np.ones((1, 32)), ids=["a"], metadata=[{"tags": ["x"], "a.b": 1}])
    for where in ({"tags": ["x"]}, {"a.b": 1}, {"n": None}, {"_llmclient_metadata": "{}"}, {"big": 2**60}):
        with pytest.raises(InvalidRequestError, match="cannot filter"):
            index.search_vector(np.ones(32), where=where)
    with pytest.raises(TypeError, match="not a function"):
        index.search_vector(np.ones(32), where=lambda metadata: True)  # type: ignore[arg-type]
    assert index.search_vector(np.ones(32), where={"tags": "x"}) == []  # a list never equals one of its items


def test_reopening_with_another_metric_is_refused(
    open_index: OpenIndex, engine: str, reopen: Callable[..., EngineIndex]
) -> None:
    index = open_index(engine, "dot")
    index.add(np.ones((1, 32)), ids=["a"])
    with pytest.raises(InvalidRequestError, match="'dot' metric"):
        reopen(index, metric="euclidean")


def test_every_index_has_the_same_api(open_index: OpenIndex, engine: str) -> None:
    assert isinstance(VectorIndex(), VectorStore)
    index = open_index(engine)
    assert isinstance(index, VectorStore)
    assert index.search_vector(np.ones(32)) == [] and len(index) == 0 and index.ids == []
    index.add(np.ones((1, 32)), ids=["a"])
    index.drop()
    assert len(index) == 0 and index.search_vector(np.ones(32)) == []


@pytest.mark.parametrize("engine", ["chroma", "chroma-server", "qdrant"])
def test_a_write_that_fails_part_way_says_what_was_stored(
    open_index: OpenIndex, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = open_index(engine, batch_size=10)
    write = index._write

    def write_then_lose_the_collection(rows: object) -> None:
        write(rows)  # type: ignore[arg-type]
        index.client.delete_collection(index.name)  # type: ignore[attr-defined]  # as another program might

    monkeypatch.setattr(index, "_write", write_then_lose_the_collection)
    ids = [f"p{i}" for i in range(25)]
    with pytest.raises(IncompleteWriteError) as caught:
        index.add(np.ones((25, 32)), ids=ids)
    error = caught.value
    # The second batch failed and the database could not even say what it held: those ten are uncertain.
    assert (error.stored_ids, error.uncertain_ids, error.unstored_ids) == (ids[:10], ids[10:20], ids[20:])
    assert error.provider == index.backend and isinstance(error.__cause__, VectorStoreError)
    assert "stored 10 of 25 items, 10 unknown" in str(error)


def test_telemetry_is_off_in_the_chroma_clients_this_package_opens(open_index: OpenIndex) -> None:
    for engine in ("chroma", "chroma-server"):
        assert open_index(engine).client.get_settings().anonymized_telemetry is False  # type: ignore[attr-defined]


def test_an_unreachable_server_is_a_retryable_typed_error() -> None:
    from qdrant_client import QdrantClient

    from llmclient.vectors.chroma import ChromaVectorIndex
    from llmclient.vectors.qdrant import QdrantVectorIndex

    with pytest.raises(VectorStoreError, match="Could not connect") as chroma:
        ChromaVectorIndex("http://127.0.0.1:9", "nowhere")
    client = QdrantClient(url="http://127.0.0.1:9", check_compatibility=False)
    with pytest.raises(VectorStoreError, match="refused") as qdrant:
        QdrantVectorIndex(client, "nowhere")
    client.close()
    assert chroma.value.retryable and qdrant.value.retryable and qdrant.value.provider == "qdrant"


@pytest.mark.parametrize(
    ("module", "extra"), [("chromadb", "chroma"), ("qdrant_client", "qdrant"), ("pinecone", "pinecone")]
)
def test_a_missing_engine_names_its_extra(monkeypatch: pytest.MonkeyPatch, module: str, extra: str) -> None:
    from llmclient.vectors.chroma import ChromaVectorIndex
    from llmclient.vectors.pinecone import PineconeVectorIndex
    from llmclient.vectors.qdrant import QdrantVectorIndex

    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to `import`
    open = {"chroma": lambda: ChromaVectorIndex(None, "abc"), "qdrant": lambda: QdrantVectorIndex(":memory:", "abc"),
            "pinecone": lambda: PineconeVectorIndex("http://127.0.0.1:9", api_key="k")}[extra]  # fmt: skip
    with pytest.raises(MissingExtraError, match=rf"llmclient\[{extra}\]"):
        open()


def test_a_zero_query_scores_zero_under_cosine(open_index: OpenIndex, engine: str) -> None:
    index = open_index(engine)
    index.add(np.eye(32, dtype=np.float32)[:3], ids=["a", "b", "c"])
    with pytest.warns(ZeroVectorWarning):
        hits = index.search_vector(np.zeros(32), 3)
    assert sorted(hit.id for hit in hits) == ["a", "b", "c"] and {hit.score for hit in hits} == {0.0}
