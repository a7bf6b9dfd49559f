"""llmclient.vectors.similarity against scipy and scikit-learn on random data, and every documented edge case."""

from __future__ import annotations

import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from sklearn.metrics.pairwise import cosine_similarity

from llmclient import DimensionMismatchError, LLMClientError, ZeroVectorWarning
from llmclient.vectors import similarity
from llmclient.vectors.similarity import (
    DEFAULT_CHUNK_BYTES,
    METRICS,
    SCRATCH_BYTES_PER_ROW,
    Metric,
    cosine,
    dot,
    euclidean,
    pairwise,
    top_k,
)

DTYPES = (np.float16, np.float32, np.float64)
FUNCTIONS: dict[str, Callable[..., Any]] = {"cosine": cosine, "dot": dot, "euclidean": euclidean}


# -- references (float64, from scipy / scikit-learn) -------------------------------------------------------------


def reference(metric: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    left, right = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        return cosine_similarity(left, right)  # zero rows score 0, as documented for llmclient
    if metric == "dot":
        return left @ right.T
    return cdist(left, right, "euclidean")


def tolerance(metric: str, a: np.ndarray, b: np.ndarray, out_dtype: np.dtype[Any]) -> float:
    """An absolute tolerance scaled to the magnitudes involved and the output precision."""
    eps = 1e-5 if out_dtype == np.float32 else 1e-9
    if metric == "cosine":
        return eps
    scale = float(np.abs(a).astype(np.float64).max(initial=0) * np.abs(b).astype(np.float64).max(initial=0))
    width = a.shape[-1]
    if metric == "dot":
        return eps * (scale * width + 1)
    # Euclidean: float64 expansion loses up to sqrt(eps64 · |a|²) near zero distance.
    return eps * (np.sqrt(scale * width) + 1) + 1e-5


def values(dtype: type[np.floating[Any]]) -> st.SearchStrategy[float]:
    # Tenths in [-100, 100]: exact zeros happen (zero vectors), magnitudes stay where float16 is finite.
    return st.integers(-1000, 1000).map(lambda i: i / 10)


@st.composite
def matrices(draw: st.DrawFn, rows: int | None = None, width: int | None = None) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    rows = rows if rows is not None else draw(st.integers(1, 6))
    width = width if width is not None else draw(st.integers(1, 8))
    items = draw(st.lists(values(dtype), min_size=rows * width, max_size=rows * width))
    return np.array(items, dtype=np.float64).reshape(rows, width).astype(dtype)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    width = draw(st.integers(1, 8))
    a = draw(matrices(width=width))
    b = draw(matrices(width=width))
    return a, b, draw(st.booleans()) and a.shape[0] == 1, draw(st.booleans()) and b.shape[0] == 1


def expected_dtype(*arrays: np.ndarray) -> np.dtype[Any]:
    return np.dtype(np.float64 if any(x.dtype == np.float64 for x in arrays) else np.float32)


# -- pairwise scores ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=pairs(), metric=st.sampled_from(METRICS))
def test_scores_match_scipy_and_sklearn(data: tuple[np.ndarray, np.ndarray, bool, bool], metric: Metric) -> None:
    a, b, a_vector, b_vector = data
    want = reference(metric, a, b)
    left = a[0] if a_vector else a
    right = b[0] if b_vector else b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroVectorWarning)  # zero rows are drawn; the warning is tested below
        got = FUNCTIONS[metric](left, right)
    if a_vector and b_vector:
        assert isinstance(got, float)
        got_matrix = np.array([[got]])
    else:
        assert isinstance(got, np.ndarray)
        assert got.dtype == expected_dtype(a, b)
        shape = {(True, False): (b.shape[0],), (False, True): (a.shape[0],), (False, False): want.shape}
        assert got.shape == shape[(a_vector, b_vector)]
        got_matrix = got.reshape(want.shape)
    assert np.isfinite(got_matrix).all()
    np.testing.assert_allclose(got_matrix, want, rtol=0, atol=tolerance(metric, a, b, expected_dtype(a, b)))
    if metric == "cosine":
        assert (np.abs(got_matrix) <= 1.0).all()
    if metric == "euclidean":
        assert (got_matrix >= 0).all()


@settings(max_examples=100, deadline=None)
@given(a=matrices(), scale=st.sampled_from([1e-3, 1.0, 7.0, 1e4]))
def test_cosine_is_clamped_and_scale_free(a: np.ndarray, scale: float) -> None:
    wide = a.astype(np.float64)
    assume_nonzero = (np.abs(wide).sum(axis=1) > 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroVectorWarning)
        self_scores = cosine(wide, wide * scale)
    assert isinstance(self_scores, np.ndarray)
    assert (np.abs(self_scores) <= 1.0).all()
    if assume_nonzero:
        np.testing.assert_allclose(np.diag(self_scores), 1.0, atol=1e-12)


