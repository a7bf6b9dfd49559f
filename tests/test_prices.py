"""Prices with provenance and the cost formula: every token priced once, exactly, in Decimal."""

from __future__ import annotations

import dataclasses
import json
import warnings
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmclient import Client, Usage
from llmclient.accounting.catalog import PriceTable
from llmclient.accounting.prices import PriceEntry, UnknownPriceWarning, entries_from_json
from llmclient.drivers import is_self_hosted

TABLE = PriceTable.default()


def test_every_shipped_entry_is_sourced_dated_and_sane() -> None:
    entries = list(TABLE)
    providers = {entry.provider for entry in entries}
    assert providers == {"openai", "deepseek", "anthropic", "gemini"}
    for entry in entries:
        assert entry.source and entry.source.startswith("https://"), entry.model
        assert entry.checked and len(entry.checked) == 10, entry.model
        assert entry.input > 0, entry.model
        if entry.mode == "chat":
            assert entry.output >= entry.input, entry.model
            assert entry.max_output_tokens, entry.model
        if entry.cached_input is not None:
            assert entry.cached_input < entry.input, entry.model
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3", "gpt-5", "text-embedding-3-small"):
        assert TABLE.lookup("openai", model) is not None, model
    for model in ("deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash", "deepseek-chat", "deepseek-reasoner"):
        assert TABLE.lookup("deepseek", model) is not None, model
    for model in ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-4-5", "claude-haiku-4-5-20251001"):
        entry = TABLE.lookup("anthropic", model)
        assert entry is not None and entry.cache_write is not None and entry.cached_input is not None, model
    for model in ("gemini-3.8-flash", "gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001"):
        assert TABLE.lookup("gemini", model) is not None, model


def test_prices_read_as_published_per_million() -> None:
    gpt4o = TABLE.lookup("openai", "gpt-4o")
    assert gpt4o is not None
    assert (gpt4o.input_per_million, gpt4o.output_per_million) == (Decimal("2.5"), Decimal("10"))
    # https://api-docs.deepseek.com/quick_start/pricing (read 2026-12-07), peak rates: cache hit, miss, output.
    flash = TABLE.lookup("deepseek", "deepseek-flash")
    assert flash is not None and flash.cached_input is not None
    assert (flash.cached_input * 1_000_000, flash.input_per_million, flash.output_per_million) == (
        Decimal("0.006"),
        Decimal("0.3"),
        Decimal("1.2"),
    )
    assert (flash.max_input_tokens, flash.max_output_tokens) == (1_000_000, 384_000)
    assert flash.source == "https://api-docs.deepseek.com/quick_start/pricing"
    pro = TABLE.lookup("deepseek", "deepseek-v4-pro")
    assert pro is not None and pro.cached_input is not None
    assert (pro.cached_input * 1_000_000, pro.input_per_million, pro.output_per_million) == (
        Decimal("0.044"),
        Decimal("1.32"),
        Decimal("3.96"),
    )


def test_a_legacy_name_is_priced_as_what_it_aliases_and_dated_on_its_own() -> None:
    flash = TABLE.lookup("deepseek", "deepseek-flash")
    for legacy in ("deepseek-v4-flash", "deepseek-chat", "deepseek-reasoner"):
        entry = TABLE.lookup("deepseek", legacy)
        assert entry is not None and flash is not None
        assert (entry.alias_of, entry.input, entry.cached_input, entry.output) == (
            "deepseek-flash",
            flash.input,
            flash.cached_input,
            flash.output,
        )
    chat = TABLE.lookup("deepseek", "deepseek-chat")
    assert chat is not None and chat.deprecation_date == "2026-07-24"


def test_tier_rates_come_from_litellm_fields() -> None:
    # Parsed in the test, not at import (TABLE), so a mutation run sees which test reads the tiers.
    million = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    entry = PriceEntry.from_litellm(
        "openai/m",
        {
            "input_cost_per_token": "0.000002",
            "output_cost_per_token": "0.000008",
            "input_cost_per_token_flex": "0.000001",
            "output_cost_per_token_flex": "0.000004",
            "input_cost_per_token_priority": "0.000004",
        },
    )
    assert entry.cost(million).total == Decimal("2") + Decimal("8")
    assert entry.cost(million, "flex").total == Decimal("1") + Decimal("4")
    # Priority lists no output rate of its own: output is billed at the standard rate, not at $0.
    assert entry.cost(million, "priority").total == Decimal("4") + Decimal("8")
    # An entry with no output rate at all (an embedding model) bills its output at $0 in every tier.
    embedding = PriceEntry.from_litellm(
        "openai/e", {"input_cost_per_token": "0.00000002", "input_cost_per_token_flex": "0.00000001"}
    )
    assert embedding.cost(million, "flex").total == Decimal("0.01")


