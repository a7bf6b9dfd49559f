"""Cosine, dot and euclidean scores between vectors, and top-k search, in plain numpy (no client needed).

```python
import numpy as np
from llmclient.vectors.similarity import cosine, euclidean, top_k

corpus = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]], dtype=np.float32)
assert cosine([1, 0], [2, 0]) == 1.0                     # vector – vector: a float
assert cosine([1, 0], corpus).shape == (3,)              # vector – matrix: one score per row
assert euclidean(corpus, corpus).shape == (3, 3)         # matrix – matrix: every pair
best = top_k([1.0, 0.1], corpus, k=2)                    # the 2 most similar rows, best first
assert best.indices.tolist() == [0, 2]
```

Shapes: a 1-D argument is one vector, a 2-D argument is one vector per row; the result drops the dimension of each
1-D argument (vector–vector → `float`, vector–matrix → 1-D, matrix–matrix → 2-D). Vectors of different lengths
raise `DimensionMismatchError`; nothing is broadcast.

Precision: float16 and float32 inputs are computed and returned as float32; float64 (and integer) inputs as
float64. `top_k` computes in the corpus's precision instead, so a float32 corpus is never copied to float64.

Edge cases: NaN or Inf in an input raise `ValueError` (so does a float32 overflow, with a hint to pass float64).
Cosine with a zero vector is 0.0, with a `ZeroVectorWarning`, never NaN. Cosine results are clamped to [-1, 1].
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from llmclient.errors import DimensionMismatchError, InvalidRequestError

Metric = Literal["cosine", "dot", "euclidean"]
"""`cosine` and `dot`: larger is more similar; `euclidean`: a distance, smaller is more similar."""

METRICS: tuple[Metric, ...] = ("cosine", "dot", "euclidean")

FloatArray = npt.NDArray[np.floating[Any]]

DEFAULT_CHUNK_BYTES = 4 * 2**20
"""Scratch memory one step of `top_k` (and of vector–matrix `euclidean`) may use when no chunk size is given."""

SCRATCH_BYTES_PER_ROW = 40
"""Scratch bytes per corpus row and query in `top_k`, rounded up: the score, its int64 partition index, masks and
(for cosine and euclidean) the row's norm; measured with tracemalloc in tests/test_similarity.py."""


