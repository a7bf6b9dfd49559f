"""Anthropic's Messages API, natively (no vendor SDK): chat, SSE streams, tools, extended and adaptive thinking,
prompt caching, structured output, exact token counts. API reference: https://platform.claude.com/docs/en/api/messages
(read 2026-12-07).

- The key travels as `x-api-key`, with `anthropic-version: 2023-06-01` (https://platform.claude.com/docs/en/api/
  versioning); the base URL is https://api.anthropic.com (`ANTHROPIC_BASE_URL` or `base_url=` for a proxy).
- `max_tokens` is required by the API: a call without one sends the driver's `max_tokens` option (4096), which
  `Capabilities.default_max_tokens` declares so budgets reserve for it.
- `thinking=True` asks for adaptive thinking, `thinking=False` turns it off, `reasoning_effort` sets
  `output_config.effort` ("none" turns thinking off); a model that only takes a thinking budget gets one through
  `extra_body={"thinking": {"type": "enabled", "budget_tokens": 2048}}`.
- Errors are named by their `error.type` (https://platform.claude.com/docs/en/api/errors): `overloaded_error`
  (HTTP 529) is a retryable `ServerError`, an unknown model (`not_found_error`, "model: ...") `UnknownModelError`.
- `anthropic-ratelimit-*` headers land on `ChatResponse.rate_limits`, where routing's rate limiter reads them.
- Counting: with a key, `count_tokens` asks `/v1/messages/count_tokens` (exact, the model's own tokenizer,
  https://platform.claude.com/docs/en/build-with-claude/token-counting); without one it is a flagged estimate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar, Literal

from llmclient import errors
from llmclient.drivers import Capabilities
from llmclient.drivers.anthropic.messages import (
    EFFORTS,
    mark_cache,
    messages_to_wire,
    output_format,
    system_to_wire,
    tool_choice_to_wire,
    tools_to_wire,
)
from llmclient.drivers.anthropic.replies import StreamEvents, message_from_wire, usage_from_wire
from llmclient.drivers.toolkit import HTTPDriver
from llmclient.types import ChatChunk, ChatRequest, ChatResponse, Message, TokenCount, Tool

API_VERSION = "2023-06-01"


class AnthropicDriver(HTTPDriver):
    """Anthropic's Messages API. Key from `api_key=` or `ANTHROPIC_API_KEY`.

    Args:
        max_tokens: The output cap sent when a call gives none (the API requires one).
        prompt_cache: Mark the system prompt, the tools and the conversation as cache breakpoints for this long
            (`"5m"` or `"1h"`); None sends no `cache_control`. Cache writes and reads are priced apart.
        beta: Beta features to turn on (`anthropic-beta` header), e.g. `["files-api-2025-04-14"]`.
        **options: The options of every HTTP driver (`llmclient.drivers.toolkit.HTTPDriver`): `api_key`,
            `base_url`, `headers`, `transport`, `timeouts`, `http`, `provider`, `tokenizer`, `limits`.
    """

    name: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str | None] = "https://api.anthropic.com"
    api_key_env: ClassVar[str | None] = "ANTHROPIC_API_KEY"
    base_url_env: ClassVar[str | None] = "ANTHROPIC_BASE_URL"
    # https://platform.claude.com/docs/en/api/errors: the error types, by what they mean.
    error_codes: ClassVar[Mapping[str, type[errors.APIError]]] = {
        "authentication_error": errors.AuthenticationError,
        "permission_error": errors.PermissionDeniedError,
        "not_found_error": errors.NotFoundError,
        "rate_limit_error": errors.RateLimitError,
        "billing_error": errors.QuotaExceededError,
        "api_error": errors.ServerError,
        "overloaded_error": errors.ServerError,
    }
    capabilities = Capabilities(
        http=True,
        params=frozenset(
            {"temperature", "top_p", "top_k", "max_tokens", "stop", "response_format", "thinking", "reasoning_effort"}
            | {"user"}
        ),
        default_max_tokens=4096,
    )

    def __init__(
        self,
        *,
        max_tokens: int = 4096,
        prompt_cache: Literal["5m", "1h"] | None = None,
        beta: list[str] | None = None,
        **options: Any,
    ) -> None:
        self.max_tokens = max_tokens
        self.prompt_cache = prompt_cache
        self._beta = list(beta or ())
        super().__init__(**options)
        self.capabilities = replace(self.capabilities, default_max_tokens=max_tokens)

    def _auth_headers(self, secret: str) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if secret:
            headers["x-api-key"] = secret
        if self._beta:
            headers["anthropic-beta"] = ",".join(self._beta)
        return headers

    def _refine_error(self, error: errors.APIError) -> errors.LLMClientError:
        # An unknown model is a 404 `not_found_error` whose message names it: "model: claude-x".
        if isinstance(error, errors.NotFoundError) and error.message.startswith("model:"):
            return error.narrowed(errors.UnknownModelError, f"unknown model ({error.message})")
        return error

    # -- chat ---------------------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check_key(request.model)
        limits: dict[str, str] = {}

        def parse(data: dict[str, Any], request_id: str | None) -> ChatResponse:
            message, finish = message_from_wire(data)
            return ChatResponse(
                message=message,
                finish_reason=finish,
                usage=usage_from_wire(data["usage"]),
                model=data.get("model") or request.model,
                provider=self.provider,
                request_id=request_id or data.get("id"),
                service_tier=data["usage"].get("service_tier"),
                rate_limits=limits or None,
                raw=data,
            )

        body = self._to_wire(request, stream=False)
        return await self._post("/v1/messages", body, request.model, "a message", parse, rate_limits=limits)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self._check_key(request.model)
        body = self._to_wire(request, stream=True)
        async for chunk in self._stream_events(
            "/v1/messages", body, request, lambda rid: StreamEvents(request.model, rid)
        ):
            yield chunk

    # -- wire mapping -------------------------------------------------------------------------------------------

    def _to_wire(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.max_tokens,
            "messages": messages_to_wire(request.messages),
        }
        if system := system_to_wire(request.messages):
            body["system"] = system
        for name, wire_name in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")):
            if (value := getattr(request, name)) is not None:
                body[wire_name] = value
        if request.stop:
            body["stop_sequences"] = request.stop
        self._tools(request, body)
        self._thinking(request, body)
        if request.user:
            body["metadata"] = {"user_id": request.user}
        if stream:
            body["stream"] = True
        if self.prompt_cache:
            mark_cache(body, self.prompt_cache)
        body.update(request.extra_body or {})
        return body

    def _tools(self, request: ChatRequest, body: dict[str, Any]) -> None:
        if request.tools:
            body["tools"] = tools_to_wire(request.tools)
            if choice := tool_choice_to_wire(request.tool_choice, request.parallel_tool_calls):
                body["tool_choice"] = choice

    def _thinking(self, request: ChatRequest, body: dict[str, Any]) -> None:
        config: dict[str, Any] = {}
        effort = request.reasoning_effort
        if request.thinking is False or effort == "none":
            body["thinking"] = {"type": "disabled"}
        elif request.thinking or effort is not None:
            body["thinking"] = {"type": "adaptive"}
        if effort is not None and effort != "none":
            config["effort"] = EFFORTS[effort]
        if request.response_format and (wire_format := output_format(request.response_format)):
            config["format"] = wire_format
        if config:
            body["output_config"] = config

    # -- counting -----------------------------------------------------------------------------------------------

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """Exact, from the count-tokens endpoint, when a key is configured; else a flagged estimate."""
        if self.api_key is None:
            return await super().count_tokens(model, messages, tools)
        body: dict[str, Any] = {"model": model, "messages": messages_to_wire(messages)}
        if system := system_to_wire(messages):
            body["system"] = system
        if tools:
            body["tools"] = tools_to_wire(tools)

        def parse(data: dict[str, Any], request_id: str | None) -> TokenCount:
            return TokenCount(tokens=int(data["input_tokens"]), exact=True, tokenizer=f"{self.provider} count_tokens")

        return await self._post("/v1/messages/count_tokens", body, model, "a token count", parse)


__all__ = ["API_VERSION", "AnthropicDriver"]
