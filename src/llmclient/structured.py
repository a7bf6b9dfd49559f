"""Structured output: a reply validated into a pydantic model, with the strongest mode each driver offers.

`Capabilities.structured_output` decides: "json_schema" sends OpenAI's strict `response_format`; "json_object"
asks for JSON mode and puts the schema in the conversation; "prompt" puts the schema in the conversation only.
An invalid reply is sent back with the validation errors, up to `max_validation_retries` times.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmclient.drivers import StructuredOutputMode
from llmclient.errors import StructuredOutputError
from llmclient.pipeline.request import validation_message
from llmclient.types import ChatResponse, Message

ModelT = TypeVar("ModelT", bound=BaseModel)

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


async def structured_chat(
    chat: Callable[[list[Message], dict[str, Any]], Awaitable[ChatResponse]],
    messages: list[Message],
    response_model: type[ModelT],
    *,
    mode: StructuredOutputMode,
    params: dict[str, Any],
    max_validation_retries: int,
    provider: str,
) -> ChatResponse:
    """Chat until a reply validates as `response_model`; the reply's `parsed` holds the object.

    Args:
        chat: Sends a transcript with the given parameters (one logical call each, each in the ledger).
        messages: The conversation.
        response_model: The pydantic model the reply must be.
        mode: The driver's structured-output mode.
        params: The call's parameters; the response format is added here.
        max_validation_retries: Invalid replies sent back before `StructuredOutputError`.
        provider: For the error.
    """
    schema = strict_json_schema(response_model)
    params = dict(params)
    transcript = list(messages)
    if mode == "json_schema":
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": response_model.__name__, "schema": schema, "strict": True},
        }
    else:  # JSON mode or plain prompting: the schema goes into the conversation
        if mode == "json_object":
            params["response_format"] = {"type": "json_object"}
        instruction = "Reply with one JSON object only, no prose, that matches this JSON schema:\n" + json.dumps(
            schema, ensure_ascii=False
        )
        transcript = [Message(role="system", content=instruction), *transcript]
    for attempt in range(max_validation_retries + 1):
        reply = await chat(transcript, params)
        try:
            reply.parsed = response_model.model_validate_json(json_text(reply.text))
            return reply
        except ValidationError as exc:
            if attempt == max_validation_retries:
                raise StructuredOutputError(
                    f"no valid {response_model.__name__} after {attempt + 1} replies: {validation_message(exc)}",
                    raw_text=reply.text,
                    provider=provider,
                    model=reply.model,
                ) from exc
            feedback = (
                f"That reply is not a valid {response_model.__name__}: {validation_message(exc)}. "
                "Reply again with the corrected JSON object only."
            )
            transcript = [*transcript, reply.message, Message(role="user", content=feedback)]
    raise AssertionError("unreachable")  # pragma: no cover


def json_text(text: str) -> str:
    """The JSON in a reply, unwrapped from a Markdown fence if the model added one."""
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema in the form OpenAI's strict structured outputs accept.

    Every object lists all its properties as required and forbids others; optional fields stay nullable
    (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas).
    """
    schema = model.model_json_schema()

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: visit(value) for key, value in node.items() if key != "default"}
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [visit(item) for item in node]
        return node

    result: dict[str, Any] = visit(schema)
    return result