def test_a_legacy_name_is_priced_as_the_model_it_aliases_with_its_own_dates() -> None:
    entries = entries_from_json(
        {
            "deepseek/deepseek-flash": {
                "litellm_provider": "deepseek",
                "input_cost_per_token": "0.0000003",
                "output_cost_per_token": "0.0000012",
                "checked": "2026-12-07",
            },
            "deepseek/deepseek-chat": {
                "litellm_provider": "deepseek",
                "alias_of": "deepseek-flash",
                "checked": "2026-07-01",
                "deprecation_date": "2026-07-24",
            },
            "deepseek/deepseek-reasoner": {"alias_of": "deepseek-flash"},  # the provider from the key
        }
    )
    by_model = {entry.model: entry for entry in entries}
    assert sorted(by_model) == ["deepseek-chat", "deepseek-flash", "deepseek-reasoner"]
    flash, chat, reasoner = by_model["deepseek-flash"], by_model["deepseek-chat"], by_model["deepseek-reasoner"]
    assert (chat.model, chat.alias_of, chat.checked) == ("deepseek-chat", "deepseek-flash", "2026-07-01")
    assert (chat.input, chat.output) == (flash.input, flash.output) == (Decimal("3E-7"), Decimal("0.0000012"))
    assert (reasoner.provider, reasoner.input, reasoner.output) == ("deepseek", flash.input, flash.output)


def test_a_service_tier_with_rates_of_its_own_prices_the_call() -> None:
    entry = TABLE.lookup("openai", "gpt-6.2-sol")
    assert entry is not None
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000, output_tokens=1_000_000)
    standard, flex, priority = entry.cost(usage), entry.cost(usage, "flex"), entry.cost(usage, "priority")
    assert standard.total == Decimal("2") + Decimal("0.1") + Decimal("10")
    assert (flex.total, flex.service_tier) == (standard.total / 2, "flex")
    assert (priority.total, priority.service_tier) == (standard.total * 2, "priority")
    assert entry.cost(usage, "fast") == priority  # OpenAI bills and reports fast mode as priority
    assert entry.cost(usage, "default") == standard and standard.service_tier is None
    # The worst case at the tier's rates (a standard cache write, $2.50, costs more than standard input).
    assert entry.worst_case(10, 10) == (Decimal("2.5") * 10 + Decimal("10") * 10) / 1_000_000
    assert entry.worst_case(10, 10, service_tier="priority") == (Decimal("4") * 10 + Decimal("20") * 10) / 1_000_000
    assert entry.worst_case(10, 10, choices=3) == (Decimal("2.5") * 10 + Decimal("10") * 30) / 1_000_000


def test_cache_writes_are_priced_at_their_own_rate() -> None:
    entry = TABLE.lookup("openai", "gpt-6.2-sol")
    assert entry is not None
    cost = entry.cost(Usage(input_tokens=100, cache_write_tokens=1_000_000))
    assert cost.cache_write == Decimal("2.5")
    assert cost.total == cost.input + cost.cache_write
    assert PriceEntry.from_litellm("m", {"input_cost_per_token": 1}).cost(Usage(cache_write_tokens=2)).total == 2


def test_cached_tokens_are_priced_at_the_cached_rate_once() -> None:
    entry = TABLE.lookup("openai", "gpt-4o-mini")
    assert entry is not None
    # The reasoning/cached fixture's shape: 86 uncached, 1920 cached, 300 output.
    cost = entry.cost(Usage(input_tokens=86, cached_input_tokens=1920, output_tokens=300))
    assert cost.input == Decimal("0.15") / 1_000_000 * 86
    assert cost.cached_input == Decimal("0.075") / 1_000_000 * 1920
    assert cost.output == Decimal("0.60") / 1_000_000 * 300
    assert cost.total == cost.input + cost.cached_input + cost.output
    assert cost.price_model == "openai/gpt-4o-mini"
    assert cost.price_checked == entry.checked


