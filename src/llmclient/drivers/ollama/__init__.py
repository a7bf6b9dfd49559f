"""Ollama's native API: chat and NDJSON streams on `/api/chat`, embeddings on `/api/embed`, and a context guard.

Ollama cuts a prompt that does not fit `num_ctx` without an error, and its OpenAI-compatible `/v1` endpoint cannot
set `num_ctx` at all. This driver learns the model's context length from `/api/show`, counts the prompt, sends a
`num_ctx` that fits prompt and reply, raises `ContextWindowExceededError` before sending a prompt that cannot fit,
and warns (`OllamaTruncationWarning`) when Ollama reports clearly fewer prompt tokens than were counted.
API reference: https://github.com/ollama/ollama/blob/main/docs/api.md
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import ValidationError

from llmclient.drivers import Capabilities
from llmclient.drivers.ollama.context import (
    ContextGuard,
    OllamaTruncationWarning,
    Sent,
    list_models,
    pull_model,
    warn_if_truncated,
)
from llmclient.drivers.ollama.wire import (
    ollama_chunk,
    ollama_format,
    ollama_logprobs,
    ollama_messages,
    ollama_think,
    ollama_tool_call,
)
from llmclient.drivers.toolkit import HTTPDriver, finish_from_wire, stream_error, stream_payload
from llmclient.errors import (
    APIConnectionError,
    APIError,
    ContextWindowExceededError,
    LLMClientError,
    ResponseFormatError,
    StreamDecodeError,
    StreamError,
    StreamInterruptedError,
    UnknownModelError,
    UnsupportedCapabilityError,
)
from llmclient.http import Timeouts, validate_base_url
from llmclient.types import ChatChunk, ChatRequest, ChatResponse, EmbedResponse, Message, Usage

DEFAULT_HOST = "http://localhost:11434"
DEFAULT_PORT = 11434
# Ollama quotes a missing model's name: `model "x" not found` now, `model 'x' not found` in older versions.
_MODEL_NOT_FOUND = re.compile(r"""model ["']([^"']+)["'] not found""")
_CONTEXT_ERRORS = ("exceed_context_size_error", "context size", "context length")
_PARSE_ERRORS = (AttributeError, KeyError, IndexError, TypeError, ValueError, ValidationError)


def parse_host(host: str | None) -> str:
    """A base URL from Ollama's host forms: `host`, `host:port`, `:port` or a URL (all valid in `OLLAMA_HOST`)."""
    value = (host or "").strip()
    if not value:
        return DEFAULT_HOST
    if "://" not in value:  # Ollama's own clients default to http and port 11434 (ollama-python `_parse_host`)
        parts = urlsplit(f"http://{value}")
        hostname = parts.hostname or "localhost"
        hostname = f"[{hostname}]" if ":" in hostname else hostname
        value = f"http://{hostname}:{parts.port or DEFAULT_PORT}{parts.path}"
    return validate_base_url(value, provider="ollama")


