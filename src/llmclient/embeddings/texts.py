"""The texts of one embedding job: each distinct text once, what the cache answered, and the vectors placed in
input order as they arrive.

A cache key is a SHA-256 of its text, which costs about as much per text as everything else an embedding job does
beyond the HTTP request. So keys are computed only as a cache reads them (`CacheKeys`, `ReceivedVectors`): an
empty in-memory cache reads none, and one that keeps the last 10,000 vectors reads the keys of those alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, overload

from llmclient.embeddings.cache import EmbeddingCache, Vector

if TYPE_CHECKING:
    Keys = Callable[..., list[str]]

_KEYED_AT_ONCE = 256  # texts hashed per call to `keys` as a cache reads through them: few calls, little read ahead


class CacheKeys(Sequence[str]):
    """The cache keys of `texts`, computed as they are read (and kept once read, for the hits to be matched)."""

    def __init__(self, keys: Keys, texts: Sequence[str], truncated_to: int | None = None) -> None:
        self._keys, self._texts, self._truncated_to = keys, texts, truncated_to
        self._known: list[str] = []

    def __len__(self) -> int:
        return len(self._texts)

    def _upto(self, stop: int) -> list[str]:
        known = self._known
        while len(known) < stop:
            chunk = self._texts[len(known) : len(known) + max(_KEYED_AT_ONCE, stop - len(known))]
            known += self._keys(chunk, truncated_to=self._truncated_to)
        return known

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return self._upto(len(self))[index]
        position = range(len(self))[index]  # negative indices, and IndexError past the end
        return self._upto(position + 1)[position]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), _KEYED_AT_ONCE):
            yield from self._upto(min(start + _KEYED_AT_ONCE, len(self)))[start : start + _KEYED_AT_ONCE]


class ReceivedVectors(Mapping[str, Vector]):
    """What a job received, by cache key, in the order it arrived: the rows of the job's result matrix. Keys are
    computed as a cache reads them, from the end when it keeps only the most recent (`reversed(items())`)."""

    def __init__(self, job: EmbedJob) -> None:
        self._job = job
        self._index: dict[str, int] | None = None

    def _positions(self, latest_first: bool = False) -> Iterator[int]:
        received = self._job.received
        if latest_first:
            return (position for batch in reversed(received) for position in reversed(batch))
        return (position for batch in received for position in batch)

    def _pairs(self, latest_first: bool = False) -> Iterator[tuple[str, Vector]]:
        """(key, vector) of each received position, the keys computed `_KEYED_AT_ONCE` at a time as they are read."""
        job, positions = self._job, self._positions(latest_first)
        while chunk := list(itertools.islice(positions, _KEYED_AT_ONCE)):
            keys = [self._key(p) for p in chunk if p in job.truncated]  # rare: each with its own limit
            plain = iter(job.keys_of([job.pending[p] for p in chunk if p not in job.truncated]))
            truncated = iter(keys)
            for position in chunk:
                key = next(truncated) if position in job.truncated else next(plain)
                yield key, job.vector(position)

    def _key(self, position: int) -> str:
        job = self._job
        return job.keys_of([job.pending[position]], truncated_to=job.truncated.get(position))[0]

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._job.received)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._pairs())

    def __getitem__(self, key: str) -> Vector:
        if self._index is None:
            self._index = dict(zip(self, self._positions(), strict=True))
        return self._job.vector(self._index[key])

    def items(self) -> _Items:  # type: ignore[override]
        return _Items(self)


class _Items:
    """`ReceivedVectors.items()`: read forwards, or from the end (the most recent first)."""

    def __init__(self, vectors: ReceivedVectors) -> None:
        self._vectors = vectors

    def __len__(self) -> int:
        return len(self._vectors)

    def __iter__(self) -> Iterator[tuple[str, Vector]]:
        return self._vectors._pairs()

    def __reversed__(self) -> Iterator[tuple[str, Vector]]:
        return self._vectors._pairs(latest_first=True)


class EmbedJob:
    """The texts of one `embed` call: each distinct text once, what the cache answered, and the result matrix.

    `pending` holds the distinct texts still to send, in first-appearance order; `sent[i]` is what will actually be
    sent for `pending[i]` (the text itself, or its truncation). Vectors are placed in the result matrix as they
    arrive: a job holds one matrix, not its answers and then a copy of them.

    Args:
        texts: The inputs, in order (repeats allowed).
        keys: `keys(texts, truncated_to=None)`: the cache keys of texts (`cache.cache_keys` with the model's
            provider, name and dimensions); called only as a cache reads them.
    """

    def __init__(self, texts: Sequence[str], keys: Keys) -> None:
        self.texts = texts
        self.keys_of = keys
        distinct = list(dict.fromkeys(texts))
        self.distinct = len(distinct)
        self.pending: list[str] = distinct
        self.sent: list[str] = distinct
        self.truncated: dict[int, int] = {}
        """The pending positions sent truncated, with the token limit they were cut to (their cache key says so)."""
        self.received: list[range] = []
        """The pending positions of each answered request, in the order they arrived."""
        self._first: dict[str, int] | None = None
        # The output row of each pending text; None while that is its position (no repeats, no cache hits).
        self._rows: list[int] | None = None if self.distinct == len(texts) else list(self.first_index.values())
        self.hits = 0
        self.width: int | None = None
        self.out: Vector | None = None

    @property
    def first_index(self) -> dict[str, int]:
        """Each distinct text's first position among the inputs (built when asked: repeats, error messages)."""
        if self._first is None:
            first: dict[str, int] = {}
            for index, text in enumerate(self.texts):
                first.setdefault(text, index)
            self._first = first
        return self._first

    @property
    def unsent(self) -> int:
        """Inputs answered without a request: cache hits and repeats of an earlier input."""
        return len(self.texts) - self.distinct + self.hits

    def lookup(self, cache: EmbeddingCache | None, *, truncated_to: int | None = None) -> None:
        """Take what the cache holds (under the plain key, or the truncated one when truncation is allowed), and
        keep only the rest pending."""
        if cache is None or not self.pending:
            return
        plain = CacheKeys(self.keys_of, self.pending)
        truncated = self.keys_of(self.pending, truncated_to=truncated_to) if truncated_to else []
        hits = cache.get_many(plain if not truncated else [*plain, *truncated])
        if not hits:
            return
        keep, found = [], []
        for position, key in enumerate(plain):
            vector = hits.get(key)
            if vector is None and truncated:
                vector = hits.get(truncated[position])
            if vector is None:
                keep.append(position)
            else:
                found.append((position, vector))
        import numpy as np

        rows = list(range(len(self.pending))) if self._rows is None else self._rows
        self.place([rows[position] for position, _ in found], np.stack([vector for _, vector in found]))
        self.hits += len(found)
        self.pending = [self.pending[p] for p in keep]
        self.sent = [self.sent[p] for p in keep]
        self._rows = [rows[p] for p in keep]

    def truncate(self, position: int, text: str, limit: int) -> None:
        """Send `text` (a cut of `pending[position]`) instead, stored under the truncated key."""
        if self.sent is self.pending:
            self.sent = list(self.pending)
        self.sent[position] = text
        self.truncated[position] = limit

    def rows(self, positions: range) -> slice | list[int]:
        """The output rows of `pending[positions]` (a slice while they are the same positions)."""
        if self._rows is None:
            return slice(positions.start, positions.stop)
        return self._rows[positions.start : positions.stop]

    def place(self, rows: slice | list[int], vectors: Vector) -> None:
        """Put `vectors` (one per row) in the result matrix, made with the first vectors' width."""
        if self.out is None:
            import numpy as np

            self.width = int(vectors.shape[1])
            self.out = np.empty((len(self.texts), self.width), dtype=np.float32)
        self.out[rows] = vectors

    def fill(self, positions: range, vectors: Vector) -> None:
        """Take the vectors a request returned for `pending[positions]`."""
        self.place(self.rows(positions), vectors)
        self.received.append(positions)

    def vector(self, position: int) -> Vector:
        """The vector received for `pending[position]` (a row of the result matrix)."""
        assert self.out is not None
        rows = self._rows
        row: Vector = self.out[position if rows is None else rows[position]]
        return row

    def assemble(self, dimensions: int) -> Vector:
        """One float32 row per input, in input order: repeats take the row of their first appearance."""
        if self.out is None:
            import numpy as np

            self.out = np.empty((len(self.texts), dimensions), dtype=np.float32)
        out = self.out
        if self.distinct != len(self.texts):  # repeats: each takes a copy of its first appearance's row
            first, texts = self.first_index, self.texts
            repeats = [index for index, text in enumerate(texts) if first[text] != index]
            out[repeats] = out[[first[texts[index]] for index in repeats]]
        return out
