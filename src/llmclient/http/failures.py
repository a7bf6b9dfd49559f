"""What becomes of a request that could not be sent or got no answer, whichever backend sent it.

`encode_body` turns a request body into JSON bytes, or raises `InvalidRequestError` before anything is sent;
`no_answer` turns a backend's failure to get an answer (refused, reset, timed out) into `APITimeoutError` or
`APIConnectionError`, its text redacted. `HTTPClient` (`http/client.py`) and its backends use both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from llmclient.errors import APIConnectionError, APITimeoutError, InvalidRequestError, detached, redact

FailureKind = Literal["connect", "connect timeout", "read timeout", "write timeout", "pool timeout", "connection"]
"""How a request failed to get an answer, as every backend names it."""

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # made once: json.dumps builds one per call


def encode_body(body: dict[str, Any]) -> bytes:
    """The request body as JSON, non-ASCII text as UTF-8 rather than 6-byte escapes; what cannot be sent (a lone
    surrogate, a value JSON has no form for, a cycle or nesting too deep) is `InvalidRequestError`, unsent."""
    try:
        return _JSON.encode(body).encode()
    except UnicodeEncodeError as exc:
        problem = f"text that is not valid Unicode (a lone surrogate at position {exc.start})"
    except (TypeError, ValueError, RecursionError) as exc:
        problem = f"a value JSON cannot carry ({type(exc).__name__})"
    # Not chained: the encoder's exception holds the whole request, prompt included.
    raise detached(InvalidRequestError(f"the request holds {problem}; fix the input before sending"))


def no_answer(
    kind: FailureKind, exc: Exception, *, provider: str, base_url: str, model: str | None, secrets: Iterable[str]
) -> APITimeoutError | APIConnectionError:
    """The llmclient error for a request that got no answer (any backend's exception `exc`), its text redacted."""
    detail = redact(str(exc) or type(exc).__name__, tuple(secrets))
    if exc.args and detail != str(exc):
        # The original stays chained as the cause for debugging, so it must not carry the key either.
        exc.args = (detail, *exc.args[1:])
    if kind.endswith("timeout"):
        # A connect or pool timeout: the request never left. Otherwise the provider may have received it.
        unsent = kind in ("connect timeout", "pool timeout")
        return APITimeoutError(
            f"{provider}: {kind} ({detail})", provider=provider, model=model, request_sent=False if unsent else None
        )
    if kind == "connect":
        message = f"could not connect to {provider} at {base_url} ({detail})"
        return APIConnectionError(message, provider=provider, model=model)
    return APIConnectionError(
        f"{provider}: connection failed ({type(exc).__name__}: {detail})", provider=provider, model=model
    )


__all__ = ["FailureKind", "encode_body", "no_answer"]
