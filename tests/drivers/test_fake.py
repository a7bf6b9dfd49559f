"""The fake driver behaves like a real one: scripted replies, errors, embeddings and exact word counts."""

from __future__ import annotations

import numpy as np
import pytest

from llmclient import Client, ConfigurationError, FakeDriver, RateLimitError, RetryPolicy


async def test_script_then_exhaustion() -> None:
    client = Client(providers={"fake": {"replies": ["one", {"content": "two"}]}})
    assert (await client.chat("a", model="fake/x")).text == "one"
    assert (await client.chat("b", model="fake/x")).text == "two"
    with pytest.raises(ConfigurationError, match="script for 'x' is used up"):
        await client.chat("c", model="fake/x")


async def test_scripted_errors_are_raised_and_retried_like_real_ones() -> None:
    driver = FakeDriver(replies=[RateLimitError("slow down", status=429, retry_after=0.0), "ok"])
    client = Client(providers={"fake": driver}, retry=RetryPolicy(initial_backoff=0))
    assert (await client.chat("hi", model="fake/x")).text == "ok"
    assert len(driver.requests) == 2


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    client = Client(providers={"fake": {"embedding_dimensions": 16}})
    first = await client.embed(["猫", "dog", "猫"], model="fake/e")
    assert first.vectors.shape == (3, 16) and first.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(first.vectors[0], first.vectors[2])
    # The repeated "猫" is sent once (Client.embed deduplicates): two words billed, one input not sent.
    assert (first.usage.input_tokens, first.cached) == (2, 1)


async def test_counts_are_exact_words() -> None:
    count = await Client().count_tokens([{"role": "user", "content": "three little words"}], model="fake/x")
    assert (count.tokens, count.exact, count.tokenizer) == (3, True, "fake-words")


async def test_max_tokens_caps_reported_output() -> None:
    reply = await Client().chat("a b c d e f", model="fake/x", max_tokens=2)
    assert reply.usage.output_tokens == 2


async def test_scripting_one_fake_model_does_not_change_the_others() -> None:
    async with Client(providers={"fake": {"replies": ["Paris."]}}) as client:
        assert (await client.chat("Hello", model="fake/echo")).text == "You said: Hello"  # echo always echoes
        assert (await client.chat("Capital?", model="fake/scripted")).text == "Paris."
        assert (await client.chat("Again", model="fake/echo")).text == "You said: Again"
        with pytest.raises(ConfigurationError, match="script for 'scripted' is used up"):
            await client.chat("More?", model="fake/scripted")


async def test_each_fake_model_may_have_a_script_of_its_own() -> None:
    replies = {"planner": ["plan"], "writer": ["draft", "final"]}
    async with Client(providers={"fake": {"replies": replies}}) as client:
        assert (await client.chat("go", model="fake/writer")).text == "draft"
        assert (await client.chat("go", model="fake/planner")).text == "plan"
        assert (await client.chat("go", model="fake/writer")).text == "final"
        assert (await client.chat("go", model="fake/other")).text == "You said: go"
        client.driver("fake").add_replies("more", model="planner")  # type: ignore[attr-defined]
        assert (await client.chat("go", model="fake/planner")).text == "more"
