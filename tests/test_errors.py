"""The error tree and the mapping from HTTP answers onto it."""

from __future__ import annotations

import email.utils
import json
import time

import pytest

from llmclient import errors
from llmclient.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContextWindowExceededError,
    InsufficientBalanceError,
    LLMClientError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    UnknownModelError,
    error_from_response,
    parse_retry_after,
)


def mapped(status: int, body: bytes, headers: dict[str, str] | None = None) -> APIError:
    return error_from_response(status, body, headers or {}, provider="p", model="m")


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (402, InsufficientBalanceError, False),
        (403, PermissionDeniedError, False),
        (404, NotFoundError, False),
        (408, ServerError, True),
        (409, ConflictError, True),
        (422, BadRequestError, False),
        (429, RateLimitError, True),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
        (529, ServerError, True),
    ],
)
def test_status_codes_map_to_meanings(status: int, kind: type[APIError], retryable: bool) -> None:
    error = mapped(status, b'{"error": {"message": "m", "type": "t"}}')
    assert type(error) is kind
    assert error.retryable is retryable
    assert (error.status, error.provider, error.model) == (status, "p", "m")


def test_error_codes_beat_status_codes() -> None:
    assert type(mapped(429, b'{"error": {"message": "quota", "code": "insufficient_quota"}}')) is QuotaExceededError
    assert type(mapped(400, b'{"error": {"message": "x", "code": "context_length_exceeded"}}')) is (
        ContextWindowExceededError
    )
    assert type(mapped(404, b'{"error": {"message": "x", "code": "model_not_found"}}')) is UnknownModelError


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "model \\"x\\" not found"}', 'model "x" not found'),  # Ollama / llama.cpp
        (b'"just a string"', "just a string"),
        (b"plain text failure", "plain text failure"),
        (b'{"detail": "Not Found"}', "Not Found"),  # FastAPI
        (b"", "HTTP 500"),
    ],
)
def test_body_shapes_seen_in_the_wild(body: bytes, message: str) -> None:
    assert mapped(500, body).message == message


def test_html_pages_are_stripped_and_bounded() -> None:
    page = b"<html><head><style>x{}</style></head><body><h1>502 Bad Gateway</h1>" + b"<p>pad</p>" * 5000 + b"</body>"
    error = mapped(502, page)
    assert error.message.startswith("502 Bad Gateway")
    assert "<" not in error.message
    assert len(error.message) <= errors.MAX_MESSAGE_CHARS


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after({"retry-after": "garbage"}) is None
    assert parse_retry_after({}) is None
    error = mapped(429, b"{}", {"retry-after": "3", "x-request-id": "req_9"})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 3.0 and error.request_id == "req_9"


def test_messages_are_redacted_and_str_says_where() -> None:
    error = error_from_response(
        401,
        b'{"error": {"message": "Incorrect API key provided: sk-abcdef123456 (Bearer sk-abcdef123456)"}}',
        {},
        provider="openai",
        model="gpt-4o",
        secrets=["sk-abcdef123456"],
    )
    assert "sk-abcdef123456" not in str(error)
    assert "sk-abcdef123456" not in repr(error.body)
    assert str(error).endswith("(status 401, openai/gpt-4o)")
    assert errors.redact("token sk-proj-ABCDEFGH1234 here") == "token [REDACTED] here"


def test_every_error_is_an_llmclient_error() -> None:
    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, LLMClientError), name
    assert issubclass(errors.InvalidRequestError, ValueError)


# -- providers' own envelopes (llmclient._envelope) ---------------------------------------------------------------


def test_anthropics_envelope_keeps_its_type_and_the_request_id_of_the_body() -> None:
    # https://platform.claude.com/docs/en/api/errors: the body repeats the request id, the type names the error.
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"}'
    error = mapped(529, body)
    assert type(error) is ServerError and error.retryable
    assert (error.message, error.error_code, error.request_id) == ("Overloaded", "overloaded_error", "req_1")
    assert mapped(529, body, {"request-id": "req_header"}).request_id == "req_header"  # the header wins


def test_googles_envelope_names_the_error_by_status_reason_and_retry_info() -> None:
    # https://cloud.google.com/apis/design/errors: `status` names it; `code` repeats the HTTP status.
    body = (
        b'{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED", '
        b'"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}'
    )
    error = mapped(429, body)
    assert isinstance(error, RateLimitError)
    assert (error.error_code, error.retry_after) == ("RESOURCE_EXHAUSTED", 37.0)
    assert mapped(429, body, {"retry-after": "2"}).retry_after == 2.0  # the header wins


def test_a_providers_own_codes_decide_before_the_status() -> None:
    body = (
        b'{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", '
        b'"status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", '
        b'"reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}'
    )
    assert type(mapped(400, body)) is BadRequestError
    error = error_from_response(400, body, {}, provider="p", model="m", codes={"API_KEY_INVALID": AuthenticationError})
    assert type(error) is AuthenticationError
    assert (error.status, error.error_code) == (400, "API_KEY_INVALID")


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 215000 tokens > 200000 maximum",  # Anthropic
        "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000",  # Anthropic
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",  # Gemini
    ],
)
def test_context_window_refusals_of_other_wires(message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    assert type(mapped(400, body)) is ContextWindowExceededError


def test_narrowing_keeps_every_field() -> None:
    headers = {"x-request-id": "req_9", "retry-after": "3", "x-should-retry": "false"}
    error = mapped(429, b'{"error": {"message": "slow down", "code": "rate_limit"}}', headers)
    narrowed = error.narrowed(QuotaExceededError, "out of credit")
    assert type(narrowed) is QuotaExceededError and narrowed is not error
    assert (narrowed.message, str(narrowed)) == ("out of credit", "out of credit (status 429, p/m, request req_9)")
    assert (narrowed.provider, narrowed.model, narrowed.status, narrowed.request_id) == ("p", "m", 429, "req_9")
    assert (narrowed.error_code, narrowed.body, narrowed.retryable) == ("rate_limit", error.body, False)
    kept = mapped(503, b"busy", {"retry-after": "4"}).narrowed(RateLimitError)
    assert (kept.message, kept.retry_after, kept.retryable) == ("busy", 4.0, True)
    assert mapped(400, b"x").narrowed(RateLimitError).retry_after is None
