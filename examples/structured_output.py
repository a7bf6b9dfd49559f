"""Validated objects from a 135M-parameter model: a JSON-schema grammar keeps SmolLM2's output well-formed."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from llmclient import Client


class City(BaseModel):
    # Bounded strings bound the grammar too, so a tiny model cannot ramble past max_tokens inside a string.
    name: str = Field(max_length=40)
    country: str = Field(max_length=40)


async def main() -> None:
    async with Client() as client:
        reply = await client.chat(
            "Name the capital of France and its country.",
            model="llamacpp/smollm2",
            response_model=City,
            max_tokens=120,
            temperature=0,
        )
        city = reply.parsed
        assert isinstance(city, City)
        print(repr(city))


if __name__ == "__main__":
    asyncio.run(main())
