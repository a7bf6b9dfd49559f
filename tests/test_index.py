"""VectorIndex: adding texts and vectors, search with filters, removal, save/load round trips."""

from __future__ import annotations

import json
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmclient import Client, DimensionMismatchError, SearchResult, VectorIndex, ZeroVectorWarning
from llmclient.vectors.index import IndexRecord

DOCS = ["cats purr", "dogs bark", "birds sing", "fish swim"]
META: list[dict[str, Any] | None] = [{"animal": "cat", "legs": 4}, {"animal": "dog", "legs": 4}, {"legs": 2}, None]


@pytest.fixture
def client() -> Client:
    return Client(providers={"fake": {"embedding_dimensions": 16}})


@pytest.fixture
async def index(client: Client) -> VectorIndex:
    index = VectorIndex(embed=partial(client.embed, model="fake/e"))
    await index.add_texts(DOCS, ids=["c", "d", "b", "f"], metadata=META)
    return index


async def test_add_texts_and_search_by_text(index: VectorIndex, client: Client) -> None:
    assert len(index) == 4 and index.dimensions == 16 and index.ids == ["c", "d", "b", "f"]
    hits = await index.search("dogs bark", k=2)
    assert isinstance(hits[0], SearchResult)
    assert (hits[0].id, hits[0].index, hits[0].text, hits[0].metadata) == ("d", 1, "dogs bark", META[1])
    assert hits[0].score == pytest.approx(1.0) and hits[0].score <= 1.0
    assert len(hits) == 2 and hits[0].score >= hits[1].score
    # Every text went through the client: one embed call recorded; the query, a repeat, came from its cache.
    assert len(client.ledger) == 1
    assert (await client.embed(DOCS, model="fake/e")).cached == 4


async def test_search_filters_on_metadata(index: VectorIndex) -> None:
    four_legged = await index.search("cats purr", k=10, where={"legs": 4})
    assert [hit.id for hit in four_legged] == ["c", "d"]
    assert [hit.index for hit in four_legged] == [0, 1]  # positions in the whole index, not in the subset
    assert await index.search("cats purr", where={"animal": "cow"}) == []
    two = await index.search("x", where=lambda metadata: metadata.get("legs") == 2)
    assert [hit.id for hit in two] == ["b"]
    assert (await index.search("fish swim", k=1, where={}))[0].metadata == {}


async def test_vectors_ids_and_errors() -> None:
    index = VectorIndex(metric="dot")
    assert index.add(np.eye(3, dtype=np.float32)) == ["0", "1", "2"]
    assert index.add([1.0, 1.0, 0.0], ids=["x"], texts=["both"]) == ["x"]
    assert index.add(np.zeros((1, 3))) == ["3"]
    best = index.search_vector([1.0, 1.0, 0.0], k=1)[0]
    assert (best.id, best.text, best.score) == ("x", "both", 2.0)
    with pytest.raises(DimensionMismatchError):
        index.add(np.ones((1, 4)))
    with pytest.raises(DimensionMismatchError):
        index.search_vector([1.0, 0.0])
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.ones((1, 3)), ids=["x"])
    with pytest.raises(ValueError, match="repeated"):
        index.add(np.ones((2, 3)), ids=["y", "y"])
    with pytest.raises(ValueError, match="2 ids for 1"):
        index.add(np.ones((1, 3)), ids=["y", "z"])
    with pytest.raises(TypeError, match="strings"):
        index.add(np.ones((1, 3)), ids=[7])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="NaN"):
        index.add([[np.nan, 0.0, 0.0]])
    with pytest.raises(TypeError, match="JSON"):
        index.add(np.ones((1, 3)), metadata=[{"when": object()}])
    with pytest.raises(ValueError, match="k must be"):
        index.search_vector([1.0, 0.0, 0.0], k=0)
    with pytest.raises(ValueError, match="no embed function"):
        await index.add_texts(["a"])
    with pytest.raises(TypeError, match="list of texts"):
        await index.add_texts("abc")
    assert len(index) == 5  # nothing half-added by the failures


