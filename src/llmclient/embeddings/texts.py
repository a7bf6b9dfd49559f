"""The texts of one embedding job: each distinct text once, what the cache answered, and the vectors placed in
input order as they arrive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from llmclient.embeddings.cache import EmbeddingCache, Vector

if TYPE_CHECKING:
    Keys = Callable[..., list[str]]


class Batch(NamedTuple):
    """One request's share of a job: the texts to send, their cache keys (none without a cache) and the output rows
    their vectors go to."""

    positions: range
    """The positions in `EmbedJob.pending` the batch covers (cache hits among them are not sent)."""
    texts: list[str]
    keys: list[str]
    rows: slice | list[int]


class EmbedJob:
    """The texts of one `embed` call: each distinct text once, what the cache answered, and the result matrix.

    `pending` holds the distinct texts still to send, in first-appearance order; `sent[i]` is what will actually be
    sent for `pending[i]` (the text itself, or its truncation). Texts are looked up in the cache either all at once
    (`lookup`: when they must be counted first, so hits are never counted) or one batch at a time, just before it
    is sent (`batch`), so that hashing and looking up overlap with the requests in flight. Vectors are placed in
    the result matrix as they arrive: a job holds one matrix, not its answers and then a copy.

    Args:
        texts: The inputs, in order (repeats allowed).
        keys: `keys(texts, truncated_to=None)`: the cache keys of texts (`cache.cache_keys` with the model's
            provider, name and dimensions).
    """

    def __init__(self, texts: Sequence[str], keys: Keys) -> None:
        self.texts = texts
        self._keys = keys  # called only with a cache to ask or feed: no SHA-256 per text without one
        distinct = list(dict.fromkeys(texts))
        self.distinct = len(distinct)
        self.pending: list[str] = distinct
        self.sent: list[str] = distinct
        self.keys: list[str] | None = None
        """Every pending text's cache key, once the job was looked up all at once (`lookup`)."""
        self._first: dict[str, int] | None = None
        # The output row of each pending text; None while that is its position (no repeats, no hits removed).
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
        """Look every pending text up at once (under the plain key, or the truncated one when truncation is
        allowed), place what the cache holds, and keep only the rest pending."""
        if cache is None or not self.pending:
            return
        self.keys = keys = self._keys(self.pending)
        truncated = self._keys(self.pending, truncated_to=truncated_to) if truncated_to else []
        hits = cache.get_many([*keys, *truncated])
        if not hits:
            return
        keep, found, rows = [], [], self.rows(range(len(self.pending)))
        for position in range(len(self.pending)):
            vector = hits.get(keys[position])
            if vector is None and truncated:
                vector = hits.get(truncated[position])
            if vector is None:
                keep.append(position)
            else:
                found.append((position, vector))
        self._place_hits(rows, found)
        self.pending = [self.pending[p] for p in keep]
        self.sent = [self.sent[p] for p in keep]
        self.keys = [keys[p] for p in keep]
        self._rows = [rows[p] for p in keep]

    def truncate(self, position: int, text: str, limit: int) -> None:
        """Send `text` (a cut of `pending[position]`) instead, stored under the truncated key."""
        if self.sent is self.pending:
            self.sent = list(self.pending)
        self.sent[position] = text
        if self.keys is not None:
            self.keys[position] = self._keys([self.pending[position]], truncated_to=limit)[0]

    def rows(self, positions: range) -> list[int]:
        """The output rows of `pending[positions]`."""
        return list(positions) if self._rows is None else self._rows[positions.start : positions.stop]

    def batch(self, positions: range, cache: EmbeddingCache | None) -> Batch:
        """What to send for `pending[positions]`: after `lookup`, its share of the job's lists; else the batch is
        looked up in the cache now, its hits placed and left out."""
        start, stop = positions.start, positions.stop
        texts = self.sent[start:stop]
        if self.keys is not None or cache is None:
            keys = self.keys[start:stop] if self.keys is not None else []
            return Batch(positions, texts, keys, slice(start, stop) if self._rows is None else self.rows(positions))
        keys = self._keys(texts)
        hits = cache.get_many(keys)
        if not hits:
            return Batch(positions, texts, keys, slice(start, stop) if self._rows is None else self.rows(positions))
        rows = self.rows(positions)
        found = [(i, hits[key]) for i, key in enumerate(keys) if key in hits]
        self._place_hits(rows, found)
        missing = [i for i, key in enumerate(keys) if key not in hits]
        return Batch(positions, [texts[i] for i in missing], [keys[i] for i in missing], [rows[i] for i in missing])

    def _place_hits(self, rows: list[int], found: list[tuple[int, Vector]]) -> None:
        if found:
            import numpy as np

            self.place([rows[position] for position, _ in found], np.stack([vector for _, vector in found]))
            self.hits += len(found)

    def place(self, rows: slice | list[int], vectors: Vector) -> None:
        """Put `vectors` (one per row) in the result matrix, made with the first vectors' width."""
        if self.out is None:
            import numpy as np

            self.width = int(vectors.shape[1])
            self.out = np.empty((len(self.texts), self.width), dtype=np.float32)
        self.out[rows] = vectors

    def fill(self, positions: range, vectors: Vector) -> None:
        """Take the vectors a request returned for `pending[positions]`."""
        self.place(slice(positions.start, positions.stop) if self._rows is None else self.rows(positions), vectors)

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
