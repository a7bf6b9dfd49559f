"""Ollama's native API: chat and NDJSON streams on `/api/chat`, embeddings on `/api/embed`, and a context guard.

Ollama cuts a prompt that does not fit `num_ctx` without an error, and its OpenAI-compatible `/v1` endpoint cannot
set `num_ctx` at all. This driver learns the model's context length from `/api/show`, counts the prompt, sends a
`num_ctx` that fits prompt and reply, raises `ContextWindowExceededError` before sending a prompt that cannot fit,
and warns (`OllamaTruncationWarning`) when Ollama reports clearly fewer prompt tokens than were counted.
API reference: https://github.com/ollama/ollama/blob/main/docs/api.md
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import warnings
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from llmclient import tokens
from llmclient._http import HTTPClient, Timeouts, Transport
from llmclient.drivers import BaseDriver, Capabilities
from llmclient.drivers.openai import validate_base_url
from llmclient.errors import (
    APIConnectionError,
    APIError,
    ContextWindowExceededError,
    InvalidRequestError,
    LLMClientError,
    ResponseFormatError,
    StreamDecodeError,
    StreamError,
    StreamInterruptedError,
    UnknownModelError,
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
    TextPart,
    TokenCount,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

DEFAULT_HOST = "http://localhost:11434"
DEFAULT_PORT = 11434
# Ollama quotes a missing model's name: `model "x" not found` now, `model 'x' not found` in older versions.
_MODEL_NOT_FOUND = re.compile(r"""model ["']([^"']+)["'] not found""")
_CONTEXT_ERRORS = ("exceed_context_size_error", "context size", "context length")
_PARSE_ERRORS = (AttributeError, KeyError, IndexError, TypeError, ValueError, ValidationError)


class OllamaTruncationWarning(UserWarning):
    """Ollama evaluated clearly fewer prompt tokens than were counted locally: it probably cut the prompt."""


@dataclass(frozen=True)
class _ModelInfo:
    context_length: int | None
    capabilities: frozenset[str] | None  # None: an Ollama too old to list them


@dataclass(frozen=True)
class _Sent:
    body: dict[str, Any]
    counted: TokenCount
    num_ctx: int | None


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


class OllamaDriver(BaseDriver):
    """Ollama's native API. Host from `host=`, `OLLAMA_HOST` or http://localhost:11434; no key needed.

    Args:
        host: The server, as a URL or in Ollama's `host:port` form.
        api_key: A bearer token for a hosted Ollama (else `OLLAMA_API_KEY`); local servers need none.
        headers: Extra HTTP headers.
        transport: An httpx transport (e.g. `httpx.MockTransport` in tests).
        timeouts: Connect and read timeouts; by default 10 s to connect and no limit between reads, since Ollama
            sends nothing before it has loaded the model and, unless streaming, generated the whole reply.
        provider: The provider name this driver serves under (another server: `{"driver": "ollama", ...}`).
        tokenizer: The model's Hugging Face tokenizer, for exact prompt counts (as for `openai-compatible`).
        keep_alive: How long Ollama keeps the model loaded after a call (`"10m"`, `0`, `-1`).
        think: Thinking for reasoning models: True, False or a level such as `"low"`.
        num_ctx: A fixed context size; by default the context guard picks one per call.
        options: More Ollama options for every call (`{"num_thread": 8, "repeat_penalty": 1.1}`).
        dimensions: Shorten embeddings to this many dimensions (models that support it).
        context_guard: Learn the context length, size `num_ctx` and refuse prompts that cannot fit.
        truncate: Let Ollama cut a prompt that overflows `num_ctx`; by default `truncate: false` is sent, so
            Ollama 0.12.6+ answers with an error instead.
        min_num_ctx: The smallest `num_ctx` the guard sends (fewer distinct sizes mean fewer model reloads).
        output_reserve: Tokens the guard keeps free for the reply when a call gives no `max_tokens`.
    """

    name: ClassVar[str] = "ollama"
    capabilities = Capabilities(http=True, self_hosted=True, embed=True)

    def __init__(
        self,
        *,
        host: str | None = None,
        api_key: str | SecretStr | None = None,
        headers: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        timeouts: Timeouts | None = None,
        provider: str | None = None,
        tokenizer: str | os.PathLike[str] | Mapping[str, Any] | tokens.HFTokenizer | None = None,
        keep_alive: str | float | None = None,
        think: bool | str | None = None,
        num_ctx: int | None = None,
        options: Mapping[str, Any] | None = None,
        dimensions: int | None = None,
        context_guard: bool = True,
        truncate: bool = False,
        min_num_ctx: int = 4096,
        output_reserve: int = 1024,
    ) -> None:
        self.provider = provider or self.name
        environ = os.environ if self.provider == self.name else {}  # the environment speaks for "ollama" only
        self.host = parse_host(host or environ.get("OLLAMA_HOST"))
        key = api_key if api_key is not None else environ.get("OLLAMA_API_KEY")
        secret = key.get_secret_value() if isinstance(key, SecretStr) else (key or "")
        self.api_key = SecretStr(secret) if secret else None
        self.options = {**(options or {}), **({"num_ctx": num_ctx} if num_ctx else {})}
        self.keep_alive, self.think, self.dimensions, self.truncate = keep_alive, think, dimensions, truncate
        self.context_guard, self.min_num_ctx, self.output_reserve = context_guard, min_num_ctx, output_reserve
        self._tokenizer = None if tokenizer is None else tokens.HFTokenizer.from_option(tokenizer)
        self._estimator: tokens.Tokenizer | None = None
        self._models: dict[str, asyncio.Future[_ModelInfo]] = {}
        self._num_ctx: dict[str, int] = {}
        self._http = HTTPClient(
            provider=self.provider,
            base_url=self.host,
            headers={**(headers or {}), **({"authorization": f"Bearer {secret}"} if secret else {})},
            secrets=(secret,),
            transport=transport,
            # No read timeout by default: a non-streamed reply arrives only when the whole generation is done, which
            # on a CPU can take minutes; the Client's overall deadline bounds the call (the official client has none).
            timeouts=timeouts or Timeouts(connect=10.0, read=math.inf, total=None),
            refine=self._refine_error,
            refine_connect=self._refine_connect,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, host={self.host!r})"

    def _refine_error(self, error: APIError) -> LLMClientError:
        where: dict[str, Any] = {"provider": error.provider, "model": error.model, "status": error.status}
        lowered = error.message.lower()
        found = _MODEL_NOT_FOUND.search(error.message)
        if error.status == 404 and found:
            return UnknownModelError(f"{error.message}: run `ollama pull {found.group(1)}`", body=error.body, **where)
        if error.status == 400 and "does not support" in lowered:
            # No error codes, only `"<model> does not support tools"` (or thinking, chat, embeddings) in a 400.
            return UnsupportedCapabilityError(error.message, **where)
        if error.status == 400 and any(hint in lowered for hint in _CONTEXT_ERRORS):
            # What `truncate: false` answers on overflow: "exceeds the available context size" (Ollama 0.12.6+).
            return ContextWindowExceededError(error.message, body=error.body, **where)
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
            calls = [_tool_call(call, index) for index, call in enumerate(wire.get("tool_calls") or ())]
            content = wire.get("content") or ""
            message = Message(
                role="assistant",
                content=content if content or not calls else None,
                tool_calls=calls or None,
                reasoning=wire.get("thinking") or None,
            )
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
            finish_reason=_finish_reason(data.get("done_reason"), bool(calls)),
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
                    payload = self._decode_line(line, text, request)
                    model = payload.get("model") or model
                    try:
                        chunk = _chunk(payload["message"], calls) if "message" in payload else None
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
        reason = _finish_reason(final.get("done_reason"), calls > 0)
        yield ChatChunk(finish_reason=reason, usage=usage, model=model, request_id=request_id)

    def _decode_line(self, line: bytes, text: list[str], request: ChatRequest) -> dict[str, Any]:
        try:
            payload = json.loads(line)
        except ValueError as exc:
            raise self._stream_error(StreamDecodeError, "sent a line that is not JSON", text, request) from exc
        if not isinstance(payload, dict):
            raise self._stream_error(StreamDecodeError, "sent a line that is not an object", text, request)
        if "error" in payload:  # an error after the 200 arrives as a line of its own (docs/api/errors.mdx)
            what = f"sent an error inside the stream: {self._http.redact(str(payload['error']))}"
            raise self._stream_error(StreamInterruptedError, what, text, request)
        return payload

    def _stream_error(self, kind: type[StreamError], what: str, text: list[str], request: ChatRequest) -> StreamError:
        return kind(f"{self.provider} {what}", partial_text="".join(text), provider=self.provider, model=request.model)

    # -- the context guard --------------------------------------------------------------------------------------

    async def _prepare(self, request: ChatRequest, *, stream: bool) -> _Sent:
        """Count the prompt; under the guard, check that it fits and size `num_ctx`; build the body."""
        tools = request.tools if request.tool_choice != "none" else None  # "none" sends no tools
        counted = await self.count_tokens(request.model, request.messages, tools or [])
        if not self.context_guard:
            return _Sent(self._to_wire(request, stream=stream), counted, None)
        info = await self._model_info(request.model)
        if tools and info.capabilities is not None and "tools" not in info.capabilities:
            raise UnsupportedCapabilityError(
                f"{request.model} does not support tools; it can do: {', '.join(sorted(info.capabilities))}",
                provider=self.provider,
                model=request.model,
            )
        fixed = ((request.extra_body or {}).get("options") or {}).get("num_ctx") or self.options.get("num_ctx")
        window = min((size for size in (fixed, info.context_length) if size), default=None)
        if window is not None and counted.tokens >= window:
            how = "" if counted.exact else f" (estimated with {counted.tokenizer}; tokenizer= counts exactly)"
            limit = f"num_ctx={fixed}" if window == fixed else f"a context window of {window} tokens"
            raise ContextWindowExceededError(
                f"the prompt takes {counted.tokens} tokens{how} but {request.model} has {limit}; nothing was sent",
                provider=self.provider,
                model=request.model,
            )
        num_ctx = None if fixed else self._size_num_ctx(request, counted, info.context_length)
        return _Sent(self._to_wire(request, stream=stream, num_ctx=num_ctx), counted, num_ctx or fixed)

    def _size_num_ctx(self, request: ChatRequest, counted: TokenCount, limit: int | None) -> int:
        # An estimate gets a quarter more room: local tokenizers split some text (code, non-English) finer.
        prompt = counted.tokens if counted.exact else math.ceil(counted.tokens * 1.25)
        need = prompt + (request.max_tokens or self.output_reserve)
        # Powers of two that only grow, per model: each new num_ctx makes Ollama reload the model.
        size = max(self.min_num_ctx, 1 << (need - 1).bit_length(), self._num_ctx.get(request.model, 0))
        self._num_ctx[request.model] = size = min(size, limit) if limit else size
        return size

    async def _model_info(self, model: str) -> _ModelInfo:
        """Context length and capabilities from `/api/show`: one request per model, shared by concurrent calls."""
        task = self._models.get(model)
        if task is None:
            task = self._models[model] = asyncio.ensure_future(self._show(model))
        try:
            return await asyncio.shield(task)
        except BaseException:
            if task.done() and self._models.get(model) is task:  # failed: the next call asks again
                del self._models[model]
            raise

    async def _show(self, model: str) -> _ModelInfo:
        data, _ = await self._http.post_json("/api/show", {"model": model}, model=model)
        info = data.get("model_info") or {}
        length = info.get(f"{info.get('general.architecture')}.context_length")
        if length is None:  # an architecture that does not name itself: any `<arch>.context_length` will do
            length = next((value for key, value in info.items() if key.endswith(".context_length")), None)
        capabilities = data.get("capabilities")  # absent from older versions
        return _ModelInfo(
            int(length) if length else None, frozenset(capabilities) if isinstance(capabilities, list) else None
        )

    def _check_truncation(self, request: ChatRequest, sent: _Sent, reported: int) -> None:
        def clearly_fewer(local: int) -> bool:
            return reported < 0.8 * local and local - reported >= 32

        if not clearly_fewer(sent.counted.tokens):
            return
        # An estimate must also beat a lower bound: messages' text only (an image costs 1 to 2000+ tokens by model,
        # tool schemas render differently by template) by the smaller of cl100k and the character ratio (cl100k
        # overcounts dense tokenizers: Chinese on Qwen).
        text_only = [m.model_copy(update={"content": m.text}) for m in request.messages]
        low = min(
            tokens.count_messages(text_only, request.model, [], tokenizer=counter, exact=False).tokens
            for counter in (tokens.RATIO_ESTIMATOR, self._estimator or tokens.RATIO_ESTIMATOR)
        )
        if sent.counted.exact or clearly_fewer(low):
            window = f"num_ctx={sent.num_ctx}" if sent.num_ctx else "the server's default num_ctx"
            warnings.warn(
                f"Ollama evaluated {reported} prompt tokens of {request.model} where {sent.counted.tokens} were "
                f"counted locally ({sent.counted.tokenizer}): it probably cut the prompt to fit {window}",
                OllamaTruncationWarning,
                stacklevel=4,
            )

    # -- wire mapping -------------------------------------------------------------------------------------------

    def _to_wire(self, request: ChatRequest, *, stream: bool, num_ctx: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": _messages(request.messages), "stream": stream}
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
        uniform = (request.temperature, request.top_p, request.top_k, request.max_tokens, request.stop, request.seed)
        for key, value in zip(_OPTION_NAMES, (*uniform, num_ctx), strict=True):
            if value is not None:
                options[key] = value
        extra = dict(request.extra_body or {})
        options.update(extra.pop("options", None) or {})
        if options:
            body["options"] = options
        if request.response_format is not None and (wire_format := _format(request.response_format)) is not None:
            body["format"] = wire_format
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if self.think is not None:
            body["think"] = self.think
        if not self.truncate:
            body["truncate"] = False  # undocumented; since 0.12.6 Ollama errors instead of cutting (api/types.go)
        body.update(extra)
        return body

    async def _usage(self, data: dict[str, Any], sent: _Sent, request: ChatRequest, generated: str) -> Usage:
        prompt, output = data.get("prompt_eval_count"), data.get("eval_count")
        if prompt is not None:
            self._check_truncation(request, sent, int(prompt))
        cached = int(data.get("prompt_eval_cached_count") or 0) if prompt is not None else 0
        if output is None:
            output = (await self.count_text(request.model, generated)).tokens
        return Usage(
            # Ollama before ollama#5371 (mid 2024) left prompt_eval_count out for a cached prompt: use the count.
            input_tokens=max(0, int(prompt) - cached) if prompt is not None else sent.counted.tokens,
            cached_input_tokens=cached,
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
        data = await self._http.get_json("/api/tags")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise ResponseFormatError(f"{self.provider} listed no `models` array", provider=self.provider, status=200)
        return models

    async def pull(self, model: str, *, insecure: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Download `model` (`/api/pull`), yielding Ollama's progress dicts (`status`, `total`, `completed`)."""
        status = None
        body = {"model": model, "insecure": insecure, "stream": True}
        async with self._http.stream_ndjson("/api/pull", body, model=model) as (_, lines):
            async for line in lines:
                try:
                    progress = json.loads(line)
                    status, error = progress.get("status"), progress.get("error")
                except (ValueError, AttributeError) as exc:
                    raise StreamDecodeError(
                        f"ollama pull {model} sent garbled progress", provider=self.provider
                    ) from exc
                if error is not None:
                    message = f"ollama pull {model} failed: {self._http.redact(str(error))}"
                    # `pull model manifest: file does not exist` is the registry saying it has no such model.
                    kind = UnknownModelError if "does not exist" in message or "not found" in message else APIError
                    raise kind(message, provider=self.provider, model=model)
                yield progress
        if status != "success":
            raise StreamInterruptedError(
                f"ollama pull {model} ended before it reported success", provider=self.provider
            )

    # -- counting -----------------------------------------------------------------------------------------------

    async def _counter(self) -> tuple[tokens.Tokenizer, bool]:
        configured = self._tokenizer
        if configured is not None:
            if not configured.loaded:
                await asyncio.to_thread(configured.load)  # seconds for a GGUF: keep the event loop free
            return configured, True
        if self._estimator is None:
            self._estimator = await asyncio.to_thread(tokens.load_encoding, "cl100k_base") or tokens.RATIO_ESTIMATOR
        return self._estimator, False

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """Prompt tokens: exact by a configured tokenizer's chat template, else a flagged cl100k estimate."""
        tokenizer, exact = await self._counter()
        if exact and isinstance(tokenizer, tokens.HFTokenizer):
            rendered = tokenizer.count_chat(messages, tools)
            if rendered is not None:
                return TokenCount(tokens=rendered, exact=True, tokenizer=tokenizer.name)
        return tokens.count_messages(messages, model, tools, tokenizer=tokenizer, exact=False)

    async def count_text(self, model: str, text: str) -> TokenCount:
        """Tokens in plain text (no chat framing)."""
        tokenizer, exact = await self._counter()
        return tokens.count_text(text, model, tokenizer=tokenizer, exact=exact)

    async def aclose(self) -> None:
        await self._http.aclose()