def _blas_threads() -> int:
    """The CPUs this process may use, capped by the usual BLAS thread settings."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            cpus = min(cpus, int(value))
    return cpus


# One query scans the corpus with a matrix–vector product. On a few cores, einsum's single-threaded SIMD loop streams
# it about twice as fast as the OpenBLAS gemv behind `corpus @ q`, at any chunk size (bench/bench_similarity.py on
# 2 CPUs); with more cores, that threaded BLAS kernel can read memory faster than one core can, so it is used there.
EINSUM_FOR_ONE_QUERY = _blas_threads() <= 4


class ZeroVectorWarning(UserWarning):
    """A cosine similarity involved a zero vector, whose direction is undefined; it was scored 0.0."""


class TopK(NamedTuple):
    """The result of `top_k`: row indices into the corpus and their scores, best first.

    For a 1-D query both are 1-D arrays of length k; for a 2-D query, arrays of shape (queries, k).
    """

    indices: npt.NDArray[np.int64]
    scores: FloatArray


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float | FloatArray:
    """The cosine similarity of `a` and `b`: the cosine of the angle between them, in [-1, 1].

    Use it for text embeddings: it compares direction (meaning) and ignores length.

    Args:
        a: A vector (1-D) or one vector per row (2-D).
        b: A vector (1-D) or one vector per row (2-D), of the same length as `a`'s.

    Returns:
        A float for two vectors, a 1-D array for a vector and a matrix, a 2-D array `(len(a), len(b))` for two
        matrices. A zero vector scores 0.0 against anything, with a `ZeroVectorWarning`.

    Raises:
        DimensionMismatchError: The vectors have different lengths.
        ValueError: An input holds NaN or Inf, is not 1-D or 2-D, or has no dimensions.
    """
    left, right, dtype, shape = _pair(a, b)
    with np.errstate(all="ignore"):  # NaN, Inf and overflow become the ValueErrors documented above
        left_norms = _norms(left, "a")
        right_norms = _norms(right, "b")
        # Finite norms mean finite inputs, and products of unit vectors cannot overflow: no check of the result.
        left_zero, right_zero = left_norms == 0, right_norms == 0
        left_norms[left_zero] = 1  # a zero vector's products are exactly 0: dividing by 1 scores it 0.0, not NaN
        right_norms[right_zero] = 1
        rows, columns, width = left.shape[0], right.shape[0], left.shape[1]
        if (rows + columns) * width < 2 * rows * columns:  # normalising the inputs is the cheaper way
            scores = (left / left_norms[:, None]) @ (right / right_norms[:, None]).T
        else:  # e.g. one query against a large corpus: divide the few scores instead of copying the corpus
            scores = left @ right.T
            scores /= left_norms[:, None]
            scores /= right_norms[None, :]
    if left_zero.any() or right_zero.any():
        _warn_zero()
    np.clip(scores, -1.0, 1.0, out=scores)
    return _shaped(scores, shape, dtype)


def dot(a: npt.ArrayLike, b: npt.ArrayLike) -> float | FloatArray:
    """The dot product of `a` and `b`; equal to cosine for unit-length vectors, and cheaper.

    Shapes, precision and errors as in `cosine`.
    """
    left, right, dtype, shape = _pair(a, b)
    with np.errstate(all="ignore"):
        scores = left @ right.T
        _check_finite(scores, left, right)
    return _shaped(scores, shape, dtype)


def euclidean(a: npt.ArrayLike, b: npt.ArrayLike, *, chunk_size: int | None = None) -> float | FloatArray:
    """The euclidean (L2) distance between `a` and `b`: smaller is more similar; it counts magnitude too.

    Shapes, precision and errors as in `cosine`. Vector–matrix distances are computed from the differences in
    chunks of `chunk_size` rows (bounded memory); matrix–matrix distances from the expansion
    |a|² + |b|² − 2a·b accumulated in float64, so near-zero distances stay accurate.
    """
    left, right, dtype, shape = _pair(a, b)
    with np.errstate(all="ignore"):
        if left.shape[0] == 1 or right.shape[0] == 1:
            single, many = (left, right) if left.shape[0] == 1 else (right, left)
            distances = _distances_to(single[0], many, chunk_size)
            scores = distances[None, :] if single is left else distances[:, None]
        else:
            wide_left, wide_right = left.astype(np.float64), right.astype(np.float64)
            squared = np.einsum("ij,ij->i", wide_left, wide_left)[:, None]
            squared = squared + np.einsum("ij,ij->i", wide_right, wide_right)
            squared -= 2.0 * (wide_left @ wide_right.T)
            _check_finite(squared, left, right)
            np.maximum(squared, 0.0, out=squared)
            scores = np.sqrt(squared).astype(dtype, copy=False)
    return _shaped(scores, shape, dtype)


def pairwise(a: npt.ArrayLike, b: npt.ArrayLike, *, metric: Metric = "cosine") -> float | FloatArray:
    """`cosine`, `dot` or `euclidean`, chosen by name."""
    if metric == "cosine":
        return cosine(a, b)
    if metric == "dot":
        return dot(a, b)
    if metric == "euclidean":
        return euclidean(a, b)
    raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def top_k(
    query: npt.ArrayLike,
    corpus: npt.ArrayLike,
    k: int,
    *,
    metric: Metric = "cosine",
    chunk_size: int | None = None,
) -> TopK:
    """The `k` corpus rows most similar to `query`, best first, scanning the corpus in chunks.

    Cosine and dot return the largest scores; euclidean the smallest distances (the nearest rows). Only
    `chunk_size` rows are scored at a time and only the best `k` of each chunk are kept, so the scratch memory is
    at most about `chunk_size × (40 × queries + 4 × dimensions when the corpus needs converting)` bytes whatever the
    corpus size, and a corpus in a `numpy.memmap` larger than memory works. Ties keep the lower index.

    Args:
        query: One vector (1-D) or one query per row (2-D).
        corpus: The vectors to search, one per row (2-D).
        k: How many results per query; fewer when the corpus is smaller.
        metric: `"cosine"`, `"dot"` or `"euclidean"`.
        chunk_size: Corpus rows scored per step; by default enough for about 4 MiB of scratch memory.

    Returns:
        `TopK(indices, scores)`, 1-D for a 1-D query and `(queries, k)` for a 2-D one. Computed in the
        corpus's precision (float32 for float16/float32, float64 for float64); the query is cast to it.

    Raises:
        DimensionMismatchError: The query and the corpus rows have different lengths.
        ValueError: NaN or Inf in the query or corpus, `k < 1`, an unknown metric or a bad shape.
    """
    queries, single, rows, dtype = _top_k_inputs(query, corpus, k, metric)
    count, width = queries.shape[0], min(int(k), rows.shape[0])
    zero_seen = False
    if metric == "cosine":
        with np.errstate(all="ignore"):
            query_norms = np.sqrt(np.einsum("ij,ij->i", queries, queries))
            _raise_if_overflowed(query_norms, queries, "query")
        zero_seen = bool((query_norms == 0).any())
        queries = queries / np.where(query_norms == 0, 1, query_norms)[:, None]
    step = chunk_size or _auto_chunk(count, rows.shape[1] * dtype.itemsize if rows.dtype != dtype else 0)
    if step < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with np.errstate(all="ignore"):
        best_indices, best_scores, zero_rows = _scan(queries, rows, metric, width, step, dtype)
    zero_seen = zero_seen or zero_rows
    if zero_seen:
        _warn_zero()
    order = np.lexsort((best_indices, -best_scores), axis=-1)
    best_indices = np.take_along_axis(best_indices, order, axis=-1)
    best_scores = np.take_along_axis(best_scores, order, axis=-1)
    if metric == "euclidean":
        best_indices, best_scores = _exact_distances(queries, rows, best_indices, dtype)
    elif metric == "cosine":
        np.clip(best_scores, -1.0, 1.0, out=best_scores)
    if single:
        return TopK(best_indices[0], best_scores[0])
    return TopK(best_indices, best_scores)


# -- helpers ---------------------------------------------------------------------------------------------------


def _top_k_inputs(
    query: npt.ArrayLike, corpus: npt.ArrayLike, k: int, metric: Metric
) -> tuple[npt.NDArray[np.floating[Any]], bool, npt.NDArray[np.floating[Any]], np.dtype[Any]]:
    """`top_k`'s arguments checked: the queries as rows in the corpus's precision, whether there was one query, the
    corpus rows and that precision (`ValueError`, `DimensionMismatchError` for what cannot be searched)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    queries, single = _as_rows(query, "query")
    rows = _as_array(corpus, "corpus")
    if rows.ndim != 2:
        raise ValueError(f"corpus must be 2-D (rows, dimensions), got shape {rows.shape}")
    _same_dimensions(queries, rows, "query", "corpus")
    dtype = _float_dtype(rows)
    with np.errstate(all="ignore"):
        queries = queries.astype(dtype, copy=False)
    if not np.isfinite(queries).all():
        raise ValueError(f"query contains NaN or Inf (or values too large for the corpus's {dtype})")
    return queries, single, rows, dtype


