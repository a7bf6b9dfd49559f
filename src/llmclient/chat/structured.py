"""Structured output: a reply validated into a pydantic model, with the strongest mode each driver offers.

`Capabilities.structured_output` decides: "json_schema" sends OpenAI's strict `response_format`; "json_object"
asks for JSON mode and puts the schema in the conversation; "prompt" puts the schema in the conversation only.
An invalid reply is sent back with the validation errors, up to `max_validation_retries` times. A refusal (the
model's `refusal` instead of content) is an answer, not an invalid reply: `RefusalError` at once, not retried.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmclient.drivers import Driver
from llmclient.errors import InvalidRequestError, RefusalError, StructuredOutputError
from llmclient.lifecycle.request import validation_message
from llmclient.types import ChatResponse, Message

ModelT = TypeVar("ModelT", bound=BaseModel)

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_-]+")


async def structured_chat(
    chat: Callable[[list[Message], dict[str, Any] | None], Awaitable[ChatResponse]],
    messages: list[Message],
    response_model: type[ModelT],
    *,
    driver: Driver,
    response_format: Mapping[str, Any] | None,
    max_validation_retries: int,
) -> ChatResponse:
    """Chat until a reply validates as `response_model`; the reply's `parsed` holds the object.

    Args:
        chat: Sends a transcript with a response format (one logical call each, each in the ledger).
        messages: The conversation.
        response_model: The pydantic model the reply must be.
        driver: The driver that serves the model; its `capabilities.structured_output` picks the mode.
        response_format: The caller's own response format, kept in the "prompt" mode.
        max_validation_retries: Invalid replies sent back before `StructuredOutputError`.
    """
    if not (isinstance(response_model, type) and issubclass(response_model, BaseModel)):
        raise InvalidRequestError(
            f"response_model must be a pydantic BaseModel subclass, not {response_model!r}"[:200],
            provider=driver.provider,
        )
    transcript, wire_format = _first_request(driver, response_model, messages, response_format)
    for attempt in range(max_validation_retries + 1):
        reply = await chat(transcript, wire_format)
        if reply.refusal is not None:  # an answer, not a malformed reply: never sent back
            raise RefusalError(
                f"the model refused to give a {response_model.__name__}: {reply.refusal}",
                refusal=reply.refusal,
                provider=driver.provider,
                model=reply.model,
                request_id=reply.request_id,
            )
        try:
            reply.parsed = response_model.model_validate_json(json_text(reply.text))
            return reply
        except ValidationError as exc:
            if attempt == max_validation_retries:
                raise StructuredOutputError(
                    f"no valid {response_model.__name__} after {attempt + 1} replies: {validation_message(exc)}",
                    raw_text=reply.text,
                    provider=driver.provider,
                    model=reply.model,
                ) from exc
            feedback = (
                f"That reply is not a valid {response_model.__name__}: {validation_message(exc)}. "
                "Reply again with the corrected JSON object only."
            )
            transcript = [*transcript, reply.message, Message(role="user", content=feedback)]
    raise AssertionError("unreachable")  # pragma: no cover


def _first_request(
    driver: Driver, response_model: type[BaseModel], messages: list[Message], response_format: Any
) -> tuple[list[Message], dict[str, Any] | None]:
    """The transcript and response format of the first request, by the driver's strongest mode."""
    mode = driver.capabilities.structured_output
    schema = strict_json_schema(response_model)
    if mode == "json_schema":
        strict = {"name": schema_name(response_model), "schema": schema, "strict": is_strict(schema)}
        return list(messages), {"type": "json_schema", "json_schema": strict}
    # JSON mode or plain prompting: the schema goes into the conversation.
    wire_format = {"type": "json_object"} if mode == "json_object" else None
    if wire_format is None and response_format is not None:
        wire_format = dict(response_format)
    instruction = "Reply with one JSON object only, no prose, that matches this JSON schema:\n" + json.dumps(
        schema, ensure_ascii=False
    )
    return [Message(role="system", content=instruction), *messages], wire_format


def schema_name(model: type[BaseModel]) -> str:
    """A model's name as OpenAI's `json_schema.name` allows it (`^[a-zA-Z0-9_-]{1,64}$`): `Page[Item]` →
    `Page_Item`."""
    return _NOT_IN_NAME.sub("_", model.__name__).strip("_")[:64] or "response"


def is_strict(schema: Any) -> bool:
    """Whether OpenAI's strict mode can take a schema made by `strict_json_schema`: it cannot when an object has
    free-form keys (a `dict[str, int]` field), whose `additionalProperties` may not be false."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
            return False
        return all(is_strict(value) for value in schema.values())
    if isinstance(schema, list):
        return all(is_strict(item) for item in schema)
    return True


def json_text(text: str) -> str:
    """The JSON in a reply, unwrapped from a Markdown fence if the model added one."""
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema in the form OpenAI's strict structured outputs accept (see `strict_schema`)."""
    return strict_schema(model.model_json_schema())


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema in the form OpenAI's strict structured outputs accept: every object lists all its properties as
    required and forbids others, and `default`s go
    (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas, checked 2026-12-07).

    An optional property becomes a required one of the same type, not a nullable one: a value is always valid for
    the original schema, where a null may not be (`b: int = 1`). Properties typed `X | None` stay nullable. An
    object with free-form keys (a `dict[str, int]` field) stays as it is, and `is_strict` then says the schema goes
    without `strict`.

    ```python
    from llmclient.chat.structured import strict_schema

    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer", "default": 1}}}
    assert strict_schema(schema) == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    ```
    """

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key == "default":
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                result[key] = {name: visit(sub) for name, sub in value.items()}  # names, not keywords
            else:
                result[key] = visit(value)
        free_form = result.get("additionalProperties", False) is not False and "properties" not in result
        if (result.get("type") == "object" or "properties" in result) and not free_form:
            result["required"] = list(result.setdefault("properties", {}))
            result["additionalProperties"] = False
        return result

    strict: dict[str, Any] = visit(schema)
    return strict
