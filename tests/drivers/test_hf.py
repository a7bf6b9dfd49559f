"""The transformers driver on the real models from the wheels (SmolLM2-135M-Instruct, all-MiniLM-L6-v2), on the CPU.

Each model is loaded once for the module. The reference for generation is plain transformers: the SmolLM2 GGUF
loaded with `from_pretrained(..., gguf_file=...)` and `model.generate`, as a user would write it.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: every load below is local_files_only as well

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmclient import (
    Client,
    ConfigurationError,
    LocalEngineError,
    Message,
    MissingExtraError,
    OutOfMemoryError,
    Tool,
)
from llmclient.drivers.local.hf import TransformersDriver
from llmclient.drivers.local.hf_encoder import _pool, read_sentence_config
from llmclient.drivers.local.hf_models import ModelOptions, dequantized_folder, resolve_source
from llmclient.drivers.local.runtime import minilm_folder, smollm2_gguf
from llmclient.testing import Target, conformance_cases
from llmclient.types import ChatRequest

# Two cores shared with other test runs: one intra-op thread avoids OpenMP oversubscription, which makes torch
# several times slower here. Reference and driver run in this same process, so the comparison is unaffected.
torch.set_num_threads(1)

# The module's fixtures load SmolLM2 twice (25 s here) inside the first test's timeout.
pytestmark = pytest.mark.timeout(300)

SMOL = "smollm2"
MINILM = "all-MiniLM-L6-v2"
MAX_TOKENS = 16
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Count from 1 to 5.",
    "Tell me a joke about computers in one sentence.",
    "Why is the sky blue?",
    "2+2=",
    "Name three fruits.",
    "Hello",
]
WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def request(prompt: str, **params: Any) -> ChatRequest:
    params.setdefault("temperature", 0)
    params.setdefault("max_tokens", MAX_TOKENS)
    return ChatRequest(model=SMOL, messages=[Message(role="user", content=prompt)], **params)


@pytest.fixture(scope="module")
def driver() -> Iterator[TransformersDriver]:
    # device="cpu" pins the float32 CPU path the raw reference runs on, even on a machine with a GPU.
    driver = TransformersDriver(device="cpu")
    driver._model(SMOL).load_lm()
    yield driver
    driver._model(SMOL).unload()


@pytest.fixture(scope="module")
def raw() -> tuple[Any, Any]:
    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    return tokenizer, model.eval()


@pytest.fixture(scope="module")
def singles(driver: TransformersDriver) -> list[list[int]]:
    """Each prompt's greedy tokens, generated alone (one request at a time)."""

    async def run() -> list[list[int]]:
        return [(await driver.chat(request(prompt))).raw["token_ids"] for prompt in PROMPTS]  # type: ignore[index]

    return asyncio.run(run())


def raw_greedy(raw: tuple[Any, Any], prompt: str, **settings: Any) -> tuple[list[int], list[int]]:
    tokenizer, model = raw
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    inputs = torch.tensor([ids])
    settings.setdefault("max_new_tokens", MAX_TOKENS)
    with torch.inference_mode():
        out = model.generate(inputs, attention_mask=torch.ones_like(inputs), do_sample=False, **settings)
    return list(ids), out[0, len(ids) :].tolist()


# -- generation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_greedy_reply_equals_raw_generate_token_for_token(
    driver: TransformersDriver, raw: tuple[Any, Any], singles: list[list[int]], index: int
) -> None:
    prompt_ids, expected = raw_greedy(raw, PROMPTS[index])
    assert singles[index] == expected
    reply = await driver.chat(request(PROMPTS[index]))
    assert reply.raw == {"token_ids": expected, "prompt_tokens": len(prompt_ids)}
    assert reply.text == raw[0].decode(expected, skip_special_tokens=True)
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (len(prompt_ids), len(expected))
    assert reply.finish_reason == ("stop" if expected[-1] == raw[0].eos_token_id else "length")
    count = await driver.count_tokens(SMOL, [Message(role="user", content=PROMPTS[index])], [])
    assert (count.tokens, count.exact) == (len(prompt_ids), True)


async def test_extra_body_passes_generation_settings(driver: TransformersDriver, raw: tuple[Any, Any]) -> None:
    _, expected = raw_greedy(raw, PROMPTS[2], repetition_penalty=1.5, max_new_tokens=8)
    reply = await driver.chat(request(PROMPTS[2], max_tokens=8, extra_body={"repetition_penalty": 1.5}))
    assert reply.raw["token_ids"] == expected  # type: ignore[index]


