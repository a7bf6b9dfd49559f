"""The OpenAI wire format: chat completions (plain and SSE-streamed), tools, embeddings.

`OpenAIDriver` talks to api.openai.com; `OpenAICompatibleDriver` to any server that speaks the same format
(vLLM, SGLang, LM Studio, Xinference, llama.cpp's server); `DeepSeekDriver` (deepseek.py) builds on it.
API reference: https://platform.openai.com/docs/api-reference/chat
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import ValidationError

from llmclient import tokens
from llmclient.drivers import Capabilities, EmbeddingLimits
from llmclient.drivers.openai.messages import messages_to_wire
from llmclient.drivers.openai.replies import StreamState, choices_from_wire, usage_from_wire
from llmclient.drivers.openai.wire import vectors_from_wire
from llmclient.drivers.streams import reply_of
from llmclient.drivers.toolkit import HTTPDriver, event_error, stream_error, stream_payload
from llmclient.errors import (
    APIConnectionError,
    APIError,
    ResponseFormatError,
    StreamDecodeError,
    StreamError,
    StreamInterruptedError,
)
from llmclient.types import CHAT_PARAMS, ChatChunk, ChatRequest, ChatResponse, EmbedResponse, Message, Usage


class OpenAIDriver(HTTPDriver):
    """OpenAI's API. Key from `api_key=` or `OPENAI_API_KEY`; base URL from `base_url=` or `OPENAI_BASE_URL`.

    Args:
        organization: Sent as `OpenAI-Organization`.
        project: Sent as `OpenAI-Project`.
        **options: The options of every HTTP driver (`llmclient.drivers.toolkit.HTTPDriver`): `api_key`,
            `base_url`, `headers`, `transport`, `timeouts`, `http`, `provider`, `tokenizer`, `limits`.
    """

    name: ClassVar[str] = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    api_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    base_url_env: ClassVar[str | None] = "OPENAI_BASE_URL"
    requires_api_key: ClassVar[bool] = True
    # OpenAI deprecated `max_tokens` for `max_completion_tokens`, which its reasoning models require
    # (https://platform.openai.com/docs/api-reference/chat/create#chat-create-max_completion_tokens).
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    # https://platform.openai.com/docs/api-reference/embeddings/create: at most 2048 inputs per request, none empty,
    # 8192 tokens per input and 300,000 tokens summed over one request's inputs. The model pages (and prices.json's
    # max_input_tokens) say 8191 per input for text-embedding-3-* and ada-002; Client.embed uses the smaller.
    embedding_limits: ClassVar[EmbeddingLimits] = EmbeddingLimits(
        max_inputs_per_request=2048, max_tokens_per_request=300_000, max_input_tokens=8192, allow_empty_inputs=False
    )
    # Every Chat Completions parameter openai-python takes (https://platform.openai.com/docs/api-reference/chat/create);
    # a model's own refusals (reasoning models: no temperature, top_p or stop) come from the price catalog.
    capabilities = Capabilities(
        http=True,
        embed=True,
        params=frozenset(CHAT_PARAMS) - {"top_k", "thinking"},
        embedding_encoding="base64",  # half the body of floats, and numpy decodes it without parsing
    )
    # Whether the server knows the `developer` role (else such messages go as `system`).
    developer_role: ClassVar[bool] = True

    def __init__(self, *, organization: str | None = None, project: str | None = None, **options: Any) -> None:
        self._account = {"openai-organization": organization, "openai-project": project}
        super().__init__(**options)

    def _auth_headers(self, secret: str) -> dict[str, str]:
        account = {name: value for name, value in self._account.items() if value}
        return {**super()._auth_headers(secret), **account}

    def _refine_error(self, error: APIError) -> APIError:
        """A hook for provider quirks in error answers; OpenAI's are mapped as they are."""
        return error

    # -- chat ---------------------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check_key(request.model)
        limits: dict[str, str] = {}
        data, request_id = await self._http.post_json(
            "/chat/completions", self._to_wire(request, stream=False), model=request.model, rate_limits=limits
        )
        try:
            response = self._from_wire(data, request, request_id)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError, ValidationError) as exc:
            raise ResponseFormatError(
                f"{self.provider} returned a chat completion without the documented fields ({type(exc).__name__})",
                provider=self.provider,
                model=request.model,
                request_id=request_id,
                status=200,
            ) from exc
        if response.usage.estimated:  # usage omitted (some compatible servers) or implausible: count it here
            replies = [choice.message for choice in response.choices] or [response.message]
            generated = "".join(
                m.text + (m.refusal or "") + "".join(c.raw_arguments for c in m.tool_calls or ()) for m in replies
            )
            response.usage = await self._estimate_usage(request, generated)
        response.rate_limits = limits or None
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self._check_key(request.model)
        body = self._to_wire(request, stream=True)
        state = StreamState(request.model)
        async with self._http.stream_sse("/chat/completions", body, model=request.model) as (request_id, events):
            try:
                async for event, data in events:
                    if data == "[DONE]":
                        break
                    payload = self._event_payload(data, event, state.text, request)
                    try:
                        chunks = state.take(payload, self._usage_from_wire)
                    except (AttributeError, KeyError, TypeError, ValueError, ValidationError) as exc:
                        what = "sent a stream event without the documented fields"
                        raise self._stream_error(StreamDecodeError, what, state.text, request, request_id) from exc
                    for chunk in chunks:
                        yield chunk
            except APIConnectionError as exc:
                if not state.started:
                    raise
                what = f"stream was cut: {exc.message}"
                raise self._stream_error(StreamInterruptedError, what, state.text, request, request_id) from exc
        if 0 not in state.reasons:
            what = "stream ended before the reply finished"
            raise self._stream_error(StreamInterruptedError, what, state.text, request, request_id)
        # No usage from the server (llama-cpp-python's server never sends it): count it here.
        usage = state.usage or await self._estimate_usage(request, "".join(state.generated))
        for chunk in state.final_chunks(usage, request_id):
            yield chunk

    def _event_payload(self, data: str, event: str, text: list[str], request: ChatRequest) -> dict[str, Any]:
        where: dict[str, Any] = {"provider": self.provider, "model": request.model, "partial": text}
        payload = stream_payload(data, unit="stream event", **where)
        if event == "error" or payload.get("error"):
            # The provider's own type and code say what went wrong (overloaded, content filter, …): kept.
            raise event_error(payload, redact=self._http.redact, **where)
        return payload

    def _stream_error(
        self, kind: type[StreamError], what: str, text: list[str], request: ChatRequest, request_id: str | None
    ) -> StreamError:
        return stream_error(
            kind, what, provider=self.provider, model=request.model, partial=text, request_id=request_id
        )

    # -- wire mapping -------------------------------------------------------------------------------------------

    def _to_wire(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": self._messages_to_wire(request.messages)}
        if request.tools:
            body["tools"] = [tool.to_openai() for tool in request.tools]
        if request.parallel_tool_calls is not None and request.tools:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.tool_choice is not None:
            choice = request.tool_choice
            body["tool_choice"] = (
                choice if choice in ("auto", "none", "required") else {"type": "function", "function": {"name": choice}}
            )
        for name in _WIRE_PARAMS:  # the request carries only the parameters this driver accepts
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra_body:
            body.update(request.extra_body)
        return body

    def _messages_to_wire(self, messages: list[Message]) -> list[dict[str, Any]]:
        """The messages in OpenAI's chat format (`developer` as `system` where the server lacks it)."""
        return messages_to_wire(messages, developer=self.developer_role)

    def _from_wire(self, data: dict[str, Any], request: ChatRequest, request_id: str | None) -> ChatResponse:
        return reply_of(
            choices_from_wire(data),
            usage=self._usage_from_wire(data["usage"]) if data.get("usage") else Usage(estimated=True),
            model=data.get("model") or request.model,
            provider=self.provider,
            request_id=request_id or self._http.redact(str(data.get("id") or "")) or None,  # may echo a key
            service_tier=data.get("service_tier"),
            system_fingerprint=data.get("system_fingerprint"),
            raw=data,
        )

    def _usage_from_wire(self, usage: dict[str, Any]) -> Usage:
        """The reported usage; `Usage(estimated=True)` when any figure is implausible, to be counted instead."""
        return usage_from_wire(usage)

    async def _estimate_usage(self, request: ChatRequest, output: str) -> Usage:
        prompt = await self.count_tokens(request.model, request.messages, request.tools or [])
        return Usage(
            input_tokens=prompt.tokens,
            output_tokens=(await self.count_text(request.model, output)).tokens,
            estimated=True,
        )

    # -- embeddings and counting --------------------------------------------------------------------------------

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        if not inputs:  # nothing to send: an empty (0, d) result, d where known
            import numpy as np  # only embeddings need it: a chat does not import numpy

            width = dimensions or _EMBEDDING_DIMENSIONS.get(model, 0)
            return EmbedResponse(vectors=np.zeros((0, width), dtype=np.float32), model=model, provider=self.provider)
        self._check_key(model)
        body: dict[str, Any] = {
            "model": model,
            "input": inputs,
            "encoding_format": self.capabilities.embedding_encoding,
        }
        if dimensions is not None:  # text-embedding-3 and later shorten their vectors to this length
            body["dimensions"] = dimensions
        data, request_id = await self._http.post_json("/embeddings", body, model=model)
        try:
            vectors = vectors_from_wire(data["data"], len(inputs))
            usage = Usage(input_tokens=int((data.get("usage") or {}).get("prompt_tokens") or 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ResponseFormatError(
                f"{self.provider} returned embeddings without the documented fields: {exc}",
                provider=self.provider,
                model=model,
                request_id=request_id,
                status=200,  # a 2xx answer: billed even though unusable
            ) from exc
        return EmbedResponse(vectors=vectors, usage=usage, model=data.get("model") or model, provider=self.provider)

    def _default_tokenizer(self, model: str) -> tuple[tokens.Tokenizer, bool]:
        """tiktoken: exact for OpenAI's models, an estimate for anything a compatible server serves."""
        return tokens.tokenizer_for(model)


class OpenAICompatibleDriver(OpenAIDriver):
    """Any server speaking OpenAI's chat format. `base_url=` is required; the API key is optional.

    Servers differ from OpenAI in small ways: they take `max_tokens` (not `max_completion_tokens`), usually accept
    `top_k`, know no `developer` role (sent as `system`), may send no usage in streams (then usage is counted
    locally and flagged estimated), and may not implement base64 embeddings.
    """

    name: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str | None] = None
    api_key_env: ClassVar[str | None] = "OPENAI_COMPATIBLE_API_KEY"
    base_url_env: ClassVar[str | None] = "OPENAI_COMPATIBLE_BASE_URL"
    requires_api_key: ClassVar[bool] = False
    max_tokens_field: ClassVar[str] = "max_tokens"
    # Each server sets its own limits (and rejects what breaks them); batches stay at OpenAI's 2048 inputs.
    embedding_limits: ClassVar[EmbeddingLimits] = EmbeddingLimits()
    # What a server does with an OpenAI parameter it lacks is its own affair: they are passed on (top_k too).
    capabilities = Capabilities(
        http=True, embed=True, params=frozenset(CHAT_PARAMS) - {"thinking"}, embedding_encoding="float"
    )
    developer_role: ClassVar[bool] = False  # vLLM, llama.cpp and most others know system, user, assistant, tool


# The request parameters sent under their own names (max_tokens has a per-driver field, thinking is DeepSeek's).
_WIRE_PARAMS = tuple(name for name in CHAT_PARAMS if name not in ("max_tokens", "thinking"))

# Default vector lengths (https://platform.openai.com/docs/guides/embeddings#embedding-models), for empty results.
_EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


__all__ = ["OpenAICompatibleDriver", "OpenAIDriver"]
