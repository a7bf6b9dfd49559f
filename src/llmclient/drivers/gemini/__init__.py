"""Google's Gemini API, natively (no vendor SDK): `generateContent`, `streamGenerateContent` (SSE), function calling,
thinking, structured output, safety verdicts, embeddings and exact token counts. API reference:
https://ai.google.dev/api (read 2026-12-07).

- The key travels as `x-goog-api-key` (https://ai.google.dev/gemini-api/docs/api-key), from `api_key=`,
  `GEMINI_API_KEY` or `GOOGLE_API_KEY`; the base URL is https://generativelanguage.googleapis.com/v1beta.
- Errors are Google's (https://ai.google.dev/gemini-api/docs/troubleshooting): a wrong key is a 400 whose
  `ErrorInfo.reason` is `API_KEY_INVALID` (`AuthenticationError`), `RESOURCE_EXHAUSTED` a 429 whose `RetryInfo`
  says how long to wait, `UNAVAILABLE` ("The model is overloaded") a retried 503, an unknown model a 404
  `UnknownModelError`.
- `thinking=True` asks for the thoughts (`includeThoughts`), `thinking=False` or `reasoning_effort="none"` sets a
  thinking budget of 0, and `reasoning_effort` sets Gemini 3's `thinkingLevel`; Gemini 2.5's `thinkingBudget` goes
  through `extra_body={"generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}}`.
- Counting: with a key, `count_tokens` asks `countTokens` (exact); without one it is a flagged estimate.
- Every current Gemini model writes at most 65,536 tokens (https://ai.google.dev/gemini-api/docs/models), which
  `Capabilities.max_output_tokens` declares so a budget can bound a call without `max_tokens`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from llmclient import errors
from llmclient.drivers import Capabilities, EmbeddingLimits
from llmclient.drivers.gemini.contents import (
    THINKING_LEVELS,
    contents_to_wire,
    response_format_to_wire,
    system_to_wire,
    tool_config,
    tools_to_wire,
)
from llmclient.drivers.gemini.replies import StreamChunks, message_from_wire, usage_from_wire
from llmclient.drivers.toolkit import HTTPDriver
from llmclient.types import ChatChunk, ChatRequest, ChatResponse, EmbedResponse, Message, TokenCount, Tool, Usage

# The request's sampling parameters and their names in `generationConfig`.
_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "max_tokens": "maxOutputTokens",
    "stop": "stopSequences",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


class GeminiDriver(HTTPDriver):
    """The Gemini API. Key from `api_key=`, `GEMINI_API_KEY` or `GOOGLE_API_KEY`.

    Args:
        safety_settings: `safetySettings` for every call, as the API takes them
            (`[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]`).
        task_type: The embeddings' `taskType` (`"RETRIEVAL_DOCUMENT"`, `"SEMANTIC_SIMILARITY"`, …).
        **options: The options of every HTTP driver (`llmclient.drivers.toolkit.HTTPDriver`): `api_key`,
            `base_url`, `headers`, `transport`, `timeouts`, `http`, `provider`, `tokenizer`, `limits`.
    """

    name: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com/v1beta"
    api_key_env: ClassVar[str | None] = "GEMINI_API_KEY"
    base_url_env: ClassVar[str | None] = "GEMINI_BASE_URL"
    # https://ai.google.dev/api/embeddings#method:-models.batchembedcontents: 100 requests per batch; 2048 tokens
    # per input for gemini-embedding-001 (https://ai.google.dev/gemini-api/docs/embeddings).
    embedding_limits: ClassVar[EmbeddingLimits] = EmbeddingLimits(max_inputs_per_request=100, max_input_tokens=2048)
    # Google's canonical error codes (https://cloud.google.com/apis/design/errors) and ErrorInfo reasons.
    error_codes: ClassVar[Mapping[str, type[errors.APIError]]] = {
        **dict.fromkeys(("API_KEY_INVALID", "UNAUTHENTICATED"), errors.AuthenticationError),
        **dict.fromkeys(("UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"), errors.ServerError),
        "PERMISSION_DENIED": errors.PermissionDeniedError,
        "NOT_FOUND": errors.NotFoundError,
        "RESOURCE_EXHAUSTED": errors.RateLimitError,
    }
    capabilities = Capabilities(
        http=True,
        embed=True,
        params=frozenset({*_GENERATION, "response_format", "thinking", "reasoning_effort"}),
        max_output_tokens=65536,
    )

    def __init__(
        self,
        *,
        safety_settings: list[dict[str, Any]] | None = None,
        task_type: str | None = None,
        api_key: Any = None,
        provider: str | None = None,
        **options: Any,
    ) -> None:
        self.safety_settings = safety_settings
        self.task_type = task_type
        if api_key is None and (provider or self.name) == self.name:
            api_key = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        super().__init__(api_key=api_key, provider=provider, **options)

    def _auth_headers(self, secret: str) -> dict[str, str]:
        return {"x-goog-api-key": secret} if secret else {}

    def _refine_error(self, error: errors.APIError) -> errors.LLMClientError:
        # An unknown model: 404 "models/x is not found for API version v1beta, or is not supported for ...".
        if isinstance(error, errors.NotFoundError) and "models/" in error.message:
            return error.narrowed(errors.UnknownModelError)
        return error

    # -- chat ---------------------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check_key(request.model)

        def parse(data: dict[str, Any], request_id: str | None) -> ChatResponse:
            message, finish = message_from_wire(data)
            metadata = data.get("usageMetadata")
            return ChatResponse(
                message=message,
                finish_reason=finish,
                usage=usage_from_wire(metadata) if metadata else Usage(estimated=True),
                model=data.get("modelVersion") or request.model,
                provider=self.provider,
                request_id=request_id or data.get("responseId"),
                raw=data,
            )

        path = f"/models/{_bare(request.model)}:generateContent"
        return await self._post(path, self._to_wire(request), request.model, "a response", parse)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self._check_key(request.model)
        path = f"/models/{_bare(request.model)}:streamGenerateContent?alt=sse"

        def state(request_id: str | None) -> StreamChunks:
            return StreamChunks(request.model, request_id)

        async for chunk in self._stream_events(path, self._to_wire(request), request, state):
            yield chunk

    # -- wire mapping -------------------------------------------------------------------------------------------

    def _to_wire(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"contents": contents_to_wire(request.messages)}
        if system := system_to_wire(request.messages):
            body["systemInstruction"] = system
        if request.tools:
            body["tools"] = tools_to_wire(request.tools)
            if config := tool_config(request.tool_choice):
                body["toolConfig"] = config
        generation = {wire: getattr(request, name) for name, wire in _GENERATION.items()}
        generation = {wire: value for wire, value in generation.items() if value is not None}
        if request.response_format:
            generation.update(response_format_to_wire(request.response_format))
        if thinking := _thinking(request):
            generation["thinkingConfig"] = thinking
        if generation:
            body["generationConfig"] = generation
        if self.safety_settings:
            body["safetySettings"] = self.safety_settings
        for key, value in (request.extra_body or {}).items():  # generationConfig is merged, the rest replaced
            if key == "generationConfig" and isinstance(value, dict):
                body["generationConfig"] = {**body.get("generationConfig", {}), **value}
            else:
                body[key] = value
        return body

    # -- embeddings and counting --------------------------------------------------------------------------------

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        import numpy as np  # only embeddings need it

        if not inputs:
            return EmbedResponse(
                vectors=np.zeros((0, dimensions or 0), dtype=np.float32), model=model, provider=self.provider
            )
        self._check_key(model)
        name = f"models/{_bare(model)}"
        requests = [self._embed_request(name, text, dimensions) for text in inputs]

        def parse(data: dict[str, Any], request_id: str | None) -> Any:
            vectors = np.asarray([item["values"] for item in data["embeddings"]], dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(inputs):
                raise ValueError(f"embeddings of shape {vectors.shape} for {len(inputs)} inputs")
            return vectors

        body = {"requests": requests}
        vectors = await self._post(f"/{name}:batchEmbedContents", body, model, "embeddings", parse)
        # batchEmbedContents reports no usage: counted here, and flagged.
        counted = [(await self.count_text(model, text)).tokens for text in inputs]
        usage = Usage(input_tokens=sum(counted), estimated=True)
        return EmbedResponse(vectors=vectors, usage=usage, model=model, provider=self.provider)

    def _embed_request(self, name: str, text: str, dimensions: int | None) -> dict[str, Any]:
        item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            item["outputDimensionality"] = dimensions
        if self.task_type:
            item["taskType"] = self.task_type
        return item

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """Exact, from `countTokens`, when a key is configured; else a flagged estimate."""
        if self.api_key is None:
            return await super().count_tokens(model, messages, tools)
        inner = ChatRequest(model=model, messages=messages, tools=tools or None)
        body = {"generateContentRequest": {"model": f"models/{_bare(model)}", **self._to_wire(inner)}}

        def parse(data: dict[str, Any], request_id: str | None) -> TokenCount:
            return TokenCount(tokens=int(data["totalTokens"]), exact=True, tokenizer=f"{self.provider} countTokens")

        return await self._post(f"/models/{_bare(model)}:countTokens", body, model, "a token count", parse)


def _bare(model: str) -> str:
    """A model name without the `models/` prefix Google's own listings give it."""
    return model.removeprefix("models/")


def _thinking(request: ChatRequest) -> dict[str, Any] | None:
    effort = request.reasoning_effort
    if request.thinking is False or effort == "none":
        return {"thinkingBudget": 0}
    config: dict[str, Any] = {}
    if request.thinking or effort is not None:
        config["includeThoughts"] = True
    if effort is not None:
        config["thinkingLevel"] = THINKING_LEVELS[effort]
    return config or None


__all__ = ["GeminiDriver"]