def _as_array(value: npt.ArrayLike, name: str) -> npt.NDArray[Any]:
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}")
    return array


def _as_rows(value: npt.ArrayLike, name: str) -> tuple[npt.NDArray[Any], bool]:
    array = _as_array(value, name)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be a vector (1-D) or one vector per row (2-D), got shape {array.shape}")
    if array.shape[-1] == 0:
        raise ValueError(f"{name} has vectors of no dimensions")
    return (array[None, :], True) if array.ndim == 1 else (array, False)


def _same_dimensions(left: npt.NDArray[Any], right: npt.NDArray[Any], left_name: str, right_name: str) -> None:
    if left.shape[1] != right.shape[1]:
        raise DimensionMismatchError(
            f"{left_name} has {left.shape[1]} dimensions but {right_name} has {right.shape[1]}; vectors compared "
            "must come from the same model and dimensions"
        )


def _float_dtype(*arrays: npt.NDArray[Any]) -> np.dtype[Any]:
    """float32 when every input is float16/float32, else float64."""
    if all(array.dtype in (np.float16, np.float32) for array in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _pair(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[FloatArray, FloatArray, np.dtype[Any], tuple[bool, bool]]:
    left, left_single = _as_rows(a, "a")
    right, right_single = _as_rows(b, "b")
    _same_dimensions(left, right, "a", "b")
    dtype = _float_dtype(left, right)
    return left.astype(dtype, copy=False), right.astype(dtype, copy=False), dtype, (left_single, right_single)


def _shaped(scores: FloatArray, shape: tuple[bool, bool], dtype: np.dtype[Any]) -> float | FloatArray:
    left_single, right_single = shape
    scores = scores.astype(dtype, copy=False)
    if left_single and right_single:
        return float(scores[0, 0])
    if left_single:
        row: FloatArray = scores[0]
        return row
    if right_single:
        column: FloatArray = scores[:, 0]
        return column
    return scores


def _norms(rows: FloatArray, name: str) -> FloatArray:
    norms: FloatArray = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    _raise_if_overflowed(norms, rows, name)
    return norms


def _raise_if_overflowed(norms: FloatArray, rows: FloatArray, name: str) -> None:
    if np.isfinite(norms).all():
        return
    if not np.isfinite(rows).all():
        raise ValueError(f"{name} contains NaN or Inf")
    raise ValueError(f"{name} has values too large for {rows.dtype} (the squares overflow); pass float64 or scale")


def _check_finite(scores: FloatArray, left: FloatArray, right: FloatArray, names: tuple[str, str] = ("a", "b")) -> None:
    if np.isfinite(scores).all():
        return
    for name, rows in zip(names, (left, right), strict=True):
        if not np.isfinite(rows).all():
            raise ValueError(f"{name} contains NaN or Inf")
    raise ValueError(f"the result overflows {scores.dtype}; pass float64 or scale the vectors")


def _warn_zero() -> None:
    # stacklevel 3: the line that called the public function (cosine, top_k).
    warnings.warn(
        "cosine similarity with a zero vector is undefined; it was scored 0.0", ZeroVectorWarning, stacklevel=3
    )


def _auto_chunk(queries: int, converted_row_bytes: int) -> int:
    return max(1, DEFAULT_CHUNK_BYTES // (SCRATCH_BYTES_PER_ROW * queries + converted_row_bytes))


def _distances_to(vector: FloatArray, rows: FloatArray, chunk_size: int | None) -> FloatArray:
    out = np.empty(rows.shape[0], dtype=rows.dtype)
    step = chunk_size or _auto_chunk(1, rows.shape[1] * rows.dtype.itemsize)
    if step < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, rows.shape[0], step):
        difference = rows[start : start + step] - vector
        out[start : start + step] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
    if not np.isfinite(out).all():
        _check_finite(out, vector[None, :], rows)
    return out


def _scan(
    queries: FloatArray, rows: npt.NDArray[Any], metric: Metric, width: int, step: int, dtype: np.dtype[Any]
) -> tuple[npt.NDArray[np.int64], FloatArray, bool]:
    """The best `width` rows per query over the corpus, `step` rows at a time; and whether a zero row was met."""
    count = queries.shape[0]
    best_indices = np.empty((count, 0), dtype=np.int64)
    best_scores = np.empty((count, 0), dtype=dtype)
    zero_seen = False
    for start in range(0, rows.shape[0], step):
        chunk = rows[start : start + step].astype(dtype, copy=False)
        if count > 1:
            scores = queries @ chunk.T
        elif EINSUM_FOR_ONE_QUERY:
            scores = np.einsum("ij,j->i", chunk, queries[0])[None, :]
        else:
            scores = (chunk @ queries[0])[None, :]
        if metric == "cosine":
            chunk_norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
            _raise_if_overflowed(chunk_norms, chunk, "corpus")
            zeros = chunk_norms == 0
            if zeros.any():
                zero_seen = True
                chunk_norms[zeros] = 1  # a zero row's products are exactly 0, so it scores 0.0
            scores /= chunk_norms
        elif metric == "euclidean":
            # Ranked by 2·c·q − |c|², which orders rows as −|c − q|² does; exact distances are computed after.
            scores *= 2
            scores -= np.einsum("ij,ij->i", chunk, chunk)
        # NaN or Inf anywhere in a row makes its score non-finite, so checking n scores checks n × d inputs.
        if not np.isfinite(scores).all():
            _check_finite(scores, queries, chunk, ("query", "corpus"))
        best_indices, best_scores = _merge(best_indices, best_scores, scores, start, width)
        del chunk, scores  # free this chunk's scratch before the next one is made
    return best_indices, best_scores, zero_seen


def _merge(
    best_indices: npt.NDArray[np.int64], best_scores: FloatArray, scores: FloatArray, offset: int, width: int
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Keep the `width` largest of the running best and this chunk's scores (columns offset by `offset`)."""
    chosen = _largest(scores, width)
    indices = chosen + offset
    all_indices = np.concatenate([best_indices, indices], axis=1)
    all_scores = np.concatenate([best_scores, np.take_along_axis(scores, chosen, axis=1)], axis=1)
    if all_scores.shape[1] <= width:
        return all_indices, all_scores
    # At most 2 × width candidates: a full sort is cheap, and on ties it keeps the lower (earlier) index.
    order = np.lexsort((all_indices, -all_scores), axis=-1)[:, :width]
    return np.take_along_axis(all_indices, order, axis=1), np.take_along_axis(all_scores, order, axis=1)


def _largest(scores: FloatArray, width: int) -> npt.NDArray[np.int64]:
    """Column positions of the `width` largest scores per row; ties at the cut go to the lower positions."""
    rows, columns = scores.shape
    if columns <= width:
        return np.broadcast_to(np.arange(columns, dtype=np.int64), (rows, columns))
    chosen = np.argpartition(scores, columns - width, axis=1)[:, columns - width :].astype(np.int64, copy=False)
    cut = np.take_along_axis(scores, chosen, axis=1).min(axis=1, keepdims=True)
    # argpartition breaks ties arbitrarily: where more rows share the cut value than were kept, choose again.
    kept_at_cut = (np.take_along_axis(scores, chosen, axis=1) == cut).sum(axis=1)
    for row in np.flatnonzero((scores == cut).sum(axis=1) > kept_at_cut):
        above = np.flatnonzero(scores[row] > cut[row])
        tied = np.flatnonzero(scores[row] == cut[row])[: width - len(above)]
        chosen[row] = np.concatenate([above, tied])
    return chosen


def _exact_distances(
    queries: FloatArray, rows: npt.NDArray[Any], indices: npt.NDArray[np.int64], dtype: np.dtype[Any]
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Euclidean distances of the winners from their differences (float64), re-sorted nearest first."""
    difference = rows[indices].astype(np.float64) - queries[:, None, :].astype(np.float64)
    distances = np.sqrt(np.einsum("qkd,qkd->qk", difference, difference))
    order = np.lexsort((indices, distances), axis=-1)
    return np.take_along_axis(indices, order, axis=-1), np.take_along_axis(distances, order, axis=-1).astype(dtype)


__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "METRICS",
    "Metric",
    "TopK",
    "ZeroVectorWarning",
    "cosine",
    "dot",
    "euclidean",
    "pairwise",
    "top_k",
]


def as_texts(value: object) -> tuple[list[str], bool] | None:
    """`(texts, single)` when `value` is a text or a list/tuple of texts; None when it holds vectors instead."""
    if isinstance(value, str):
        return [value], True
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value), False
    return None


async def of_texts_or_vectors(
    a: Any, b: Any, embed: Callable[[list[str]], Awaitable[FloatArray]], *, metric: Metric = "cosine"
) -> float | FloatArray:
    """`pairwise(a, b)` where each side may be texts (embedded together in one `embed` call) or vectors.

    A single text on a side is one vector there, so two single texts give a float (what `Client.similarity`
    returns).
    """
    if metric not in METRICS:
        raise InvalidRequestError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    left, right = as_texts(a), as_texts(b)
    texts = [*(left[0] if left else []), *(right[0] if right else [])]
    vectors = await embed(texts) if texts else None

    def side(value: Any, parsed: tuple[list[str], bool] | None, offset: int) -> Any:
        if parsed is None or vectors is None:
            return value
        rows = vectors[offset : offset + len(parsed[0])]
        return rows[0] if parsed[1] else rows

    first = side(a, left, 0)
    second = side(b, right, len(left[0]) if left else 0)
    return pairwise(first, second, metric=metric)