async def test_describe_says_where_the_model_runs(driver: TransformersDriver) -> None:
    info = await driver.describe(SMOL)
    assert (info["kind"], info["device"], info["dtype"], info["device_map"]) == ("chat", "cpu", "float32", None)
    assert info["parameters"] == 134515008 and info["memory_bytes"] >= 4 * 134515008  # float32 weights + buffers
    assert info["reason"] == "device='cpu' given"
    folder = dequantized_folder(smollm2_gguf())
    assert info["dequantized_cache"] == str(folder) and (folder / "model.safetensors").is_file()


def test_the_gguf_cache_is_keyed_by_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCLIENT_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.Q4_0.gguf"
    gguf.write_bytes(b"GGUF one")
    first = dequantized_folder(gguf)
    assert first.parent == tmp_path / "cache" / "transformers" and first.name.startswith("model.Q4_0-")
    gguf.write_bytes(b"GGUF two, longer")  # another size (and mtime): another folder
    assert dequantized_folder(gguf) != first


async def test_streaming_assembles_to_the_same_text_and_usage(driver: TransformersDriver) -> None:
    reply = await driver.chat(request(PROMPTS[1]))
    chunks = [chunk async for chunk in driver.stream(request(PROMPTS[1]))]
    assert len(chunks) > 3
    assert "".join(chunk.delta for chunk in chunks) == reply.text
    assert chunks[-1].usage == reply.usage and chunks[-1].finish_reason == reply.finish_reason


async def test_counts_come_from_the_tokenizer(driver: TransformersDriver, raw: tuple[Any, Any]) -> None:
    tokenizer = raw[0]
    text = "Déjà vu, 你好 — tokens!"
    assert (await driver.count_text(SMOL, text)).tokens == len(tokenizer.encode(text, add_special_tokens=False))
    messages = [Message(role="system", content="Be brief."), Message(role="user", content="Weather in Paris?")]
    plain = await driver.count_tokens(SMOL, messages, [])
    rendered = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages], tokenize=True, add_generation_prompt=True
    )
    assert plain.tokens == len(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)
    # SmolLM2's template has no tools: they are written into the system message, and counted there.
    with_tools = await driver.count_tokens(SMOL, messages, [WEATHER])
    reply = await driver.chat(ChatRequest(model=SMOL, messages=messages, tools=[WEATHER], temperature=0, max_tokens=1))
    assert with_tools.tokens == reply.usage.input_tokens > plain.tokens + 50


async def test_stop_strings_cut_the_reply_where_they_start(
    driver: TransformersDriver, singles: list[list[int]]
) -> None:
    full = (await driver.chat(request(PROMPTS[0]))).text
    stop = full.split()[3]  # a word in the middle of the greedy reply
    reply = await driver.chat(request(PROMPTS[0], stop=[stop, "never appears"]))
    assert reply.text == full[: full.index(stop)]
    assert reply.finish_reason == "stop"
    streamed = "".join([chunk.delta async for chunk in driver.stream(request(PROMPTS[0], stop=stop))])
    assert streamed == reply.text


async def test_concurrent_requests_are_batched_and_match_sequential_ones(
    driver: TransformersDriver, singles: list[list[int]]
) -> None:
    # Batched logits differ from a lone request's by ~1e-4 (padding and batch size change summation orders); the
    # greedy tokens agree because every top-2 margin here is far larger (docs/providers/transformers.md).
    before = driver.batch_stats(SMOL)
    replies = await asyncio.gather(*(driver.chat(request(prompt)) for prompt in PROMPTS))
    assert [reply.raw["token_ids"] for reply in replies] == singles  # type: ignore[index]
    after = driver.batch_stats(SMOL)
    assert (after.batches - before.batches, after.requests - before.requests, after.largest) == (1, 8, 8)


async def test_rows_of_a_batch_stop_on_their_own(driver: TransformersDriver, singles: list[list[int]]) -> None:
    short = request(PROMPTS[2], max_tokens=4)
    replies = await asyncio.gather(
        driver.chat(short), driver.chat(request(PROMPTS[4])), driver.chat(request(PROMPTS[7]))
    )
    assert replies[0].raw["token_ids"] == singles[2][:4] and replies[0].finish_reason == "length"  # type: ignore[index]
    assert [reply.raw["token_ids"] for reply in replies[1:]] == [singles[4], singles[7]]  # type: ignore[index]


async def test_a_seed_makes_sampling_reproducible(driver: TransformersDriver) -> None:
    first, second = [await driver.chat(request(PROMPTS[7], temperature=0.9, seed=7, max_tokens=8)) for _ in "ab"]
    assert first.raw == second.raw