def test_reasoning_priced_apart_only_when_the_entry_says_so() -> None:
    usage = Usage(input_tokens=10, output_tokens=100, reasoning_tokens=60)
    same = PriceEntry.per_million("r", "p", input=1, output=4)
    assert same.cost(usage).output == Decimal(4) / 1_000_000 * 100
    apart = PriceEntry(model="r", provider="p", input=Decimal(0), output=Decimal(4), reasoning=Decimal(8))
    assert apart.cost(usage).output == Decimal(4) * 40 + Decimal(8) * 60


def test_dated_snapshots_find_their_base_model() -> None:
    assert TABLE.lookup("openai", "gpt-4.1-2025-04-14") is TABLE.lookup("openai", "gpt-4.1")
    assert TABLE.lookup("openai", "gpt-9") is None


def test_local_providers_are_free_unless_priced() -> None:
    for provider in ("transformers", "llamacpp", "ollama", "fake"):
        entry = TABLE.lookup(provider, "anything", self_hosted=is_self_hosted(provider))
        assert entry is not None and entry.cost(Usage(input_tokens=10**6, output_tokens=10**6)).total == 0
    table = PriceTable.default()
    table.update({"ollama/qwen2:1.5b": {"input_cost_per_token": "0.0000001", "output_cost_per_token": "0.0000002"}})
    assert table.cost("ollama", "qwen2:1.5b", Usage(input_tokens=10, output_tokens=10)).total == Decimal("0.000003")


def test_unknown_models_cost_none_with_one_warning() -> None:
    table = PriceTable.default()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert table.cost("openai-compatible", "mystery", Usage(input_tokens=5)) is None
        assert table.cost("openai-compatible", "mystery", Usage(input_tokens=5)) is None
    assert [w.category for w in caught] == [UnknownPriceWarning]
    assert "unknown is not free" in str(caught[0].message)


def test_overrides_wildcards_and_plain_numbers() -> None:
    table = PriceTable.default()
    table.update(
        {
            "openai/gpt-4o": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"},
            "openai-compatible/*": 0,
            "vllm/llama-*": 3,  # USD per million, input and output
        }
    )
    assert table.cost("openai", "gpt-4o", Usage(input_tokens=1)).total == Decimal("0.000001")
    assert table.cost("openai-compatible", "x", Usage(input_tokens=9)).total == 0
    assert table.cost("vllm", "llama-3-8b", Usage(output_tokens=1_000_000)).total == 3
    assert table.lookup("vllm", "mistral") is None


def test_a_litellm_file_can_be_loaded(tmp_path: Path) -> None:
    litellm = {
        "sample_spec": {"max_tokens": "LEGACY", "input_cost_per_token": 0.0},
        "gpt-4o": {
            "max_tokens": 16384,
            "max_input_tokens": 128000,
            "max_output_tokens": 16384,
            "input_cost_per_token": 2.5e-06,
            "output_cost_per_token": 1e-05,
            "cache_read_input_token_cost": 1.25e-06,
            "litellm_provider": "openai",
            "mode": "chat",
        },
        "deepseek/deepseek-chat": {
            "input_cost_per_token": 2.8e-07,
            "output_cost_per_token": 4.2e-07,
            "cache_read_input_token_cost": 2.8e-08,
            "litellm_provider": "deepseek",
            "mode": "chat",
        },
        "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
    }
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps(litellm))
    table = PriceTable.from_litellm(path)
    assert len(table) == 2
    gpt4o = table.lookup("openai", "gpt-4o")
    assert gpt4o is not None
    # Floats become the decimals they were written as, not their binary expansions.
    assert (gpt4o.input, gpt4o.cached_input, gpt4o.max_output_tokens) == (
        Decimal("0.0000025"),
        Decimal("0.00000125"),
        16384,
    )
    assert table.lookup("deepseek", "deepseek-chat") is not None
    assert Client(prices=table).prices is table


@given(
    uncached=st.integers(0, 10**9),
    cached=st.integers(0, 10**9),
    output=st.integers(0, 10**8),
    reasoning_share=st.floats(0, 1),
    prices=st.tuples(*[st.decimals(0, 100, places=4, allow_nan=False, allow_infinity=False)] * 3),
)
def test_no_token_is_billed_twice(
    uncached: int, cached: int, output: int, reasoning_share: float, prices: tuple[Decimal, Decimal, Decimal]
) -> None:
    entry = PriceEntry.per_million("m", "p", input=prices[0], cached_input=prices[1], output=prices[2])
    usage = Usage(
        input_tokens=uncached,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_tokens=int(output * reasoning_share),
    )
    cost = entry.cost(usage)
    million = Decimal(1_000_000)
    assert cost.input == prices[0] / million * uncached
    assert cost.cached_input == prices[1] / million * cached
    assert cost.output == prices[2] / million * output  # reasoning is inside output, not added again
    assert cost.total == cost.input + cost.cached_input + cost.output