def test_output_precision_follows_the_inputs() -> None:
    vectors = {dtype: np.ones((2, 3), dtype=dtype) for dtype in DTYPES}
    for name, function in FUNCTIONS.items():
        assert function(vectors[np.float16], vectors[np.float16]).dtype == np.float32, name
        assert function(vectors[np.float32], vectors[np.float16]).dtype == np.float32, name
        assert function(vectors[np.float64], vectors[np.float32]).dtype == np.float64, name
        assert function(np.ones((2, 3), dtype=np.int64), vectors[np.float32]).dtype == np.float64, name
        assert isinstance(function([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]), float), name


def test_known_values() -> None:
    assert cosine([1, 0], [0, 1]) == 0.0
    assert cosine([1, 1], [-2, -2]) == pytest.approx(-1.0, abs=1e-15)
    assert dot([1, 2, 3], [4, 5, 6]) == 32.0
    assert euclidean([0, 0], [3, 4]) == 5.0
    assert euclidean(np.zeros((1, 2)), np.array([[3.0, 4.0], [0.0, 0.0]])).tolist() == [[5.0, 0.0]]
    assert pairwise([1, 0], [[1, 0], [0, 1]], metric="dot").tolist() == [1.0, 0.0]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise([1], [1], metric="manhattan")  # type: ignore[arg-type]


# -- edge cases --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "shape"),
    [
        (np.zeros(3), np.ones(3), ()),
        (np.zeros(3), np.ones((4, 3)), (4,)),
        (np.ones((2, 3)), np.zeros(3), (2,)),
        (np.vstack([np.zeros(3), np.ones(3)]), np.ones((4, 3)), (2, 4)),
    ],
)
def test_zero_vectors_score_zero_with_a_warning(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> None:
    with pytest.warns(ZeroVectorWarning, match="zero vector") as caught:
        scores = np.asarray(cosine(a, b))
    assert caught[0].filename == __file__  # points at the caller, not at llmclient
    assert scores.shape == shape
    assert not np.isnan(scores).any()
    zero_rows = scores.reshape(-1, 4)[0] if shape == (2, 4) else scores
    assert (zero_rows == 0.0).all()


def test_zero_vectors_in_top_k_score_zero_with_a_warning() -> None:
    corpus = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    with pytest.warns(ZeroVectorWarning) as caught:
        found = top_k([1.0, 0.0], corpus, 3)
    assert caught[0].filename == __file__
    assert found.indices.tolist() == [1, 0, 2]
    assert found.scores.tolist() == [1.0, 0.0, -1.0]
    with pytest.warns(ZeroVectorWarning):
        assert top_k([0.0, 0.0], corpus, 2).scores.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("where", ["a-vector", "b-vector", "a-matrix", "b-matrix"])
def test_nan_and_inf_raise_value_error(bad: float, metric: Metric, where: str) -> None:
    # The query is zero where the bad value sits: a BLAS that skipped zero terms would hide it.
    a = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    b = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 0.0, 1.0]], dtype=np.float32)
    target = a if where.startswith("a") else b
    target[-1 if where.endswith("matrix") else 0, 0] = bad
    left = a[0] if where == "a-vector" else a
    right = b[0] if where == "b-vector" else b
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from numpy on the way
        with pytest.raises(ValueError, match="NaN or Inf"):
            FUNCTIONS[metric](left, right)
        query, corpus = (right, left) if where.startswith("a") else (left, right)
        corpus = corpus if corpus.ndim == 2 else corpus[None, :]
        with pytest.raises(ValueError, match="NaN or Inf"):
            top_k(query, corpus, 2, metric=metric, chunk_size=1)


@pytest.mark.parametrize("metric", METRICS)
def test_nan_anywhere_in_a_large_corpus_is_found(metric: Metric) -> None:
    corpus = np.random.default_rng(0).standard_normal((5000, 16)).astype(np.float32)
    corpus[4321, 7] = np.nan
    query = np.zeros(16, dtype=np.float32)
    query[0] = 1.0
    with pytest.raises(ValueError, match="corpus contains NaN or Inf"):
        top_k(query, corpus, 5, metric=metric, chunk_size=1000)


def test_float32_overflow_says_to_use_float64() -> None:
    big = np.full((2, 3), 1e30, dtype=np.float32)
    with pytest.raises(ValueError, match="float64"):
        cosine(big, big)
    with pytest.raises(ValueError, match="float64"):
        dot(big, big)
    assert cosine(big.astype(np.float64), big.astype(np.float64)).tolist() == [[1.0, 1.0], [1.0, 1.0]]  # type: ignore[union-attr]


