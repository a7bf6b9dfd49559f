"""The driver toolkit's contract half: what a driver of any wire needs besides its own mapping, public and typed.

- `HTTPDriver`: the base of a driver that talks to one HTTP API with a key. It reads the key and the base URL from
  its options or the environment (the environment only under the driver's own provider name), builds one
  `llmclient.http.HTTPClient` with the driver's auth headers and error names, refuses a call without a key, and
  counts tokens with `TokenCounting`. A driver adds its wire: `chat`, `stream`, maybe `embed` and `count_tokens`.
- Streams: `HTTPDriver._stream_events` reads a server-sent event stream through a wire's `StreamState`, with
  every failure typed; `stream_payload` (one event as a JSON object, else `StreamDecodeError`), `event_error` (an
  error event inside a stream, as `StreamInterruptedError` keeping the provider's type and code), `stream_error`
  (a stream error carrying the text so far), `call_deltas` (whole tool calls as stream deltas). Assembly is in
  `llmclient.drivers.streams`.
- Answers: `HTTPDriver._post` reads a JSON answer and turns a body without the documented fields into
  `ResponseFormatError`; `json_schema_of` takes the schema out of a `json_schema` response format.
- `finish_from_wire`: OpenAI's finish reasons (which Ollama and llama.cpp share) as llmclient's.
- `TokenCounting`: which tokenizer counts a model's tokens (a configured Hugging Face tokenizer, else a fallback),
  loaded once, off the event loop.

Error answers need no helper here: `HTTPClient` maps every one through `llmclient.errors.error_from_response`, and a
driver's `error_codes` and `_refine_error` (with `APIError.narrowed`) make them more specific.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import SecretStr, ValidationError

from llmclient import tokens
from llmclient._envelope import read_payload
from llmclient.drivers import BaseDriver, Capabilities
from llmclient.errors import (
    APIConnectionError,
    APIError,
    ConfigurationError,
    InvalidRequestError,
    LLMClientError,
    MissingAPIKeyError,
    ResponseFormatError,
    StreamDecodeError,
    StreamError,
    StreamInterruptedError,
    loads,
)
from llmclient.http import HTTPClient, HTTPOptions, Limits, Timeouts, Transport, validate_base_url
from llmclient.types import ChatChunk, ChatRequest, FinishReason, Message, TokenCount, Tool, ToolCall, ToolCallDelta

E = TypeVar("E", bound=StreamError)
T = TypeVar("T")

PARSE_ERRORS = (AttributeError, KeyError, IndexError, TypeError, ValueError, ValidationError)
"""What reading a body that lacks the documented fields raises; `HTTPDriver._post` turns it into
`ResponseFormatError`."""

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "insufficient_system_resource": "error",  # DeepSeek: the reply was cut by a server-side shortage
}
"""OpenAI's finish reasons (and DeepSeek's, Ollama's and llama.cpp's, which use its names) as llmclient's."""


def finish_from_wire(reason: str | None, *, called: bool = False) -> FinishReason:
    """An OpenAI-style finish reason as ours ("stop" for one it does not document).

    Args:
        reason: The reason on the wire.
        called: Whether the reply called tools, for backends that say "stop" after tool calls too (Ollama).
    """
    mapped = FINISH_REASONS.get(reason, "stop") if reason else "stop"
    return "tool_calls" if called and mapped == "stop" else mapped


def json_schema_of(response_format: Mapping[str, Any], *, provider: str) -> dict[str, Any] | None:
    """The schema of a `json_schema` response format (OpenAI's shape, which `response_model` sends); None for the
    other kinds. A `json_schema` format without a schema is `InvalidRequestError`."""
    if response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequestError("a json_schema response_format needs json_schema.schema", provider=provider)
    return schema


def call_deltas(calls: Sequence[ToolCall], first: int = 0) -> list[ToolCallDelta]:
    """Whole tool calls as stream deltas (one per call, numbered from `first`), for backends that send each call in
    one piece."""
    return [
        ToolCallDelta(index=first + n, id=call.id, name=call.name, arguments=call.raw_arguments)
        for n, call in enumerate(calls)
    ]


# -- streams -------------------------------------------------------------------------------------------------------


def stream_error(
    kind: type[E], what: str, *, provider: str, model: str, partial: Sequence[str], request_id: str | None = None
) -> E:
    """A stream error that says which provider `what` happened to and carries the text received so far."""
    message = f"{provider} {what}"
    return kind(message, partial_text="".join(partial), provider=provider, model=model, request_id=request_id)


