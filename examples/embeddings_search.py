"""Semantic search over a few documents with all-MiniLM-L6-v2 in-process, and a VectorIndex saved to disk."""

from __future__ import annotations

import asyncio
import functools
import tempfile
from pathlib import Path

from llmclient import Client
from llmclient.vectors.index import VectorIndex

DOCUMENTS = [
    "The Eiffel Tower is in Paris.",
    "Photosynthesis turns light into chemical energy.",
    "A cat is sleeping on the sofa.",
    "The stock market fell sharply today.",
]
MODEL = "transformers/all-MiniLM-L6-v2"


async def main() -> None:
    async with Client() as client:
        for hit in await client.search("Where is the Eiffel Tower?", DOCUMENTS, k=2, model=MODEL):
            print(f"{hit.score:.3f}  {hit.text}")

        index = VectorIndex(embed=functools.partial(client.embed, model=MODEL))
        await index.add_texts(DOCUMENTS, metadata=[{"n": i} for i in range(len(DOCUMENTS))])
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "index.npz"
            index.save(path)
            loaded = VectorIndex.load(path, embed=functools.partial(client.embed, model=MODEL))
        best = (await loaded.search("plants and sunlight", k=1))[0]
        print(f"index: {best.id} {best.text!r} ({best.score:.3f})")
        print(f"embedding cost: ${client.ledger.total()} (a local model; repeated texts came from the cache)")


if __name__ == "__main__":
    asyncio.run(main())