@pytest.mark.parametrize("function", [cosine, dot, euclidean])
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.ones(3), np.ones(4)),
        (np.ones(3), np.ones((2, 4))),
        (np.ones((2, 3)), np.ones((5, 4))),
        (np.ones(3), np.ones(1)),  # numpy would broadcast this; llmclient never does
    ],
)
def test_dimension_mismatch_is_a_typed_error(function: Callable[..., Any], a: np.ndarray, b: np.ndarray) -> None:
    with pytest.raises(DimensionMismatchError, match="dimensions") as caught:
        function(a, b)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, LLMClientError)


def test_dimension_mismatch_in_top_k() -> None:
    with pytest.raises(DimensionMismatchError):
        top_k(np.ones(3), np.ones((5, 4)), 2)


@pytest.mark.parametrize(
    ("a", "message"),
    [
        (np.ones((2, 2, 2)), "1-D"),
        (np.ones(0), "no dimensions"),
        (np.ones((3, 0)), "no dimensions"),
        (np.array(["a", "b"]), "real numbers"),
        (np.array([1 + 2j, 3j]), "real numbers"),
    ],
)
def test_bad_shapes_and_dtypes(a: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cosine(a, a)


def test_empty_matrices_give_empty_results() -> None:
    assert np.asarray(cosine(np.ones((0, 3)), np.ones((2, 3)))).shape == (0, 2)
    assert np.asarray(euclidean(np.ones(3), np.ones((0, 3)))).shape == (0,)
    found = top_k(np.ones(3), np.ones((0, 3)), 5)
    assert found.indices.shape == (0,) and found.scores.shape == (0,)


# -- top-k -------------------------------------------------------------------------------------------------------


@st.composite
def searches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, int | None, bool]:
    width = draw(st.integers(1, 6))
    corpus = draw(matrices(rows=draw(st.integers(1, 40)), width=width))
    queries = draw(matrices(rows=draw(st.integers(1, 3)), width=width))
    k = draw(st.integers(1, corpus.shape[0] + 3))
    chunk = draw(st.none() | st.integers(1, corpus.shape[0] + 2))
    return queries, corpus, k, chunk, draw(st.booleans()) and queries.shape[0] == 1


@settings(max_examples=300, deadline=None)
@given(search=searches(), metric=st.sampled_from(METRICS))
def test_top_k_matches_a_brute_force_reference(
    search: tuple[np.ndarray, np.ndarray, int, int | None, bool], metric: Metric
) -> None:
    queries, corpus, k, chunk, single = search
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroVectorWarning)
        found = top_k(queries[0] if single else queries, corpus, k, metric=metric, chunk_size=chunk)
    width = min(k, corpus.shape[0])
    indices = found.indices[None, :] if single else found.indices
    scores = found.scores[None, :] if single else found.scores
    assert indices.shape == scores.shape == (queries.shape[0], width)
    assert indices.dtype == np.int64
    assert scores.dtype == (np.float64 if corpus.dtype == np.float64 else np.float32)
    # Compared by score, not index: near-ties may rank either way within the tolerance.
    want = reference(metric, queries.astype(scores.dtype), corpus)  # the query is cast to the computation dtype
    atol = tolerance(metric, queries, corpus, scores.dtype) * 4
    for row in range(queries.shape[0]):
        assert len(set(indices[row].tolist())) == width
        np.testing.assert_allclose(scores[row], want[row, indices[row]], rtol=0, atol=atol)
        best = np.sort(want[row]) if metric == "euclidean" else -np.sort(-want[row])
        np.testing.assert_allclose(scores[row], best[:width], rtol=0, atol=atol)
        steps = np.diff(scores[row])
        assert ((steps >= 0) if metric == "euclidean" else (steps <= 0)).all()


def test_euclidean_top_k_is_nearest_first() -> None:
    corpus = np.array([[10.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 0.5]])
    found = top_k([0.0, 0.0], corpus, 3, metric="euclidean")
    assert found.indices.tolist() == [3, 1, 2]
    assert found.scores.tolist() == [0.5, 1.0, 3.0]


def test_ties_keep_the_lower_index_and_k_larger_than_the_corpus_returns_all() -> None:
    corpus = np.ones((5, 3), dtype=np.float32)
    assert top_k(np.ones(3), corpus, 3, metric="dot").indices.tolist() == [0, 1, 2]
    assert top_k(np.ones(3), corpus, 50).indices.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_must_be_a_positive_int(k: Any) -> None:
    with pytest.raises(ValueError, match="k must be"):
        top_k(np.ones(3), np.ones((4, 3)), k)


