"""The model catalog (llmclient/accounting/catalog.py): the shipped table with provenance, and the user's copy
refreshed from a LiteLLM-format file, validated first and written atomically."""

from __future__ import annotations

import json
import os
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llmclient import PriceFileError, PriceTable
from llmclient.accounting.catalog import cache_path, catalog_card, update_prices, user_entries

LITELLM = Path(__file__).parent / "fixtures" / "litellm" / "model_prices_and_context_window.json"


def test_every_shipped_entry_is_sourced_and_dated() -> None:
    table = PriceTable.default()
    for entry in table:
        assert entry.source and entry.source.startswith("https://"), entry
        assert entry.checked and len(entry.checked) == 10, entry
    current = ["gpt-6.2-astra", "gpt-6.2-sol", "gpt-6.1-sol", "gpt-6-luna"]
    for model in current:
        entry = table.lookup("openai", model)
        assert entry is not None and entry.max_output_tokens == 128_000 and "reasoning" in entry.capabilities
        assert {"temperature", "top_p"} <= entry.unsupported_params
    o3_mini = table.lookup("openai", "o3-mini")
    assert o3_mini is not None and {"temperature", "top_p", "stop"} <= o3_mini.unsupported_params


def test_a_catalog_card_says_everything_with_its_source() -> None:
    entry = PriceTable.default().lookup("deepseek", "deepseek-chat")
    assert entry is not None
    card = catalog_card(entry)
    assert card["model"] == "deepseek/deepseek-chat"
    assert (card["input_per_million"], card["cached_input_per_million"], card["output_per_million"]) == (
        "0.3",
        "0.006",
        "1.2",
    )
    assert (card["alias_of"], card["deprecation_date"]) == ("deepseek-flash", "2026-07-24")
    assert (card["max_input_tokens"], card["max_output_tokens"]) == (1_000_000, 384_000)
    assert card["source"] == "https://api-docs.deepseek.com/quick_start/pricing" and card["checked"]
    sol = catalog_card(PriceTable.default().lookup("openai", "gpt-6.2-sol"))  # type: ignore[arg-type]
    assert sol["tiers"]["priority"] == {"input_per_million": "4", "output_per_million": "20"}
    assert sol["unsupported_reasoning_efforts"] == ["none", "minimal"]


def test_an_update_replaces_prices_and_keeps_the_shipped_rules() -> None:
    before = PriceTable.default().lookup("deepseek", "deepseek-flash")
    result = update_prices(str(LITELLM))
    assert result.path == cache_path() and result.entries == 5  # the token-priced items, sample_spec aside
    written = json.loads(result.path.read_text())
    assert written["_llmclient"]["source"] == str(LITELLM) and len(written["_llmclient"]["sha256"]) == 64
    table = PriceTable.default()
    flash = table.lookup("deepseek", "deepseek-flash")
    assert before is not None and flash is not None
    assert (flash.input_per_million, before.input_per_million) == (Decimal("0.15"), Decimal("0.3"))
    assert flash.source == "https://api-docs.deepseek.com/quick_start/pricing"  # the file's own source kept
    sol = table.lookup("openai", "gpt-6.2-sol")
    assert sol is not None
    assert sol.source == str(LITELLM) and sol.checked == result.fetched[:10]  # provenance: the file, today
    assert sol.unsupported_reasoning_efforts == ("none", "minimal")  # rules LiteLLM's file does not carry
    assert "temperature" in sol.unsupported_params
    assert table.lookup("bedrock", "ai21.j2-mid-v1") is not None
    assert table.lookup("openai", "gpt-4o") is not None  # what the file lacks stays as shipped


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"gpt-6.2-sol": {"input_cost_per_token": -1}}, "not a price per token"),
        ({"gpt-6.2-sol": {"input_cost_per_token": "cheap"}}, "not a price per token"),
        ({"gpt-6.2-sol": {"output_cost_per_token_priority": True}}, "not a price per token"),
        ({"gpt-6.2-sol": {"max_input_tokens": "1M"}}, "not a token count"),
        ({"gpt-6.2-sol": {"supports_vision": "yes"}}, "not true or false"),
        ({"gpt-6.2-sol": {"unsupported_params": "temperature"}}, "not a list of names"),
        ({"broken": 3}, "is not an object"),
    ],
)
def test_a_malformed_file_is_refused_whole_and_changes_nothing(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    update_prices(str(LITELLM))
    before = cache_path().read_bytes()
    data = json.loads(LITELLM.read_text())
    for key, fields in change.items():
        data[key] = {**data[key], **fields} if isinstance(fields, dict) and key in data else fields
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(PriceFileError, match=problem):
        update_prices(str(bad))
    assert cache_path().read_bytes() == before
    assert [p.name for p in cache_path().parent.iterdir()] == ["prices.json"]  # no temporary file left


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"sample_spec": {}}', b"{" * 10_000])
def test_a_file_that_is_no_price_table_is_refused(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(PriceFileError):
        update_prices(str(bad))
    assert not cache_path().exists()


def test_an_update_from_a_url(tmp_path: Path) -> None:
    class Serve(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = LITELLM.read_bytes()
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/model_prices_and_context_window.json"
        result = update_prices(url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert result.entries == 5
    sol = PriceTable.default().lookup("openai", "gpt-6.2-sol")
    assert sol is not None and sol.source == url


def test_a_copy_damaged_after_it_was_written_is_ignored_with_a_warning() -> None:
    update_prices(str(LITELLM))
    path = cache_path()
    path.write_text("{ damaged")
    os.utime(path, ns=(1, 1))  # a new mtime, so the copy is read again
    from llmclient.accounting.catalog import PriceCatalogWarning

    with pytest.warns(PriceCatalogWarning, match="ignoring the price table"):
        assert user_entries() == []
    entry = PriceTable.default().lookup("deepseek", "deepseek-flash")
    assert entry is not None and entry.input_per_million == Decimal("0.3")  # the shipped table again