def stream_payload(
    data: bytes | str, *, unit: str, provider: str, model: str, partial: Sequence[str]
) -> dict[str, Any]:
    """One stream event (`unit`: "stream event", "line") as a JSON object, else `StreamDecodeError`. An event's
    text is read as it is (encoding it to bytes first would only be decoded again)."""
    if isinstance(data, str) and data[:1] == "\ufeff":  # a leading BOM, skipped as json.loads skips it in bytes
        data = data[1:]
    try:
        payload = loads(data)
    except ValueError as exc:
        problem: str | None = str(exc)
    else:
        problem = None
    if problem is not None:  # raised outside the `except`: nothing that holds the event is chained
        what = f"sent a {unit} that is not JSON ({problem})"
        raise stream_error(StreamDecodeError, what, provider=provider, model=model, partial=partial)
    if not isinstance(payload, dict):
        what = f"sent a {unit} that is not an object"
        raise stream_error(StreamDecodeError, what, provider=provider, model=model, partial=partial)
    return payload


def event_error(
    payload: Any,
    *,
    provider: str,
    model: str,
    partial: Sequence[str],
    request_id: str | None = None,
    redact: Callable[[str], str] = str,
) -> StreamInterruptedError:
    """An error event inside a stream (OpenAI's `{"error": {...}}`, Anthropic's `event: error`, Google's error
    object) as a `StreamInterruptedError` that keeps the provider's type and code (overloaded, content filter, …)
    and the text received so far; raise it.

    Args:
        payload: The decoded event.
        provider: The provider name the error carries.
        model: The model the call was for.
        partial: The text received so far.
        request_id: The request's id, where known.
        redact: Removes the driver's key from the provider's message (`HTTPClient.redact`).
    """
    envelope = read_payload(payload)
    what = f"sent an error inside the stream: {redact(envelope.message)}"
    error = stream_error(
        StreamInterruptedError, what, provider=provider, model=model, partial=partial, request_id=request_id
    )
    error.error_type = envelope.type
    error.error_code = envelope.reason or envelope.code
    if error.request_id is None:
        error.request_id = envelope.request_id
    return error


class StreamState:
    """What a streamed reply has said so far, for `HTTPDriver._stream_events`: a subclass reads its wire's events.

    Args:
        model: The model the call was for (a subclass updates it from the events).
        request_id: The request's id from the answer's headers.
    """

    def __init__(self, model: str, request_id: str | None = None) -> None:
        self.model = model
        self.request_id = request_id
        self.text: list[str] = []
        """The text received so far (a cut stream's `partial_text`)."""
        self.started = False
        """Whether anything was generated: a connection lost before that is retried, after it is a cut stream."""
        self.finished = False
        """Whether the reply ended as the wire says a reply ends."""
        self.stopped = False
        """Whether to stop reading (the wire's last event came)."""

    def is_error(self, event: str, payload: dict[str, Any]) -> bool:
        """Whether an event is an error event (an `error` event name, or an `error` field)."""
        return event == "error" or payload.get("type") == "error" or "error" in payload

    def take(self, event: str, payload: dict[str, Any]) -> ChatChunk | None:
        """The chunk of one event (None when it carries nothing); raises one of `PARSE_ERRORS` on a malformed one."""
        raise NotImplementedError


# -- counting ------------------------------------------------------------------------------------------------------


