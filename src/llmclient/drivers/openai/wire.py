"""OpenAI's embedding vectors on the wire: float lists or base64 little-endian float32, in input order
(https://platform.openai.com/docs/api-reference/embeddings/object). The chat format is in `messages.py` (out) and
`replies.py` (in); what every driver shares is in `llmclient.drivers.toolkit`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def vectors_from_wire(items: list[dict[str, Any]], expected: int) -> npt.NDArray[np.float32]:
    """OpenAI's embedding items (float lists or base64 little-endian float32) as rows in input order."""
    import numpy as np  # only embeddings need it: a chat does not import numpy

    indices = [int(item["index"]) for item in items]
    if sorted(indices) != list(range(expected)):
        raise ValueError(f"embedding indices {sorted(indices)[:10]}… do not match {expected} inputs")
    ordered = [item["embedding"] for _, item in sorted(zip(indices, items, strict=True), key=lambda pair: pair[0])]
    if all(isinstance(embedding, list) for embedding in ordered):
        # Float lists: one conversion for the whole matrix (numpy refuses ragged rows with a ValueError).
        matrix = np.array(ordered, dtype=np.float32) if ordered else np.empty((0, 0), dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError("embeddings have different dimensions")
        return matrix
    rows = [
        np.frombuffer(base64.b64decode(embedding), dtype="<f4")
        if isinstance(embedding, str)
        else np.asarray(embedding, dtype=np.float32)
        for embedding in ordered
    ]
    if len({row.shape for row in rows}) != 1:
        raise ValueError("embeddings have different dimensions")
    return np.stack(rows).astype(np.float32, copy=False)