def test_metrics_rank_as_documented() -> None:
    corpus = np.array([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    for metric, expected in (("cosine", ["0", "1", "2"]), ("dot", ["1", "0", "2"]), ("euclidean", ["0", "2", "1"])):
        index = VectorIndex(metric=metric)  # type: ignore[arg-type]
        index.add(corpus)
        assert [hit.id for hit in index.search_vector([1.0, 0.0], k=3)] == expected, metric
    with pytest.raises(ValueError, match="unknown metric"):
        VectorIndex(metric="l1")  # type: ignore[arg-type]


def test_cosine_index_stores_unit_vectors_and_warns_on_zero_vectors() -> None:
    index = VectorIndex()
    index.add([[3.0, 4.0]])
    np.testing.assert_allclose(index.vectors, [[0.6, 0.8]], rtol=1e-6)
    assert not index.vectors.flags.writeable
    with pytest.warns(ZeroVectorWarning):
        index.add([[0.0, 0.0]], ids=["zero"])
    hits = index.search_vector([3.0, 4.0], k=2)
    assert [(hit.id, round(hit.score, 6)) for hit in hits] == [("0", 1.0), ("zero", 0.0)]


def test_remove_get_and_records() -> None:
    index = VectorIndex(metric="dot")
    index.add(np.eye(4), ids=["a", "b", "c", "d"], metadata=[{"n": i} for i in range(4)], texts=list("ABCD"))
    assert index.remove(["b", "zzz", "d"]) == 2
    assert index.remove(["zzz"]) == 0
    assert index.ids == ["a", "c"] and "b" not in index and "c" in index
    record = index.get("c")
    assert isinstance(record, IndexRecord)
    assert (record.id, record.text, record.metadata, record.vector.tolist()) == ("c", "C", {"n": 2}, [0, 0, 1, 0])
    assert [r.id for r in index.records()] == ["a", "c"]
    assert index.search_vector([0, 0, 1, 0], k=1)[0].index == 1  # positions shift down after removal
    with pytest.raises(KeyError):
        index.get("b")
    assert index.add(np.eye(4)[:1]) == ["0"]  # generated ids skip ones in use


async def test_save_and_load_round_trip(index: VectorIndex, tmp_path: Path, client: Client) -> None:
    path = index.save(tmp_path / "sub" / "animals.index")
    assert path == tmp_path / "sub" / "animals.index" and path.exists()  # the exact name: no ".npz" added
    assert [p.name for p in path.parent.iterdir()] == ["animals.index"]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as data:  # plain arrays only: loads without pickle
        assert sorted(data.files) == ["manifest", "vectors"]
        assert data["vectors"].dtype == np.float32
        manifest = json.loads(str(data["manifest"][()]))
    assert manifest["format"] == "llmclient.VectorIndex" and manifest["metadata"][0] == META[0]
    loaded = VectorIndex.load(path, embed=partial(client.embed, model="fake/e"))
    assert (loaded.ids, loaded.metric, loaded.dimensions) == (index.ids, index.metric, index.dimensions)
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    assert await loaded.search("birds sing", k=4) == await index.search("birds sing", k=4)
    assert loaded.add(np.ones(16)) == ["0"]
    empty = VectorIndex.load(VectorIndex().save(tmp_path / "empty.npz"))
    assert len(empty) == 0 and empty.search_vector([1.0], k=3) == []


def test_load_rejects_other_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(ValueError, match="not a saved VectorIndex"):
        VectorIndex.load(tmp_path / "other.npz")
    bad = {"format": "llmclient.VectorIndex", "version": 99}
    np.savez(tmp_path / "future.npz", vectors=np.ones((1, 2)), manifest=np.array(json.dumps(bad)))
    with pytest.raises(ValueError, match="version 1"):
        VectorIndex.load(tmp_path / "future.npz")
    broken = {"format": "llmclient.VectorIndex", "version": 1, "metric": "dot", "dimensions": 2,
              "ids": ["a", "a"], "texts": [None, None], "metadata": [{}, {}]}  # fmt: skip
    np.savez(tmp_path / "broken.npz", vectors=np.ones((2, 2)), manifest=np.array(json.dumps(broken)))
    with pytest.raises(ValueError, match="inconsistent"):
        VectorIndex.load(tmp_path / "broken.npz")


def test_metadata_is_stored_as_json_would_read_it_back() -> None:
    index = VectorIndex(metric="dot")
    original = {"tags": ("a", "b"), "nested": {"x": 1}}
    index.add(np.ones((1, 2)), metadata=[original])
    original["nested"]["x"] = 2  # type: ignore[index]
    assert index.get("0").metadata == {"tags": ["a", "b"], "nested": {"x": 1}}


def test_growing_one_vector_at_a_time() -> None:
    index = VectorIndex(metric="euclidean", dimensions=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(100):
            index.add([float(i), 0.0])
    assert len(index) == 100
    assert [hit.id for hit in index.search_vector([41.2, 0.0], k=3)] == ["41", "42", "40"]
    with pytest.raises(ValueError, match="dimensions"):
        VectorIndex(dimensions=0)


async def test_embed_function_returning_an_array() -> None:
    async def embed(texts: list[str]) -> np.ndarray:
        return np.array([[len(text), 1.0] for text in texts])

    index = VectorIndex(embed=embed, metric="euclidean")
    await index.add_texts(["a", "abc"])
    assert (await index.search("ab", k=1))[0].text == "a"

    async def wrong(texts: list[str]) -> np.ndarray:
        return np.ones((len(texts) + 1, 2))

    with pytest.raises(ValueError, match="embed returned"):
        await VectorIndex(embed=wrong).add_texts(["a"])