class OllamaDriver(HTTPDriver):
    """Ollama's native API. Host from `host=`, `OLLAMA_HOST` or http://localhost:11434; no key needed.

    Args:
        host: The server, as a URL or in Ollama's `host:port` form.
        api_key: A bearer token for a hosted Ollama (else `OLLAMA_API_KEY`); local servers need none (a
            `**driver_options` entry).
        timeouts: Connect and read timeouts; by default 10 s to connect and no limit between reads, since Ollama
            sends nothing before it has loaded the model and, unless streaming, generated the whole reply.
        provider: The provider name this driver serves under (another server: `{"driver": "ollama", ...}`).
        keep_alive: How long Ollama keeps the model loaded after a call (`"10m"`, `0`, `-1`).
        think: Thinking for reasoning models by default: True, False or a level such as `"low"`; a call's
            `thinking=` or `reasoning_effort=` decides for that call.
        num_ctx: A fixed context size; by default the context guard picks one per call.
        options: More Ollama options for every call (`{"num_thread": 8, "repeat_penalty": 1.1}`).
        dimensions: Shorten embeddings to this many dimensions (models that support it).
        context_guard: Learn the context length, size `num_ctx` and refuse prompts that cannot fit.
        truncate: Let Ollama cut a prompt that overflows `num_ctx`; by default `truncate: false` is sent, so
            Ollama 0.12.6+ answers with an error instead.
        min_num_ctx: The smallest `num_ctx` the guard sends (fewer distinct sizes mean fewer model reloads).
        output_reserve: Tokens the guard keeps free for the reply when a call gives no `max_tokens`.
        **driver_options: The other options of every HTTP driver (`llmclient.drivers.toolkit.HTTPDriver`):
            `headers`, `transport`, `http`, `limits`, and `tokenizer`, the model's Hugging Face tokenizer for exact
            prompt counts (as for `openai-compatible`).
    """

    name: ClassVar[str] = "ollama"
    # Ollama's chat request (api/types.go): sampling options, `think`, and log probabilities.
    capabilities = Capabilities(
        http=True,
        self_hosted=True,
        embed=True,
        params=frozenset(
            {
                *("temperature", "top_p", "top_k", "max_tokens", "stop", "seed", "response_format"),
                *("frequency_penalty", "presence_penalty", "thinking", "reasoning_effort", "logprobs", "top_logprobs"),
            }
        ),
    )

    api_key_env: ClassVar[str | None] = "OLLAMA_API_KEY"
    requires_api_key: ClassVar[bool] = False

    def __init__(
        self,
        *,
        host: str | None = None,
        timeouts: Timeouts | None = None,
        provider: str | None = None,
        keep_alive: str | float | None = None,
        think: bool | str | None = None,
        num_ctx: int | None = None,
        options: Mapping[str, Any] | None = None,
        dimensions: int | None = None,
        context_guard: bool = True,
        truncate: bool = False,
        min_num_ctx: int = 4096,
        output_reserve: int = 1024,
        **driver_options: Any,
    ) -> None:
        own = (provider or self.name) == self.name  # the environment speaks for "ollama" only
        self.host = parse_host(host or (os.environ.get("OLLAMA_HOST") if own else None))
        self.options = {**(options or {}), **({"num_ctx": num_ctx} if num_ctx else {})}
        self.keep_alive, self.think, self.dimensions, self.truncate = keep_alive, think, dimensions, truncate
        self.context_guard, self.min_num_ctx, self.output_reserve = context_guard, min_num_ctx, output_reserve
        # No read timeout by default: a non-streamed reply comes after the whole generation (minutes on a CPU).
        timeouts = timeouts or Timeouts(connect=10.0, read=math.inf, total=None)
        super().__init__(base_url=self.host, timeouts=timeouts, provider=provider, **driver_options)
        self._guard = ContextGuard(self._http, self.provider)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, host={self.host!r})"

    def _refine_error(self, error: APIError) -> LLMClientError:
        lowered = error.message.lower()
        found = _MODEL_NOT_FOUND.search(error.message)
        if error.status == 404 and found:
            return error.narrowed(UnknownModelError, f"{error.message}: run `ollama pull {found.group(1)}`")
        if error.status == 400 and "does not support" in lowered:
            # No error codes, only `"<model> does not support tools"` (or thinking, chat, embeddings) in a 400.
            where: dict[str, Any] = {"provider": error.provider, "model": error.model, "status": error.status}
            return UnsupportedCapabilityError(error.message, **where)
        if error.status == 400 and any(hint in lowered for hint in _CONTEXT_ERRORS):
            # What `truncate: false` answers on overflow: "exceeds the available context size" (Ollama 0.12.6+).
            return error.narrowed(ContextWindowExceededError)
        return error

    def _refine_connect(self, error: APIConnectionError) -> LLMClientError:
        return APIConnectionError(
            f"Ollama does not appear to be running at {self.host}: start it with `ollama serve`, or point llmclient "
            f"at it with OLLAMA_HOST or providers={{'ollama': {{'host': ...}}}} ({error.message})",
            provider=error.provider,
            model=error.model,
        )

    # -- chat ---------------------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        sent = await self._prepare(request, stream=False)
        data, request_id = await self._http.post_json("/api/chat", sent.body, model=request.model)
        try:
            wire = data["message"]
            calls = [ollama_tool_call(call, index) for index, call in enumerate(wire.get("tool_calls") or ())]
            content = wire.get("content") or ""
            message = Message(
                role="assistant",
                content=content if content or not calls else None,
                tool_calls=calls or None,
                reasoning=wire.get("thinking") or None,
            )
            logprobs = ollama_logprobs(data)
        except _PARSE_ERRORS as exc:
            raise ResponseFormatError(
                f"{self.provider} returned a chat reply without the documented fields ({type(exc).__name__})",
                provider=self.provider,
                model=request.model,
                status=200,
            ) from exc
        generated = content + "".join(call.raw_arguments for call in calls)
        return ChatResponse(
            message=message,
            finish_reason=finish_from_wire(data.get("done_reason"), called=bool(calls)),
            logprobs=logprobs,
            usage=await self._usage(data, sent, request, generated),
            model=data.get("model") or request.model,
            provider=self.provider,
            request_id=request_id,
            raw=data,  # durations live here: total_duration, load_duration, eval_duration… (nanoseconds)
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        sent = await self._prepare(request, stream=True)
        text: list[str] = []
        calls = 0
        final: dict[str, Any] | None = None
        model = request.model
        async with self._http.stream_ndjson("/api/chat", sent.body, model=request.model) as (request_id, lines):
            try:
                async for line in lines:
                    payload = self._line_payload(line, text, request)
                    model = payload.get("model") or model
                    try:
                        chunk = ollama_chunk(payload, calls)
                    except _PARSE_ERRORS as exc:
                        raise self._stream_error(
                            StreamDecodeError, "sent a chunk it does not document", text, request
                        ) from exc
                    if chunk is not None:
                        calls += len(chunk.tool_call_deltas)
                        text.append(chunk.delta)
                        yield chunk
                    if payload.get("done"):
                        final = payload
                        break
            except APIConnectionError as exc:
                if not text and not calls:
                    raise  # nothing arrived: an ordinary connection error, which the Client retries
                raise self._stream_error(
                    StreamInterruptedError, f"stream was cut: {exc.message}", text, request
                ) from exc
        if final is None:
            raise self._stream_error(StreamInterruptedError, "stream ended before `done`", text, request)
        usage = await self._usage(final, sent, request, "".join(text))
        reason = finish_from_wire(final.get("done_reason"), called=calls > 0)
        yield ChatChunk(finish_reason=reason, usage=usage, model=model, request_id=request_id)

    def _line_payload(self, line: bytes, text: list[str], request: ChatRequest) -> dict[str, Any]:
        payload = stream_payload(line, unit="line", provider=self.provider, model=request.model, partial=text)
        if "error" in payload:  # an error after the 200 arrives as a line of its own (docs/api/errors.mdx)
            what = f"sent an error inside the stream: {self._http.redact(str(payload['error']))}"
            raise self._stream_error(StreamInterruptedError, what, text, request)
        return payload

    def _stream_error(self, kind: type[StreamError], what: str, text: list[str], request: ChatRequest) -> StreamError:
        return stream_error(kind, what, provider=self.provider, model=request.model, partial=text)

    async def _prepare(self, request: ChatRequest, *, stream: bool) -> Sent:
        """Count the prompt; under the context guard, check that it fits and size `num_ctx`; build the body."""
        tools = request.tools if request.tool_choice != "none" else None  # "none" sends no tools
        counted = await self.count_tokens(request.model, request.messages, tools or [])
        if not self.context_guard:
            return Sent(self._to_wire(request, stream=stream), counted, None)
        fixed = ((request.extra_body or {}).get("options") or {}).get("num_ctx") or self.options.get("num_ctx")
        num_ctx = await self._guard.fit(
            request,
            counted,
            tools=bool(tools),
            fixed=fixed,
            min_num_ctx=self.min_num_ctx,
            output_reserve=self.output_reserve,
        )
        return Sent(self._to_wire(request, stream=stream, num_ctx=num_ctx), counted, num_ctx or fixed)

    # -- wire mapping -------------------------------------------------------------------------------------------

    def _to_wire(self, request: ChatRequest, *, stream: bool, num_ctx: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": ollama_messages(request.messages), "stream": stream}
        if request.tools and request.tool_choice != "none":  # no tool_choice in Ollama: "none" sends no tools
            if request.tool_choice not in (None, "auto"):
                raise UnsupportedCapabilityError(
                    f"Ollama cannot force a tool call (tool_choice={request.tool_choice!r}); use 'auto' or 'none'",
                    provider=self.provider,
                    model=request.model,
                )
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
        options = dict(self.options)
        for key, value in zip(_OPTION_NAMES, (*(getattr(request, name) for name in _OPTIONS), num_ctx), strict=True):
            if value is not None:
                options[key] = value
        extra = dict(request.extra_body or {})
        options.update(extra.pop("options", None) or {})
        if options:
            body["options"] = options
        if request.response_format is not None and (wire_format := ollama_format(request.response_format)) is not None:
            body["format"] = wire_format
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if (think := ollama_think(request, self.think)) is not None:
            body["think"] = think
        if request.logprobs is not None:
            body["logprobs"] = request.logprobs
        if request.top_logprobs is not None:
            body["top_logprobs"] = request.top_logprobs
        if not self.truncate:
            body["truncate"] = False  # undocumented; since 0.12.6 Ollama errors instead of cutting (api/types.go)
        body.update(extra)
        return body

    async def _usage(self, data: dict[str, Any], sent: Sent, request: ChatRequest, generated: str) -> Usage:
        # Ollama reports no cached prompt tokens (`Metrics` in api/types.go has prompt_eval_count and eval_count).
        prompt, output = data.get("prompt_eval_count"), data.get("eval_count")
        if prompt is not None:
            warn_if_truncated(request, sent, int(prompt), self._counting.fallback(request.model))
        if output is None:
            output = (await self.count_text(request.model, generated)).tokens
        return Usage(
            # Ollama before ollama#5371 (mid 2024) left prompt_eval_count out for a cached prompt: use the count.
            input_tokens=int(prompt) if prompt is not None else sent.counted.tokens,
            output_tokens=int(output),
            estimated=prompt is None or "eval_count" not in data,
        )

    # -- embeddings and models ----------------------------------------------------------------------------------

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        import numpy as np

        dimensions = dimensions if dimensions is not None else self.dimensions
        if not inputs:
            return EmbedResponse(
                vectors=np.zeros((0, dimensions or 0), dtype=np.float32), model=model, provider=self.provider
            )
        # truncate: false makes an over-long input an error, not a vector of its first part (docs/api.md).
        body: dict[str, Any] = {"model": model, "input": inputs, "truncate": False}
        for key, value in (("dimensions", dimensions), ("options", self.options), ("keep_alive", self.keep_alive)):
            if value is not None and value != {}:
                body[key] = value
        data, _ = await self._http.post_json("/api/embed", body, model=model)
        try:
            vectors = np.asarray(data["embeddings"], dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(inputs):
                raise ValueError(f"embeddings of shape {vectors.shape} for {len(inputs)} inputs")
        except (KeyError, TypeError, ValueError) as exc:
            raise ResponseFormatError(
                f"{self.provider} returned embeddings without the documented fields: {exc}",
                provider=self.provider,
                model=model,
                status=200,
            ) from exc
        prompt = data.get("prompt_eval_count")
        if prompt is None:
            usage = Usage(input_tokens=sum([(await self.count_text(model, x)).tokens for x in inputs]), estimated=True)
        else:
            usage = Usage(input_tokens=int(prompt))
        return EmbedResponse(vectors=vectors, usage=usage, model=data.get("model") or model, provider=self.provider)

    async def list_models(self) -> list[dict[str, Any]]:
        """The server's models (`/api/tags`): dicts with `name`, `size`, `modified_at`, `details`, …"""
        return await list_models(self._http, self.provider)

    async def pull(self, model: str, *, insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Download `model` (`/api/pull`), yielding Ollama's progress dicts (`status`, `total`, `completed`)."""
        async for progress in pull_model(self._http, self.provider, model, insecure=insecure):
            yield progress


# The request's parameters that are Ollama options, and their names there (`Options` in api/types.go).
_OPTIONS = ("temperature", "top_p", "top_k", "max_tokens", "stop", "seed", "frequency_penalty", "presence_penalty")
_OPTION_NAMES = (*_OPTIONS[:3], "num_predict", *_OPTIONS[4:], "num_ctx")

__all__ = ["OllamaDriver", "OllamaTruncationWarning", "parse_host"]
