"""The one exception tree of llmclient, and the mapping from a provider's HTTP answer onto it.

```
LLMClientError
 ├── ConfigurationError                  bad settings; nothing was sent
 │    ├── UnknownProviderError
 │    ├── MissingAPIKeyError
 │    ├── MissingExtraError              says which `pip install 'llmclient[...]'`
 │    ├── InvalidRequestError            invalid call arguments (also a ValueError)
 │    │    ├── InputTooLongError         an embedding input over the model's limit
 │    │    └── OutputCapRequiredError    a budget, but no max_tokens and no known cap
 │    ├── UnsupportedParameterError      a parameter the model lacks (strict_params)
 │    └── PriceFileError                 not LiteLLM's format (also a ValueError)
 ├── UnsupportedCapabilityError          e.g. embeddings on DeepSeek
 ├── APIError                            the provider answered with an error
 │    ├── AuthenticationError            401
 │    ├── PermissionDeniedError          403
 │    ├── NotFoundError                  404
 │    │    └── UnknownModelError         `model_not_found` (and providers' own forms)
 │    ├── BadRequestError                400, 422
 │    │    └── ContextWindowExceededError
 │    ├── ConflictError                  409 (retried)
 │    ├── RateLimitError                 429 (retried; honours retry_after)
 │    ├── QuotaExceededError             OpenAI's insufficient_quota (not retried)
 │    │    └── InsufficientBalanceError  402: prepaid balance used up (DeepSeek)
 │    ├── ServerError                    408, 5xx (retried)
 │    ├── RedirectError                  3xx: never followed (names the target host)
 │    └── ResponseFormatError            a 2xx body not as documented (or too large)
 ├── APIConnectionError                  no answer: refused, reset, DNS (retried)
 │    └── APITimeoutError                connect/read timeout or the call's deadline
 ├── StreamError                         a stream broke after it started (not retried)
 │    ├── StreamInterruptedError         cut, or an error event (keeps type and code)
 │    └── StreamDecodeError              a garbled event, or one over the size limit
 ├── LocalEngineError                    in-process engines (transformers, llama.cpp)
 │    └── OutOfMemoryError
 ├── ToolError                           a tool could not be described, called or run
 │    ├── ToolArgumentsError             invalid calls after the retry budget
 │    ├── ToolExecutionError             a tool raised, under on_tool_error="raise"
 │    └── MaxStepsExceededError          the loop hit max_steps (keeps the transcript)
 ├── StructuredOutputError               no valid `response_model` object (keeps text)
 │    └── RefusalError                   the model refused (not retried; keeps it)
 ├── BudgetExceededError
 ├── VectorStoreError                    a vector database failed an operation
 │    └── IncompleteWriteError           add() stopped part-way (`stored_ids`, ...)
 └── DimensionMismatchError              vectors of different lengths (a ValueError)
```

Every error carries `provider`, `model`, `status`, a bounded `message`, `request_id` where known and `retryable`.
Low-level exceptions (httpx, json) are translated in `llmclient.http.client` with `raise ... from exc`; API keys never
appear in a message (`redact`). A low-level exception that holds a whole body or an unredacted secret (a
`JSONDecodeError`'s document, a transport's own exception) is not chained at all: `detached` drops it, and the
message says what it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from llmclient._envelope import MAX_REQUEST_ID_CHARS as MAX_REQUEST_ID_CHARS
from llmclient._envelope import parse_retry_after as parse_retry_after
from llmclient._envelope import read_envelope, says_context_window
from llmclient._envelope import request_id_from as request_id_from

# Re-exported: the text helpers were born here and other modules import them from here.
from llmclient._sanitize import MAX_MESSAGE_CHARS as MAX_MESSAGE_CHARS
from llmclient._sanitize import bound as bound
from llmclient._sanitize import detached as detached
from llmclient._sanitize import did_you_mean as did_you_mean
from llmclient._sanitize import loads as loads
from llmclient._sanitize import redact as redact
from llmclient._sanitize import strip_html as strip_html

A = TypeVar("A", bound="APIError")


class LLMClientError(Exception):
    """The root of every error llmclient raises."""

    retryable: bool = False
    deployment: str | None = None
    """For a model group's call: the deployment that failed (set by routing)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.message = bound(message)
        self.provider = provider
        self.model = model
        self.status = status
        self.request_id = request_id
        if retryable is not None:
            self.retryable = retryable
        super().__init__(self.message)

    def __str__(self) -> str:
        where = "/".join(part for part in (self.provider, self.model) if part)
        details = [
            f"status {self.status}" if self.status else "",
            where,
            f"request {self.request_id}" if self.request_id else "",
            f"deployment {self.deployment}" if self.deployment else "",
        ]
        suffix = ", ".join(part for part in details if part)
        return f"{self.message} ({suffix})" if suffix else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ConfigurationError(LLMClientError):
    """Settings are missing or wrong; nothing was sent."""


