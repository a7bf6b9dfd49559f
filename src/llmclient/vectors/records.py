"""How a vector-database adapter stores one record, the same way on every engine, so that `where` means the same
everywhere.

The metadata values every engine can filter on (str, bool, finite float, int up to 2**53; keys without `.`, `[` or
`]` that do not start with `$`, `#`, `chroma:` or `_llmclient`) become the engine's own fields. Metadata those
fields cannot hold exactly (lists, nested objects, None, other keys; on Pinecone, ints) is kept whole as JSON in
`_llmclient_metadata` as well, so it reads back exactly. A `where` on any other key or value is refused with
`InvalidRequestError` rather than answered differently from the in-memory index.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmclient.errors import InvalidRequestError

METADATA_FIELD = "_llmclient_metadata"
"""The engine field that holds an item's whole metadata as JSON."""
TEXT_FIELD = "_llmclient_text"
"""The engine field that holds an item's text, for engines without a place of their own for it."""
ID_FIELD = "_llmclient_id"
"""The engine field that holds an item's id, for engines whose ids are not free strings (Qdrant)."""

_RESERVED_PREFIXES = ("_llmclient", "$", "#", "chroma:")  # ours; Pinecone's and Chroma's operators and own keys
_PATH_CHARACTERS = frozenset(".[]")  # Qdrant reads these in a key as a path into nested payload
# Pinecone keeps every number as a 64-bit float (https://docs.pinecone.io/guides/index-data/indexing-overview
# #metadata-format, checked 2026-12-07): past 2**53 two different ints could compare equal there.
_LARGEST_EXACT_INT = 2**53


@dataclass(frozen=True)
class Row:
    """One validated item on its way to an engine (unit length under the cosine metric).

    `metadata` is as given, `filterable` the part of it that becomes engine fields, and `encoded` its JSON (what
    reads back, as from the in-memory index's copy) or None when all of it is filterable (plain JSON values
    already: nothing to encode or check).
    """

    id: str
    vector: npt.NDArray[np.float32]
    text: str | None
    metadata: dict[str, Any]
    filterable: dict[str, Any]
    encoded: str | None

    def fields(self, *, text: bool = False, id: bool = False, ints: bool = True) -> dict[str, Any]:
        """The engine's metadata (payload) for this item: its filterable values, plus the metadata as JSON in
        `METADATA_FIELD` when those cannot hold it exactly (a list, an object, None, a key that cannot be a field).

        Args:
            text: Keep the text in `TEXT_FIELD` too (for engines with no place of their own for it).
            id: Keep the id in `ID_FIELD` too (for engines whose ids are not free strings).
            ints: Whether the engine gives an int back as an int (Pinecone gives every number back as a float).
        """
        fields = dict(self.filterable)
        if len(fields) < len(self.metadata) or not (ints or all(type(value) is not int for value in fields.values())):
            fields[METADATA_FIELD] = self.encoded or json.dumps(self.metadata, ensure_ascii=False)
        if text and self.text is not None:
            fields[TEXT_FIELD] = self.text
        if id:
            fields[ID_FIELD] = self.id
        return fields


def is_filterable(key: object, value: object) -> bool:
    """Whether every engine stores `key: value` as a field of its own and compares it as the in-memory index does."""
    if not isinstance(key, str) or not key or key.startswith(_RESERVED_PREFIXES) or _PATH_CHARACTERS & set(key):
        return False
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)  # NaN and Inf are not JSON: left to the encoding, which refuses them
    return isinstance(value, int) and abs(value) <= _LARGEST_EXACT_INT


def where_conditions(where: Any, backend: str) -> list[tuple[str, Any]]:
    """`where` as (key, value) pairs that must all hold, or a typed error when the engine cannot answer it exactly."""
    if where is None:
        return []
    if callable(where):
        raise TypeError(f"a {backend} index filters with a dict of metadata values, not a function")
    if not isinstance(where, Mapping):
        raise TypeError(f"where must be a dict of metadata values, got {type(where).__name__}")
    conditions = list(where.items())
    for key, value in conditions:
        if not is_filterable(key, value):
            raise InvalidRequestError(
                f"{backend} cannot filter on {key!r}: {value!r}; where= matches str, bool, int and float values of "
                "keys without '.', '[' or ']' that do not start with '$', '#', 'chroma:' or '_llmclient'"
            )
    return conditions


def metadata_from(fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata `Row.fields` stored: its JSON copy where there is one, else the fields themselves."""
    if not fields:
        return {}
    encoded = fields.get(METADATA_FIELD)
    if isinstance(encoded, str):
        metadata: dict[str, Any] = json.loads(encoded)
        return metadata
    return {key: value for key, value in fields.items() if not key.startswith("_llmclient")}


def encoded(metadata: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """The metadata, its filterable part, and its JSON unless all of it is filterable (TypeError if JSON cannot)."""
    item = dict(metadata or {})
    filterable = {key: value for key, value in item.items() if is_filterable(key, value)}
    if len(filterable) == len(item):
        return item, filterable, None
    try:
        return item, filterable, json.dumps(item, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from exc


def cosine_score(similarity: float) -> float:
    """A cosine similarity clamped to [-1, 1], as the in-memory index reports it (float32 rounding overshoots)."""
    return float(min(1.0, max(-1.0, similarity)))