async def test_cancelling_stops_generation_and_frees_the_model(driver: TransformersDriver) -> None:
    stats = driver.batch_stats(SMOL)

    async def consume() -> None:
        async for _ in driver.stream(request(PROMPTS[1], max_tokens=400)):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.perf_counter()
    reply = await driver.chat(request(PROMPTS[5], max_tokens=2))  # waits only for the cancelled row's next token
    assert reply.usage.output_tokens == 2
    assert time.perf_counter() - started < 10
    assert driver.batch_stats(SMOL).batches == stats.batches + 2
    batcher = driver._batcher(driver._model(SMOL))
    await asyncio.wait_for(batcher.idle(), 5)
    assert batcher.worker.busy == 0 and not batcher.pending


async def test_the_event_loop_keeps_ticking_during_generation(driver: TransformersDriver) -> None:
    gaps: list[float] = []
    done = False

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    async for _ in driver.stream(request(PROMPTS[3])):
        pass
    elapsed = time.perf_counter() - started
    done = True
    await beat
    # Generation on the loop's thread would show as one gap as long as the whole generation. On 2 shared cores the
    # GIL alone can delay a tick by tens of milliseconds, so the bound is relative, not a fixed 50 ms.
    assert len(gaps) > 20
    assert max(gaps) < elapsed / 4


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), OutOfMemoryError),
        (MemoryError(), OutOfMemoryError),
        (RuntimeError("shape mismatch"), LocalEngineError),
    ],
)
async def test_errors_in_generation_reach_the_caller_typed(
    driver: TransformersDriver, monkeypatch: pytest.MonkeyPatch, error: Exception, expected: type[Exception]
) -> None:
    def broken(**kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(driver._model(SMOL).lm, "generate", broken)
    with pytest.raises(expected) as raised:
        await driver.chat(request(PROMPTS[0]))
    assert raised.value.__cause__ is error and raised.value.provider == "transformers"
    with pytest.raises(expected):
        async for _ in driver.stream(request(PROMPTS[0])):
            pass
    monkeypatch.undo()
    assert (await driver.chat(request(PROMPTS[5], max_tokens=1))).usage.output_tokens == 1


# -- tools and structured output, with a scripted engine ------------------------------------------------------------


def scripted(driver: TransformersDriver, *texts: str) -> Callable[..., Any]:
    """A stand-in for `model.generate` that "generates" the given texts, one per call, through the real tokenizer
    and the driver's stopping criteria, so parsing and streaming run exactly as with the model."""
    tokenizer = driver._model(SMOL).tokenizer
    replies = list(texts)

    def generate(*, input_ids: Any, stopping_criteria: Any, **kwargs: Any) -> Any:
        ids = input_ids
        for token in [*tokenizer.encode(replies.pop(0), add_special_tokens=False), tokenizer.eos_token_id]:
            ids = torch.cat([ids, torch.full((ids.shape[0], 1), token)], dim=1)
            if bool(stopping_criteria(ids, None).all()):
                break
        return ids

    return generate


CALL = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


async def test_tool_calls_are_parsed_from_the_reply(
    driver: TransformersDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver._model(SMOL).lm, "generate", scripted(driver, CALL, CALL))
    tool_request = ChatRequest(model=SMOL, messages=[Message(role="user", content="Weather?")], tools=[WEATHER])
    reply = await driver.chat(tool_request)
    assert reply.text == "Let me check." and reply.finish_reason == "tool_calls"
    assert [(call.name, call.arguments) for call in reply.tool_calls] == [("get_weather", {"city": "Paris"})]
    chunks = [chunk async for chunk in driver.stream(tool_request)]
    assert "<tool_call>" not in "".join(chunk.delta for chunk in chunks)
    assert [d.name for chunk in chunks for d in chunk.tool_call_deltas] == ["get_weather"]
    assert chunks[-1].finish_reason == "tool_calls"


async def test_a_reply_that_is_only_a_call_streams_no_text(
    driver: TransformersDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = '{"name": "get_weather", "parameters": {"city": "Paris"}}'  # Llama 3's JSON format
    monkeypatch.setattr(driver._model(SMOL).lm, "generate", scripted(driver, call))
    tool_request = ChatRequest(model=SMOL, messages=[Message(role="user", content="Weather?")], tools=[WEATHER])
    chunks = [chunk async for chunk in driver.stream(tool_request)]
    assert "".join(chunk.delta for chunk in chunks) == ""
    deltas = [d for chunk in chunks for d in chunk.tool_call_deltas]
    assert [(d.name, d.arguments) for d in deltas] == [("get_weather", '{"city": "Paris"}')]


async def test_response_model_uses_the_schema_in_the_prompt_and_retries(
    driver: TransformersDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    class City(BaseModel):
        name: str
        country: str

    monkeypatch.setattr(
        driver._model(SMOL).lm,
        "generate",
        scripted(driver, '{"name": "Paris"}', '{"name": "Paris", "country": "France"}'),
    )
    client = Client(providers={"transformers": driver})  # not closed: the module's driver stays loaded
    reply = await client.chat("Capital of France?", model="transformers/smollm2", response_model=City)
    assert reply.parsed == City(name="Paris", country="France")
    assert len(client.ledger) == 2 and client.ledger.total() == 0


# -- embeddings -----------------------------------------------------------------------------------------------------

TEXTS = ["A cat sits on the mat.", "猫が好きです", "", "dogs " * 400, "The quick brown fox jumps over the lazy dog."]


async def test_embeddings_match_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_folder()), device="cpu", local_files_only=True)
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    driver = TransformersDriver(device="cpu")
    result = await driver.embed(MINILM, TEXTS)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (5, 384)
    cosine = (result.vectors * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1, atol=1e-5)
    lengths = reference.tokenizer(TEXTS, truncation=True, max_length=reference.max_seq_length)["input_ids"]
    assert result.usage.input_tokens == sum(len(ids) for ids in lengths)  # the long text is cut to 256 tokens
    assert (await driver.embed(MINILM, [])).vectors.shape == (0, 384)
    short = await driver.embed(MINILM, TEXTS[:2], dimensions=64)
    assert short.vectors.shape == (2, 64) and np.allclose(np.linalg.norm(short.vectors, axis=1), 1, atol=1e-5)
    info = await driver.describe(MINILM)
    assert (info["kind"], info["device"], info["dtype"], info["parameters"]) == ("embed", "cpu", "float32", 22713216)
    await driver.aclose()


@pytest.mark.parametrize("side", ["right", "left"])
def test_every_pooling_matches_sentence_transformers(side: str) -> None:
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    states = torch.randn(3, 7, 8, generator=torch.Generator().manual_seed(0))
    lengths = [7, 4, 2]
    rows = [[1] * n + [0] * (7 - n) if side == "right" else [0] * (7 - n) + [1] * n for n in lengths]
    mask = torch.tensor(rows)
    names = {"cls": "cls_token", "max": "max_tokens", "mean": "mean_tokens", "weightedmean": "weightedmean_tokens"}
    for mode in ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"):
        expected = Pooling(8, pooling_mode=mode)({"token_embeddings": states, "attention_mask": mask})
        assert torch.allclose(_pool(names.get(mode, mode), states, mask), expected["sentence_embedding"], atol=1e-6)


def test_the_sentence_config_is_read_from_the_folder() -> None:
    source = resolve_source(MINILM, ModelOptions(path=str(minilm_folder())))
    config = read_sentence_config(source)
    assert (config.modes, config.normalize, config.max_seq_length, config.lowercase) == (
        ("mean_tokens",),
        True,
        256,
        False,
    )


# -- the Client, configuration and errors ---------------------------------------------------------------------------


async def test_the_client_works_offline_with_the_built_in_models() -> None:
    torch.manual_seed(0)  # the default is sampling at temperature 1: pin the global generator
    async with Client() as client:
        reply = await client.chat("Hello", model="transformers/smollm2")
        assert reply.text and reply.usage.output_tokens > 0 and reply.cost is not None and reply.cost.total == 0
        vectors = await client.embed(["a"], model="transformers/all-MiniLM-L6-v2")
        assert vectors.vectors.shape == (1, 384)
        info = await client.driver("transformers").describe("smollm2")  # type: ignore[attr-defined]
        assert info["parameters"] == 134515008 and info["memory_bytes"] > 500_000_000
        assert info["dequantized_cache"] == str(dequantized_folder(smollm2_gguf()))


async def test_a_hub_id_missing_from_the_cache_says_how_to_get_it() -> None:
    driver = TransformersDriver()
    with pytest.raises(ConfigurationError, match="hf download nobody/no-such-model"):
        await driver.count_tokens("nobody/no-such-model", [Message(role="user", content="hi")], [])


async def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'llmclient\[transformers\]'"):
        await TransformersDriver().count_text(SMOL, "hi")


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="unknown transformers option"):
        Client(providers={"transformers": {"devise": "cpu"}}).driver("transformers")
    driver = TransformersDriver(models={SMOL: {"max_batch_size": 2, "colour": "red"}})
    with pytest.raises(ConfigurationError, match="colour"):
        driver._model(SMOL)


@pytest.mark.parametrize("case", conformance_cases(Target("transformers", SMOL)), ids=str)
async def test_conformance(driver: TransformersDriver, case: Any) -> None:
    """The conformance suite's in-process cases (llmclient.testing), with the loaded model shared between them."""
    await case(Target("transformers", SMOL, driver, shared=True))