def test_top_k_argument_errors() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        top_k(np.ones(3), np.ones((4, 3)), 1, metric="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="corpus must be 2-D"):
        top_k(np.ones(3), np.ones(3), 1)
    with pytest.raises(ValueError, match="chunk_size"):
        top_k(np.ones(3), np.ones((4, 3)), 1, chunk_size=-5)
    with pytest.raises(ValueError, match="query contains NaN"):
        top_k([np.nan, 1.0, 1.0], np.ones((4, 3)), 1)


@pytest.mark.parametrize("einsum", [True, False])  # both one-query kernels, whichever this machine would pick
def test_top_k_agrees_with_numpy_argpartition(einsum: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity, "EINSUM_FOR_ONE_QUERY", einsum)
    rng = np.random.default_rng(7)
    corpus = rng.standard_normal((20_000, 64)).astype(np.float32)
    query = rng.standard_normal(64).astype(np.float32)
    scores = corpus @ query
    expected = np.argsort(-scores)[:10]
    for chunk in (None, 999, 20_000):
        found = top_k(query, corpus, 10, metric="dot", chunk_size=chunk)
        assert found.indices.tolist() == expected.tolist()
        np.testing.assert_allclose(found.scores, scores[expected], rtol=1e-5)


def test_float16_corpus_and_float64_query_compute_in_the_corpus_precision() -> None:
    corpus = np.eye(4, dtype=np.float16)
    found = top_k(np.array([0.1, 0.9, 0.0, 0.0], dtype=np.float64), corpus, 2)
    assert found.indices.tolist() == [1, 0]
    assert found.scores.dtype == np.float32
    assert top_k([1.0, 0, 0, 0], corpus.astype(np.float64), 1).scores.dtype == np.float64


def _peak(function: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("metric", METRICS)
def test_peak_memory_is_bounded_by_the_chunk(metric: Metric) -> None:
    rng = np.random.default_rng(3)
    corpus = rng.standard_normal((200_000, 16)).astype(np.float32)
    query = rng.standard_normal(16).astype(np.float32)
    whole = _peak(lambda: corpus @ query)  # 800 kB of scores, before argpartition's 1.6 MB of indices
    chunked = _peak(lambda: top_k(query, corpus, 10, metric=metric, chunk_size=2_000))
    # Per chunk row: a score, its int64 partition index, masks, and norms for cosine and euclidean.
    assert chunked < 2_000 * SCRATCH_BYTES_PER_ROW + 16_384
    assert chunked < whole / 10


def test_float16_chunks_are_converted_one_at_a_time() -> None:
    corpus = np.ones((100_000, 32), dtype=np.float16)
    peak = _peak(lambda: top_k(np.ones(32), corpus, 5, chunk_size=1_000))
    # One float32 chunk at a time, never the whole corpus converted (12.8 MB).
    assert peak < 1_000 * (32 * 4 + SCRATCH_BYTES_PER_ROW) + 16_384


def test_default_chunk_stays_within_its_budget() -> None:
    corpus = np.ones((1_000_000, 2), dtype=np.float32)
    peak = _peak(lambda: top_k(np.ones(2), corpus, 3, metric="dot"))
    assert peak < DEFAULT_CHUNK_BYTES + 65_536


def test_memmap_corpus(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = rng.standard_normal((3_000, 8)).astype(np.float32)
    path = tmp_path / "corpus.f32"
    data.tofile(path)
    mapped: npt.NDArray[np.float32] = np.memmap(path, dtype=np.float32, mode="r", shape=(3_000, 8))
    query = rng.standard_normal(8).astype(np.float32)
    for metric in METRICS:
        on_disk = top_k(query, mapped, 7, metric=metric, chunk_size=500)
        in_memory = top_k(query, data, 7, metric=metric)
        assert on_disk.indices.tolist() == in_memory.indices.tolist()
    del mapped


async def test_client_similarity_has_one_dtype_whatever_the_inputs() -> None:
    from llmclient import Client

    client = Client()
    one = await client.similarity("cat", "dog", model="fake/e")
    assert type(one) is float
    forms = [
        await client.similarity("cat", ["dog", "fish"], model="fake/e"),
        await client.similarity(["cat"], ["dog", "fish"], model="fake/e"),
        await client.similarity(np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0]]), model="fake/e"),
        await client.similarity([1, 0], [[1, 0]], model="fake/e"),  # were float64, texts float32
    ]
    assert [(form.dtype, form.shape) for form in forms] == [
        (np.float32, (2,)),
        (np.float32, (1, 2)),
        (np.float32, (2,)),
        (np.float32, (1,)),
    ]