class UnknownProviderError(ConfigurationError):
    """A model id names a provider that no driver is registered for."""


class MissingAPIKeyError(ConfigurationError):
    """A provider needs an API key and none was given."""


class MissingExtraError(ConfigurationError):
    """An optional dependency is not installed; the message names the extra to install."""


class InvalidRequestError(ConfigurationError, ValueError):
    """llmclient refused the call's arguments before sending anything (an empty message list, temperature=5).

    Compare `BadRequestError`: the provider received the request and rejected it.
    """


class InputTooLongError(InvalidRequestError):
    """An input to `embed` has more tokens than the model accepts; nothing was sent.

    `index` is its position in the inputs, `tokens` its count and `limit` the model's limit. Shorten it, split it,
    or pass `truncate=True` to cut it to the limit.
    """

    def __init__(self, message: str, *, index: int, tokens: int, limit: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.index = index
        self.tokens = tokens
        self.limit = limit


class OutputCapRequiredError(InvalidRequestError):
    """Under a budget, a call without `max_tokens` to a priced model whose maximum output is unknown: its worst case
    cannot be bounded, so nothing was sent. Pass `max_tokens=`, or price the model with `max_output_tokens`."""


class UnsupportedParameterError(ConfigurationError):
    """A parameter the provider does not accept, raised instead of dropped under `strict_params=True`."""


class PriceFileError(ConfigurationError, ValueError):
    """A price file given to `llmclient prices update` is not a LiteLLM-format table; nothing was changed."""


class UnsupportedCapabilityError(LLMClientError):
    """The provider cannot do what was asked (embeddings on DeepSeek, tools on a model without them)."""


class APIError(LLMClientError):
    """The provider answered with an error status or an unusable body."""

    def __init__(self, message: str, *, body: Any = None, error_code: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.body = body
        self.error_code = error_code

    def narrowed(self, kind: type[A], message: str | None = None) -> A:
        """This error as a more specific `kind`, every field kept (provider, model, status, request id, body, code,
        retry delay, a provider's own retry verdict), with `message` instead of its own when given.

        A driver's refinement hook uses it: `error.narrowed(UnknownModelError, f"{error.message}; try ...")`.
        """
        narrowed = kind.__new__(kind)
        narrowed.__dict__.update(self.__dict__)
        if message is not None:
            narrowed.message = bound(message)
        Exception.__init__(narrowed, narrowed.message)
        return narrowed


class AuthenticationError(APIError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIError):
    """403: the key may not use this model or region."""


class NotFoundError(APIError):
    """404: the endpoint or resource does not exist."""


class UnknownModelError(NotFoundError):
    """The provider does not know the model."""


class BadRequestError(APIError):
    """400/422: the provider received the request and rejected it as invalid.

    Compare `InvalidRequestError`: llmclient refused the arguments before anything was sent.
    """


class ContextWindowExceededError(BadRequestError):
    """The prompt plus the requested output does not fit the model's context window."""


class RedirectError(APIError):
    """3xx: the provider answered with a redirect, which llmclient never follows (the key would go with it).

    `location` is where it pointed; point `base_url` there yourself if you trust that host.
    """

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class ConflictError(APIError):
    """409: a conflicting concurrent operation; retried."""

    retryable = True


class RateLimitError(APIError):
    """429: too many requests; retried after `retry_after` seconds when the provider says so."""

    retryable = True
    retry_after: float | None = None

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class QuotaExceededError(APIError):
    """Out of credit or quota (402, OpenAI's `insufficient_quota`); retrying cannot help."""


class InsufficientBalanceError(QuotaExceededError):
    """402: the account's prepaid balance is used up; top it up before retrying."""


class ServerError(APIError):
    """408 or 5xx (529: overloaded): the provider failed; retried."""

    retryable = True
    retry_after: float | None = None

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ResponseFormatError(APIError):
    """A successful status with a body that is not what the API documents (empty, truncated, wrong schema)."""


class APIConnectionError(LLMClientError):
    """The provider could not be reached or the connection broke before an answer."""

    retryable = True


class APITimeoutError(APIConnectionError):
    """A connect or read timeout, or the call's overall deadline.

    `request_sent` is False when the request never left (a connect or pool timeout); otherwise the provider may
    have received it and billed it, so the ledger records the attempt with an unknown cost.
    """

    def __init__(self, message: str, *, request_sent: bool | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.request_sent = request_sent


class StreamError(LLMClientError):
    """A stream failed after it started. `partial_text` keeps what had arrived; never retried.

    `error_type` and `error_code` are the provider's own, for an error event inside the stream.
    """

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        error_type: str | None = None,
        error_code: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.partial_text = partial_text
        self.error_type = error_type
        self.error_code = error_code


class StreamInterruptedError(StreamError):
    """The stream was cut, or the provider sent an error event inside it."""


class StreamDecodeError(StreamError):
    """An event in the stream could not be decoded."""


class LocalEngineError(LLMClientError):
    """An in-process engine (transformers, llama.cpp) failed."""


class OutOfMemoryError(LocalEngineError):
    """The local engine ran out of (GPU or CPU) memory."""


class ToolError(LLMClientError):
    """A tool could not be described, called or run."""


class ToolArgumentsError(ToolError):
    """A tool call's name or arguments were invalid more often than the retry budget allows."""


class ToolExecutionError(ToolError):
    """A tool raised and `on_tool_error="raise"` was chosen; the cause is chained."""


class MaxStepsExceededError(ToolError):
    """The tool loop reached `max_steps`; `messages` and `usage` hold the transcript and usage so far."""

    def __init__(self, message: str, *, messages: Any = None, usage: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.messages = messages
        self.usage = usage


class StructuredOutputError(LLMClientError):
    """The model gave no valid `response_model` object after the retries; `raw_text` is its last reply."""

    def __init__(self, message: str, *, raw_text: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text


class RefusalError(StructuredOutputError):
    """The model refused to produce the `response_model` object (OpenAI's `refusal`); `refusal` holds its words.

    Raised at once: a refusal is an answer, not a malformed reply, so it is neither retried nor sent back.
    """

    def __init__(self, message: str, *, refusal: str = "", **kwargs: Any) -> None:
        super().__init__(message, raw_text=refusal, **kwargs)
        self.refusal = refusal


class BudgetExceededError(LLMClientError):
    """A call would exceed the budget; it was not sent."""


class DimensionMismatchError(LLMClientError, ValueError):
    """Vectors of different lengths were compared (e.g. from two models); nothing is broadcast."""


class VectorStoreError(LLMClientError):
    """A vector database failed an operation (`provider` names it: chroma, qdrant, pinecone); the cause is chained."""


class IncompleteWriteError(VectorStoreError):
    """An index's `add` failed part-way through its batches; the ids say exactly what happened to each item.

    Attributes:
        stored_ids: Written before the failure (confirmed by the database).
        unstored_ids: Not written: the failed batch's items the database does not hold, and every later batch.
        uncertain_ids: The failed batch's items when the database could not even be asked what it holds.
    """

    def __init__(
        self,
        message: str,
        *,
        stored_ids: list[str],
        unstored_ids: list[str],
        uncertain_ids: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.stored_ids = stored_ids
        self.unstored_ids = unstored_ids
        self.uncertain_ids = uncertain_ids or []


def error_from_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    provider: str,
    model: str | None,
    secrets: Iterable[str] = (),
    codes: Mapping[str, type[APIError]] | None = None,
) -> APIError:
    """Map an HTTP error answer (status, body in any of the shapes seen in the wild, headers) to an `APIError`.

    The body's envelope is read once (`llmclient._envelope`: OpenAI's, Anthropic's and Google's shapes and the
    bare ones): its message, its type and code (kept as `error_code`, the most specific first), the request id
    (the header's, else the body's), and the wait a 429 or 5xx asks for (`retry-after`, else Google's
    `RetryInfo`).

    Args:
        status: The HTTP status.
        body: The body as received.
        headers: The answer's headers (lower-case names).
        provider: The provider name errors carry.
        model: The model the call was for.
        secrets: Strings never to show in a message or body.
        codes: A provider's own error names (Google's `"API_KEY_INVALID"`, Anthropic's `"overloaded_error"`)
            and the error each one means; a name found here decides before the status does.
    """
    text = redact(body.decode("utf-8", errors="replace"), secrets)  # before any cut can split a key
    envelope = read_envelope(text, status)
    message = bound(redact(envelope.message or f"HTTP {status}", secrets))
    named = next((codes[name] for name in envelope.names if codes and name in codes), None)
    kind = named or _classify(status, message, envelope.type, envelope.code)
    # A provider's own verdict on retrying beats the status (the official SDKs obey it: openai-python's
    # `_base_client._should_retry`, "x-should-retry: true|false").
    should_retry = headers.get("x-should-retry")
    parsed = envelope.body
    kwargs: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "status": status,
        "request_id": request_id_from(headers, secrets)
        or bound(envelope.request_id or "", MAX_REQUEST_ID_CHARS)
        or None,
        # ensure_ascii=False: a masked echo (`tok_AB…YZ`) must stay visible to `redact`, not become `\u2026`.
        "body": None if parsed is None else json.loads(redact(json.dumps(parsed, ensure_ascii=False), secrets)),
        "error_code": envelope.reason or envelope.code or envelope.type,
    }
    if should_retry in ("true", "false"):
        kwargs["retryable"] = should_retry == "true"
    if issubclass(kind, (RateLimitError, ServerError)):
        retry_after = parse_retry_after(headers)
        return kind(message, retry_after=envelope.retry_after if retry_after is None else retry_after, **kwargs)
    return kind(message, **kwargs)


def _classify(status: int, message: str, error_type: str | None, code: str | None) -> type[APIError]:
    if code == "context_length_exceeded" or (status in (400, 413, 422) and says_context_window(message)):
        return ContextWindowExceededError
    if code == "model_not_found":
        return UnknownModelError
    if status == 402:
        return InsufficientBalanceError
    if code == "insufficient_quota" or error_type == "insufficient_quota":
        return QuotaExceededError
    by_status: dict[int, type[APIError]] = {
        400: BadRequestError,
        401: AuthenticationError,
        403: PermissionDeniedError,
        404: NotFoundError,
        408: ServerError,
        409: ConflictError,
        413: BadRequestError,
        422: BadRequestError,
        429: RateLimitError,
    }
    if status in by_status:
        return by_status[status]
    if status >= 500:
        return ServerError
    return BadRequestError if 400 <= status < 500 else APIError