class TokenCounting:
    """Which tokenizer counts a model's tokens: the configured Hugging Face tokenizer (`tokenizer=`), exactly and by
    its chat template where it has one; else the one `fallback(model)` picks, exact or not as it says.

    Args:
        configured: The tokenizer from the driver's `tokenizer=` option, if any.
        fallback: The tokenizer for a model and whether its counts are exact (tiktoken for OpenAI's models).
    """

    def __init__(
        self, configured: tokens.HFTokenizer | None, fallback: Callable[[str], tuple[tokens.Tokenizer, bool]]
    ) -> None:
        self.configured = configured
        self._fallback = fallback
        self._chosen: dict[str, tuple[tokens.Tokenizer, bool]] = {}  # per model the driver serves (shared tokenizers)
        self._pending: dict[str, asyncio.Future[tuple[tokens.Tokenizer, bool]]] = {}

    async def tokenizer(self, model: str) -> tuple[tokens.Tokenizer, bool]:
        """The tokenizer for `model` and whether its counts are exact, loaded once, off the event loop."""
        configured = self.configured
        if configured is not None:
            if not configured.loaded:  # seconds for a GGUF

                def load_configured() -> tuple[tokens.Tokenizer, bool]:
                    configured.load()
                    return configured, True

                await self._load_once("", load_configured)
            return configured, True
        found = self._chosen.get(model)
        if found is None:
            found = self._chosen[model] = await self._load_once(model, lambda: self._fallback(model))
        return found

    async def _load_once(
        self, key: str, load: Callable[[], tuple[tokens.Tokenizer, bool]]
    ) -> tuple[tokens.Tokenizer, bool]:
        # One worker thread per cold key, however many calls arrive before it finishes: the rest await the same
        # future instead of each taking an executor thread to wait on the loader's lock. Shielded, so a cancelled
        # caller does not cancel the load the others wait for. A future from another (closed) loop is not reused.
        loop = asyncio.get_running_loop()
        pending = self._pending.get(key)
        if pending is None or pending.get_loop() is not loop:
            pending = self._pending[key] = asyncio.ensure_future(asyncio.to_thread(load))
            pending.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(pending)

    def _forget(self, key: str, done: asyncio.Future[tuple[tokens.Tokenizer, bool]]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so a load that failed with no one waiting is not logged as lost

    def fallback(self, model: str) -> tokens.Tokenizer | None:
        """The fallback tokenizer `model` was counted with, if it was."""
        found = self._chosen.get(model)
        return found[0] if found else None

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """Prompt tokens: exact by the configured tokenizer's chat template, else by the framing rules of
        `tokens.count_messages` (an estimate unless the fallback is the model's own tokenizer)."""
        tokenizer, exact = await self.tokenizer(model)
        if self.configured is not None:
            rendered = self.configured.count_chat(messages, tools)
            if rendered is not None:
                return TokenCount(tokens=rendered, exact=True, tokenizer=self.configured.name)
            exact = False  # the model's tokens, but framed by rules that are not its template
        return tokens.count_messages(messages, model, tools, tokenizer=tokenizer, exact=exact)

    async def count_text(self, model: str, text: str) -> TokenCount:
        """Tokens in plain text (no chat framing)."""
        tokenizer, exact = await self.tokenizer(model)
        return tokens.count_text(text, model, tokenizer=tokenizer, exact=exact)


def cl100k_estimate(model: str) -> tuple[tokens.Tokenizer, bool]:
    """A flagged estimate for any model: cl100k (or the character ratio when tiktoken's files are missing)."""
    return tokens.load_encoding("cl100k_base") or tokens.RATIO_ESTIMATOR, False


# -- the HTTP driver -----------------------------------------------------------------------------------------------


class HTTPDriver(BaseDriver):
    """The base of a driver that talks to one HTTP API: key, base URL, one `HTTPClient`, counting, closing.

    A subclass names its environment variables and default URL, says how the key travels (`_auth_headers`, a
    bearer token by default), lists its provider's own error names (`error_codes`), and implements its wire. The
    environment speaks for the driver's own provider name only: a server added under another name (`{"gpu-box":
    {"driver": "acme", ...}}`) does not receive `ACME_API_KEY` unless configured so.

    Args:
        api_key: The key (else the `api_key_env` variable).
        base_url: Where the API is (else the `base_url_env` variable, else `default_base_url`).
        headers: Extra headers for every request.
        transport: An httpx transport (`httpx.MockTransport` in tests); selects the httpx backend.
        timeouts: Connect, read, write and pool timeouts (the client's, passed in by `create_driver`).
        http: Proxy, TLS verification, connection limits, keep-alive and backend (`HTTPOptions` or a dict).
        provider: The provider name this instance serves.
        tokenizer: A Hugging Face tokenizer for exact prompt counts (a path, a `tokenizer.json`, a dict of
            `HFTokenizer` options or one).
        limits: The most read of one response body and of one stream event.
    """

    name: ClassVar[str] = "http"
    capabilities = Capabilities(http=True)
    default_base_url: ClassVar[str | None] = None
    api_key_env: ClassVar[str | None] = None
    base_url_env: ClassVar[str | None] = None
    requires_api_key: ClassVar[bool] = True
    error_codes: ClassVar[Mapping[str, type[APIError]]] = {}
    """The provider's own error names (type, code or reason in its error body) and what each means."""

    def __init__(
        self,
        *,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        timeouts: Timeouts | None = None,
        http: HTTPOptions | Mapping[str, Any] | None = None,
        provider: str | None = None,
        tokenizer: str | os.PathLike[str] | Mapping[str, Any] | tokens.HFTokenizer | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(provider=provider)
        environ = os.environ if self.provider == self.name else {}
        key = api_key if api_key is not None else environ.get(self.api_key_env or "")
        self.api_key = SecretStr(key) if isinstance(key, str) and key else (key or None)
        url = base_url or environ.get(self.base_url_env or "") or self.default_base_url
        if not url:
            raise ConfigurationError(
                f"{self.provider} needs a base_url: pass Client(providers={{{self.provider!r}: "
                f"{{'base_url': 'http://host:port/v1'}}}}) or set {self.base_url_env}",
                provider=self.provider,
            )
        self.base_url = self.endpoint = validate_base_url(url, provider=self.provider)
        configured = None if tokenizer is None else tokens.HFTokenizer.from_option(tokenizer)
        self._counting = TokenCounting(configured, self._default_tokenizer)
        secret = self.api_key.get_secret_value() if self.api_key else ""
        self._http = HTTPClient(
            provider=self.provider,
            base_url=self.base_url,
            headers={**(headers or {}), **self._auth_headers(secret)},
            secrets=(secret,),
            transport=transport,
            timeouts=timeouts,
            options=http,
            refine=self._refine_error,
            refine_connect=self._refine_connect,
            limits=limits,
            error_codes=self.error_codes,
        )

    def _auth_headers(self, secret: str) -> dict[str, str]:
        """The headers that carry the key (a bearer token unless the provider wants another)."""
        return {"authorization": f"Bearer {secret}"} if secret else {}

    def _refine_error(self, error: APIError) -> LLMClientError:
        """A hook for the provider's error quirks that its error names cannot say; `error.narrowed(...)` helps."""
        return error

    def _refine_connect(self, error: APIConnectionError) -> LLMClientError:
        """A hook to add the provider's hint to a refused connection ("start it with ...")."""
        return error

    async def _post(
        self,
        path: str,
        body: dict[str, Any],
        model: str,
        what: str,
        parse: Callable[[Any, str | None], T],
        rate_limits: dict[str, str] | None = None,
    ) -> T:
        """POST `body` and read the answer with `parse(data, request_id)`; an answer without the documented fields
        is `ResponseFormatError` (`what` names it: "a message"), with the status kept, as a 2xx is billed."""
        data, request_id = await self._http.post_json(path, body, model=model, rate_limits=rate_limits)
        try:
            return parse(data, request_id)
        except PARSE_ERRORS as exc:
            raise ResponseFormatError(
                f"{self.provider} returned {what} without the documented fields ({type(exc).__name__}: {exc})"[:300],
                provider=self.provider,
                model=model,
                request_id=request_id,
                status=200,
            ) from exc

    async def _stream_events(
        self, path: str, body: dict[str, Any], request: ChatRequest, make: Callable[[str | None], StreamState]
    ) -> AsyncIterator[ChatChunk]:
        """POST `body` for a server-sent event stream and yield the chunks `make(request_id)`'s state reads from it.

        An error event raises `event_error`'s `StreamInterruptedError`; a malformed event `StreamDecodeError`; a
        connection lost after something was generated, or a stream that ends before the reply finished,
        `StreamInterruptedError` with the text so far. A connection lost before anything arrived is raised as it
        is, so the pipeline retries it.
        """
        async with self._http.stream_sse(path, body, model=request.model) as (request_id, events):
            state = make(request_id)
            where: dict[str, Any] = {"provider": self.provider, "model": request.model, "partial": state.text}
            try:
                async for event, data in events:
                    payload = stream_payload(data, unit="stream event", **where)
                    if state.is_error(event, payload):  # an error after the 200 comes as an event
                        raise event_error(payload, request_id=request_id, redact=self._http.redact, **where)
                    try:
                        chunk = state.take(event, payload)
                    except PARSE_ERRORS as exc:
                        what = "sent a stream event without the documented fields"
                        raise stream_error(StreamDecodeError, what, request_id=request_id, **where) from exc
                    if chunk is not None:
                        yield chunk
                    if state.stopped:
                        break
            except APIConnectionError as exc:
                if not state.started:
                    raise
                what = f"stream was cut: {exc.message}"
                raise stream_error(StreamInterruptedError, what, request_id=request_id, **where) from exc
        if not state.finished:
            what = "stream ended before the reply finished"
            raise stream_error(StreamInterruptedError, what, request_id=request_id, **where)

    def _check_key(self, model: str) -> None:
        """Refuse a call without a key where the provider needs one (checked when sending: counting needs none)."""
        if self.api_key is None and self.requires_api_key:
            raise MissingAPIKeyError(
                f"{self.provider} needs an API key: set {self.api_key_env} or pass "
                f"Client(providers={{{self.provider!r}: {{'api_key': ...}}}})",
                provider=self.provider,
                model=model,
            )

    def _default_tokenizer(self, model: str) -> tuple[tokens.Tokenizer, bool]:
        """The tokenizer for a model without a configured one, and whether it is the model's own."""
        return cl100k_estimate(model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider!r}, base_url={self.base_url!r})"

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        """Prompt tokens by `TokenCounting` (exact with a configured tokenizer, else flagged when estimated)."""
        return await self._counting.count_tokens(model, messages, tools)

    async def count_text(self, model: str, text: str) -> TokenCount:
        """Tokens in plain text (no chat framing)."""
        return await self._counting.count_text(model, text)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


__all__ = [
    "FINISH_REASONS",
    "PARSE_ERRORS",
    "HTTPDriver",
    "StreamState",
    "TokenCounting",
    "call_deltas",
    "cl100k_estimate",
    "event_error",
    "finish_from_wire",
    "json_schema_of",
    "stream_error",
    "stream_payload",
]
