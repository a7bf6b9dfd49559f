"""Chat, stream and embed on OpenAI. Reads OPENAI_API_KEY from the environment and says so when it is missing."""

from __future__ import annotations

import asyncio
import os
import sys

from llmclient import Client


async def main() -> int:
    if not os.environ.get("OPENAI_API_KEY"):
        print("Set OPENAI_API_KEY to run this example (it makes three small calls, well under $0.001).")
        return 0
    async with Client() as client:
        reply = await client.chat("Say hello in French.", model="openai/gpt-4o-mini", max_tokens=20)
        print(reply.text, reply.usage, f"${reply.cost.total if reply.cost else '?'}")
        async for chunk in client.stream("Count to five.", model="openai/gpt-4o-mini", max_tokens=30):
            print(chunk.delta, end="", flush=True)
        print()
        vectors = await client.embed(["cat", "dog"], model="openai/text-embedding-3-small")
        print("embeddings:", vectors.vectors.shape, f"total ${client.ledger.total():.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