_OPTION_NAMES = ("temperature", "top_p", "top_k", "num_predict", "stop", "seed", "num_ctx")


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool-call id → tool name: Ollama matches a result by `tool_name`, not by id
    for message in messages:
        item: dict[str, Any] = {"role": message.role}
        content = message.content
        parts = content if isinstance(content, list) else ()
        text = "".join(part.text for part in parts if isinstance(part, TextPart)) if parts else (content or "")
        if text:
            item["content"] = text
        if message.reasoning and message.role == "assistant":
            # Sent back: Ollama asks for thinking in tool-loop history (docs/capabilities/streaming.mdx).
            item["thinking"] = message.reasoning
        if images := [_image(part) for part in parts if isinstance(part, ImagePart)]:
            item["images"] = images
        if message.tool_calls:
            item["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in message.tool_calls]
            names.update((call.id, call.name) for call in message.tool_calls)
        if message.role == "tool" and (tool_name := message.name or names.get(message.tool_call_id or "")):
            item["tool_name"] = tool_name
        wire.append(item)
    return wire


def _image(part: ImagePart) -> str:
    header, found, data = part.image_url.url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64") and found):
        # Ollama takes base64 image bytes only (docs/api.md, "Chat request (with images)"); nothing is downloaded.
        raise InvalidRequestError("Ollama takes images as base64 data: URLs (data:image/png;base64,...)")
    return data


def _format(response_format: dict[str, Any]) -> str | dict[str, Any] | None:
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError("a json_schema response_format needs json_schema.schema", provider="ollama")
        return schema
    if kind in ("json_object", "text"):
        return "json" if kind == "json_object" else None
    return response_format  # Ollama's own form: a JSON schema given as it is


def _tool_call(call: dict[str, Any], index: int) -> ToolCall:
    # Newer Ollama sends ids (`call_p7o2gz50`); older ones do not, so calls are numbered here.
    return ToolCall.model_validate({"id": call.get("id") or f"call_{index}", "function": call["function"]})


def _chunk(message: dict[str, Any], calls_so_far: int) -> ChatChunk | None:
    content, thinking = message.get("content") or "", message.get("thinking") or ""
    # Ollama streams each tool call whole, in one chunk, with arguments as an object.
    parsed = [_tool_call(call, calls_so_far + n) for n, call in enumerate(message.get("tool_calls") or ())]
    if not (content or thinking or parsed):
        return None
    deltas = [
        ToolCallDelta(index=calls_so_far + n, id=call.id, name=call.name, arguments=call.raw_arguments)
        for n, call in enumerate(parsed)
    ]
    return ChatChunk(delta=content, reasoning_delta=thinking, tool_call_deltas=deltas)


def _finish_reason(done_reason: Any, called: bool) -> FinishReason:
    if done_reason == "length":
        return "length"
    return "tool_calls" if called else "stop"  # Ollama says "stop" after tool calls too


__all__ = ["OllamaDriver", "OllamaTruncationWarning", "parse_host"]
