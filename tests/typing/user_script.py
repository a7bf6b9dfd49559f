"""A user's script, type-checked with `mypy --strict` by tests/typing/test_typing.py (and run, to stay honest)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from typing_extensions import assert_type

from llmclient import ChatResponse, Client, FunctionTool, RunResult, SyncClient, tool


class City(BaseModel):
    name: str
    population: int


PARIS = '{"name": "Paris", "population": 2}'


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def answer(reply: ChatResponse) -> str:
    return reply.text


async def main() -> None:
    async with Client(default_model="fake/echo", retry=1, timeout=30.0) as client:
        reply = await client.chat("hi", temperature=0.2, max_tokens=10, tool_choice="auto", tags=["x"])
        print(answer(reply), reply.usage.output_tokens)
        typed = await client.chat(
            "hi",
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            logit_bias={"50256": -100},
            n=2,
            logprobs=True,
            top_logprobs=3,
            reasoning_effort="high",
            service_tier="flex",
            user="u-1",
            prompt_cache_key="k",
            parallel_tool_calls=False,
            thinking=False,
            max_completion_tokens=10,
        )
        assert_type(typed.refusal, str | None)
        assert_type(reply, ChatResponse[Any])
    async with Client(providers={"fake": {"replies": [PARIS]}}) as scripted:
        structured = await scripted.chat("Paris?", model="fake/city", response_model=City)
        assert_type(structured.parsed, City)
        assert structured.parsed.population == 2
    async with Client(default_model="fake/echo") as client:
        async for chunk in client.stream("one two", stop=["\n"]):
            print(chunk.delta)
        result: RunResult = await client.run("add", tools=[add], on_tool_error="message")
        assert_type(result.response, ChatResponse[Any])
        assert_type(result.responses, list[ChatResponse[Any]])
        assert_type(result.cost, Decimal | None)
        vectors = await client.embed(["a", "b"])
        print(vectors.vectors.shape)
        one = await client.similarity("cat", "dog", model="fake/e")
        assert_type(one, float)
        scores = await client.similarity("cat", ["dog", "kitten"], model="fake/e")
        assert_type(scores, npt.NDArray[np.float32])
        print(round(one, 3), scores[0], scores.shape)
        matrix = await client.similarity(["cat"], ["dog", "kitten"], model="fake/e")
        print(matrix[0, 1])


def sync_main() -> None:
    with SyncClient(default_model="fake/echo", retry=1) as client:
        reply = client.chat("hi", temperature=0.2, max_tokens=10)
        print(reply.text)
    with SyncClient(providers={"fake": {"replies": [PARIS]}}) as scripted:
        assert_type(scripted.chat("Paris?", model="fake/city", response_model=City).parsed, City)
    with SyncClient(default_model="fake/echo") as client:
        for chunk in client.stream("one two"):
            print(chunk.delta)
        assert_type(add, FunctionTool)
        assert_type(client.similarity("cat", "dog", model="fake/e"), float)
        print(client.similarity("cat", ["dog"], model="fake/e")[0])


if __name__ == "__main__":
    asyncio.run(main())
    sync_main()


def wrap(client: Client) -> SyncClient:
    return SyncClient.of(client)