@given(
    a=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
    b=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_costs_add_up(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    entry = TABLE.lookup("deepseek", "deepseek-chat")
    assert entry is not None
    first = Usage(input_tokens=a[0], cached_input_tokens=a[1], output_tokens=a[2])
    second = Usage(input_tokens=b[0], cached_input_tokens=b[1], output_tokens=b[2])
    assert entry.cost(first + second).total == entry.cost(first).total + entry.cost(second).total


async def test_responses_carry_their_priced_cost() -> None:
    body = json.loads((Path(__file__).parent / "fixtures" / "deepseek" / "chat_reasoner.json").read_text())
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with Client(transport=transport, providers={"deepseek": {"api_key": "sk-x"}}) as client:
        reply = await client.chat("9.11 和 9.8 哪个大？", model="deepseek/deepseek-flash")
    usage = reply.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (68, 1152, 482)
    assert reply.cost is not None
    expected = (Decimal("0.3") * 68 + Decimal("0.006") * 1152 + Decimal("1.2") * 482) / 1_000_000
    assert reply.cost.total == expected
    assert reply.cost.price_source == "https://api-docs.deepseek.com/quick_start/pricing"
    assert client.ledger.total() == expected


def test_a_bare_number_is_the_decimal_it_was_written_as() -> None:
    # 0.15 as a float is 0.1499999999999999944…; the price must be 0.15 per million exactly, not its binary expansion.
    table = Client(prices={"openai-compatible/llama": 0.15}).prices
    entry = table.lookup("openai-compatible", "llama")
    assert entry is not None and entry.source == "user"
    assert (entry.input_per_million, entry.output_per_million) == (Decimal("0.15"), Decimal("0.15"))
    cost = entry.cost(Usage(input_tokens=1_000_000, output_tokens=2_000_000))
    assert cost.total == Decimal("0.45")
    per_million = PriceEntry.per_million("m", "p", input=0.1, output=0.2, cached_input=0.05)  # type: ignore[arg-type]
    assert (per_million.input, per_million.output, per_million.cached_input) == (
        Decimal("0.0000001"),
        Decimal("0.0000002"),
        Decimal("0.00000005"),
    )


def test_a_price_entry_can_be_passed_as_an_override() -> None:
    mine = PriceEntry.per_million("gpt-4o", "openai", input=1, output=2, source="contract")
    new = PriceEntry.per_million("llama", "openai-compatible", input=3, output=4, source="contract")
    table = Client(prices={"openai/gpt-4o": mine, "openai-compatible/llama": new}).prices
    assert table.lookup("openai", "gpt-4o") is mine  # replaces the shipped price
    assert table.lookup("openai", "gpt-4o-2024-08-06") is mine  # and its dated snapshots
    assert table.lookup("openai-compatible", "llama") is new
    cost = table.cost("openai-compatible", "llama", Usage(input_tokens=10**6, output_tokens=10**6))
    assert cost is not None and (cost.total, cost.price_source) == (Decimal(7), "contract")


def test_len_and_iteration_count_wildcards_once() -> None:
    exact = PriceEntry.per_million("a", "p", input=1)
    wildcard = PriceEntry.per_million("llama-*", "vllm", input=2)
    single = PriceEntry.per_million("m?", "vllm", input=3)
    table = PriceTable([exact, wildcard])
    assert len(table) == 2 and list(table) == [exact, wildcard]
    table.add(single)
    table.add(PriceEntry.per_million("a", "p", input=4))  # replaces: still one entry for p/a
    assert len(table) == 3
    assert table.lookup("vllm", "m1") is single and table.lookup("vllm", "llama-3") is wildcard
    assert table.lookup("vllm", "m10") is None  # `?` is one character
    assert len(PriceTable.default()) == len(list(PriceTable.default())) > 0


def test_litellm_items_fill_what_they_leave_out() -> None:
    table = PriceTable()
    table.update(
        {
            "openai-compatible/embedder": {"input_cost_per_token": "0.0000001", "mode": "embedding"},
            "openai-compatible/output-only": {"output_cost_per_token": "0.000002", "max_output_tokens": 4096.0},
        }
    )
    embedder = table.lookup("openai-compatible", "embedder")
    assert embedder is not None and (embedder.output, embedder.mode) == (0, "embedding")
    output_only = table.lookup("openai-compatible", "output-only")
    assert output_only is not None and (output_only.input, output_only.mode) == (0, "chat")
    # A float from a JSON file is still a token count: the worst case multiplies it with a Decimal.
    assert output_only.max_output_tokens == 4096 and isinstance(output_only.max_output_tokens, int)
    assert output_only.worst_case(100, None) == Decimal("0.000002") * 4096
    # Without litellm_provider the provider is the key's prefix.
    entry = PriceEntry.from_litellm("deepseek/deepseek-chat", {"input_cost_per_token": 2.8e-07})
    assert (entry.provider, entry.model) == ("deepseek", "deepseek-chat")
    assert PriceEntry.per_million("m", "p", input=1).output == 0


def test_the_worst_case_of_a_model_without_an_output_bound() -> None:
    # Free output and no output bound (a priced local model): the input alone bounds the call.
    local = PriceEntry(model="m", provider="ollama", input=Decimal("0.000001"))
    assert local.worst_case(1000, None) == Decimal("0.001")
    assert local.worst_case(1000, 10) == Decimal("0.001")
    # Priced reasoning without an output bound cannot be bounded, even when visible output is free.
    thinking = PriceEntry(model="m", provider="p", input=Decimal("0.000001"), reasoning=Decimal("0.000004"))
    assert thinking.worst_case(1000, None) is None
    # With a bound, the dearer of output and reasoning prices every token of it.
    assert thinking.worst_case(1000, 10) == Decimal("0.001") + Decimal("0.000004") * 10


def test_entries_are_immutable() -> None:
    # One entry serves every call and every client sharing the table: nobody may reprice it in place.
    entry = TABLE.lookup("openai", "gpt-4o")
    assert entry is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.input = Decimal(0)  # type: ignore[misc]


def test_a_later_wildcard_overrides_an_earlier_one() -> None:
    table = PriceTable([PriceEntry.per_million("*", "vllm", input=1)])
    table.update({"vllm/llama-*": 2})  # a narrower override, added later, wins where both match
    llama, other = table.lookup("vllm", "llama-3"), table.lookup("vllm", "mistral")
    assert llama is not None and llama.input_per_million == 2
    assert other is not None and other.input_per_million == 1


def test_a_litellm_file_s_other_prices_are_skipped_wherever_they_stand(tmp_path: Path) -> None:
    litellm = {
        "gpt-image-1": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
        "tts-1": {"litellm_provider": "openai", "mode": "audio_speech", "input_cost_per_character": 1.5e-05},
        "gpt-4o-mini": {"litellm_provider": "openai", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07},
    }
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(litellm))
    assert [entry.model for entry in PriceTable.from_litellm(path)] == ["gpt-4o-mini"]


def test_gpt_4_the_demos_counting_model_has_a_sourced_price() -> None:
    entry = PriceTable.default().lookup("openai", "gpt-4")
    assert entry is not None
    assert (entry.input_per_million, entry.output_per_million) == (Decimal(30), Decimal(60))
    assert (entry.max_input_tokens, entry.max_output_tokens) == (8192, 8192)
    assert (entry.source, entry.checked) == ("https://developers.openai.com/api/docs/models/gpt-4", "2026-12-07")
    assert PriceTable.default().lookup("openai", "gpt-4-0613") == entry  # the snapshot it serves


def test_every_shipped_entry_is_a_valid_user_entry_and_misspellings_are_refused() -> None:
    import json
    from importlib import resources

    from llmclient import ConfigurationError
    from llmclient.accounting.catalog import checked_entry

    shipped = json.loads(resources.files("llmclient.accounting").joinpath("prices.json").read_text(encoding="utf-8"))
    for key, item in shipped.items():
        if isinstance(item, dict):
            checked_entry(key, item)  # a user may copy any shipped entry into Client(prices=...) as it is
    table = PriceTable()
    with pytest.raises(ConfigurationError, match=r"'input_cost_per_tokn' \(did you mean 'input_cost_per_token'\?\)"):
        table.update({"x/y": {"input_cost_per_tokn": "0.000001", "output_cost_per_token": "0.000002"}})
    assert table.lookup("x", "y") is None  # refused whole, not priced at $0 input
    for bad in ("cheap", "NaN", "-1", "Infinity", True):
        with pytest.raises(ConfigurationError, match="is not a price"):
            table.update({"x/y": bad})
    with pytest.raises(ConfigurationError, match="write 'provider/model'"):
        table.update({"gpt-4o": 1})
