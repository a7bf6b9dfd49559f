"""A provider's error envelope read into one shape: message, type, code, reason, request id and retry delay; and
what an answer's headers say (`request_id_from`, `parse_retry_after`).

Providers wrap an error in bodies of their own; these are the shapes `llmclient.errors.error_from_response` reads:

- OpenAI and compatible servers: `{"error": {"message", "type", "code", "param"}}`.
- Anthropic: `{"type": "error", "error": {"type": "overloaded_error", "message"}, "request_id": "req_…"}`
  (https://platform.claude.com/docs/en/api/errors, read 2026-12-07).
- Google (Gemini): `{"error": {"code": 429, "message", "status": "RESOURCE_EXHAUSTED", "details": [...]}}`, where
  `details` may hold a `google.rpc.ErrorInfo` (`reason`: `API_KEY_INVALID`) and a `google.rpc.RetryInfo`
  (`retryDelay`: `"37s"`) (https://ai.google.dev/gemini-api/docs/troubleshooting and
  https://cloud.google.com/apis/design/errors, read 2026-12-07).
- Ollama and llama.cpp: `{"error": "model \\"x\\" not found"}`; FastAPI: `{"detail": "..."}`; HTML or plain text.

It imports nothing from llmclient but `_sanitize`, so `errors` builds on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmclient._sanitize import MAX_MESSAGE_CHARS, bound, loads, redact, strip_html

MAX_REQUEST_ID_CHARS = 200

# What context-window refusals say where no code names them: OpenAI-compatible servers; Anthropic's "prompt is
# too long" and "exceed context limit" (https://platform.claude.com/docs/en/build-with-claude/context-windows);
# Gemini's "exceeds the maximum number of tokens allowed".
_CONTEXT_HINTS = (
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "exceed context limit",
    "exceeds the maximum number of tokens",
)

_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


@dataclass(frozen=True)
class Envelope:
    """What an error body says, whatever its provider's shape.

    Args:
        message: The provider's words ("" when it gave none).
        type: The error's type or status name (`"rate_limit_error"`, `"RESOURCE_EXHAUSTED"`).
        code: The error's code, when it is not merely the HTTP status again (`"insufficient_quota"`).
        reason: A more specific reason the body gives (Google's `ErrorInfo.reason`: `"API_KEY_INVALID"`).
        request_id: The request id the body carries (Anthropic repeats it there).
        retry_after: Seconds to wait that the body asks for (Google's `RetryInfo.retryDelay`).
        body: The decoded body when it is JSON and small enough to keep.
    """

    message: str = ""
    type: str | None = None
    code: str | None = None
    reason: str | None = None
    request_id: str | None = None
    retry_after: float | None = None
    body: Any = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the provider gave the error, most specific first (reason, code, type)."""
        return tuple(name for name in (self.reason, self.code, self.type) if name)


def read_envelope(text: str, status: int | None = None) -> Envelope:
    """The envelope of an error body (already decoded to text and redacted by the caller).

    Args:
        text: The body.
        status: The HTTP status, so that a code that only repeats it (Google's `"code": 429`) is not kept as one.
    """
    text = text.strip()
    try:
        parsed: Any = loads(text) if text else None
    except ValueError:  # not JSON, or nested too deeply (`loads`)
        parsed = None
    if parsed is None:
        looks_html = text[:200].lstrip().lower().startswith(("<!doctype", "<html")) or "</" in text[:2000]
        return Envelope(message=bound(strip_html(text) if looks_html else text))
    return read_payload(parsed, status)


def read_payload(parsed: Any, status: int | None = None) -> Envelope:
    """The envelope of an already decoded error body or stream error event."""
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    body = _bounded(parsed)
    request_id = _text(parsed.get("request_id")) if isinstance(parsed, dict) else None
    if isinstance(error, str):  # {"error": "model not found"} (Ollama, llama.cpp) or a bare JSON string
        return Envelope(message=error, request_id=request_id, body=body)
    if not isinstance(error, dict):
        return Envelope(message=bound(json.dumps(parsed, default=str)), body=body)
    message = error.get("message") or error.get("detail") or error.get("msg") or ""
    code = error.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and code == status:
        code = None  # Google's `code` is the HTTP status again; its `status` names the error
    details = [item for item in error.get("details") or () if isinstance(item, dict)]
    return Envelope(
        message=str(message) if message else json.dumps(error, default=str)[:MAX_MESSAGE_CHARS],
        type=_text(error.get("type")) or _text(error.get("status")),
        code=_text(code),
        reason=next((_text(d.get("reason")) for d in details if d.get("@type") == _ERROR_INFO), None),
        request_id=request_id,
        retry_after=next((_seconds(d.get("retryDelay")) for d in details if d.get("@type") == _RETRY_INFO), None),
        body=body,
    )


def says_context_window(message: str) -> bool:
    """Whether an error's message says the prompt was over the model's context window (where no code says so)."""
    lowered = message.lower()
    return any(hint in lowered for hint in _CONTEXT_HINTS)


def request_id_from(headers: Mapping[str, str], secrets: Iterable[str] = ()) -> str | None:
    """The provider's request id header, where it sends one: redacted (a server may echo the API key there, and
    the id goes into errors, replies, logs, spans and every ledger) and bounded."""
    for name in ("x-request-id", "request-id", "x-ds-trace-id", "cf-ray"):
        value = headers.get(name)
        if value:
            return bound(redact(value, secrets), MAX_REQUEST_ID_CHARS)
    return None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date; None if absent."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import email.utils  # only for the rare HTTP-date form

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _seconds(value: Any) -> float | None:
    """A protobuf `Duration` in its JSON form (`"37s"`, `"1.5s"`) in seconds."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(0.0, float(value[:-1]))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)[:200]


def _bounded(parsed: Any) -> Any:
    return parsed if len(json.dumps(parsed, default=str)) <= 4 * MAX_MESSAGE_CHARS else None


__all__ = [
    "MAX_REQUEST_ID_CHARS",
    "Envelope",
    "parse_retry_after",
    "read_envelope",
    "read_payload",
    "request_id_from",
    "says_context_window",
]
