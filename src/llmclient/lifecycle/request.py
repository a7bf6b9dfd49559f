"""Building a request: inputs normalised to typed messages and tools, parameters checked against the driver and
the model.

The request parameters are declared once, as fields of `ChatRequest` (their types and ranges) listed in
`llmclient.types.CHAT_PARAMS`; each driver's `Capabilities.params` says which its provider accepts, and the model's
entry in the price catalog which the model itself refuses (`PriceEntry.unsupported_params`: OpenAI's reasoning
models take no `temperature`, `top_p` or `stop`). A parameter either lacks is dropped with a
`ParameterDroppedWarning` (or refused under `strict_params`), and the response reports what was applied and dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from llmclient.accounting.prices import PriceEntry
from llmclient.drivers import Driver, driver_class
from llmclient.errors import InvalidRequestError, UnsupportedCapabilityError, UnsupportedParameterError
from llmclient.model_ids import ModelId
from llmclient.tools import definitions as tool_definitions
from llmclient.types import CHAT_PARAMS, ChatRequest, Message, TokenCount, to_messages

_DECLARED = {name: number for number, name in enumerate((*CHAT_PARAMS, "parallel_tool_calls"))}


class ParameterDroppedWarning(UserWarning):
    """A sampling parameter was dropped because the provider does not accept it."""


def chat_request(
    driver: Driver,
    model_id: ModelId,
    messages: Any,
    *,
    tools: Iterable[Any] | None,
    tool_choice: str | None,
    params: Mapping[str, Any],
    extra_body: Mapping[str, Any] | None,
    strict_params: bool,
    model_entry: PriceEntry | None = None,
) -> tuple[ChatRequest, dict[str, Any], list[str]]:
    """The validated `ChatRequest`, the parameters applied, and those dropped.

    Args:
        model_entry: The model's catalog entry, whose `unsupported_params` are dropped like those the driver lacks
            and whose `unsupported_reasoning_efforts` are refused.

    Raises:
        InvalidRequestError: A malformed message, tool or parameter value (nothing is sent).
        UnsupportedParameterError: Under `strict_params`, a parameter the provider or model lacks.
        UnsupportedCapabilityError: Tools for a driver without them.
    """
    provider, model = model_id
    given = _given(params, provider, model)
    refused, reason = _refused(given, driver.capabilities.params, model_id, model_entry)
    if refused:
        if strict_params:
            raise UnsupportedParameterError(reason, provider=provider, model=model)
        warnings.warn(f"{reason}; dropped (strict_params=True raises instead)", ParameterDroppedWarning, stacklevel=4)
        for key in refused:
            del given[key]
    parallel = given.pop("parallel_tool_calls", None)
    try:
        tool_list = tool_definitions(tools)
        if tool_list and not driver.capabilities.tools:
            raise UnsupportedCapabilityError(f"{provider} does not support tools", provider=provider, model=model)
        if tool_choice not in (None, "auto", "none", "required") and tool_choice not in {t.name for t in tool_list}:
            raise InvalidRequestError(
                f"tool_choice {tool_choice!r} names no tool given; pass it in tools= or use auto/none/required",
                provider=provider,
                model=model,
            )
        request = ChatRequest(
            model=model,
            messages=messages_of(messages),
            tools=tool_list or None,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel,
            # Not dict(...): a list or a string must reach the validator and be refused, not be converted or raise.
            extra_body=dict(extra_body) if isinstance(extra_body, Mapping) else extra_body or None,
            **given,
        )
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc), provider=provider, model=model) from exc
    _check_effort(request, model_entry)
    return request, given, refused


def _given(params: Mapping[str, Any], provider: str, model: str) -> dict[str, Any]:
    """The parameters given (not None), with `max_completion_tokens` (OpenAI's newer name) as `max_tokens`."""
    given = {key: value for key, value in params.items() if value is not None}
    newer = given.pop("max_completion_tokens", None)
    if newer is not None:
        if given.get("max_tokens", newer) != newer:
            raise InvalidRequestError(
                "max_tokens and max_completion_tokens differ; give one of them", provider=provider, model=model
            )
        given["max_tokens"] = newer
    return given


def _refused(
    given: Mapping[str, Any], accepted: frozenset[str], model_id: ModelId, entry: PriceEntry | None
) -> tuple[list[str], str]:
    """The given parameters the provider lacks or the model refuses (in the order given), and a sentence that
    says which is which."""
    unsupported = entry.unsupported_params if entry is not None else frozenset()
    names = sorted(given, key=lambda key: _DECLARED.get(key, len(_DECLARED)))  # declared order, not the dict's
    lacking = [key for key in names if key not in accepted and key != "parallel_tool_calls"]
    refused = [key for key in names if key in unsupported and key not in lacking]
    reasons = [f"{model_id.provider} does not accept {', '.join(lacking)}"] if lacking else []
    if refused:
        reasons.append(f"{model_id.provider}/{model_id.model} does not accept {', '.join(refused)}")
    return lacking + refused, "; ".join(reasons)


def _check_effort(request: ChatRequest, entry: PriceEntry | None) -> None:
    """A `reasoning_effort` the model's catalog entry says it refuses is refused before sending (GPT-6.2 answers
    `none` with a 400)."""
    effort = request.reasoning_effort
    if entry is None or effort is None or effort not in entry.unsupported_reasoning_efforts:
        return
    raise InvalidRequestError(
        f"{entry.provider}/{entry.model} does not take reasoning_effort {effort!r}",
        provider=entry.provider,
        model=request.model,
    )


def messages_of(value: Any) -> list[Message]:
    """`to_messages`, with any input it cannot take (None, a number, bytes, a malformed dict) refused as
    `InvalidRequestError` before anything is sent."""
    try:
        return to_messages(value)
    except TypeError as exc:
        raise InvalidRequestError(str(exc)) from None
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc)) from exc


async def count_tokens(driver: Driver, model: str, messages: Any, tools: Iterable[Any] | None) -> TokenCount:
    """`Client.count_tokens`: plain text alone, or messages (and tools) with the chat framing, on `model`."""
    if isinstance(messages, (bytes, bytearray)):
        raise InvalidRequestError("count_tokens() takes str or messages, not bytes; decode them first")
    tool_list = tool_definitions(tools)
    if isinstance(messages, str) and not tool_list:
        return await driver.count_text(model, messages)
    return await driver.count_tokens(model, messages_of(messages), tool_list)


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line naming at most five problems."""
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or exc.title.lower()}: {error['msg']}" for error in exc.errors()[:5]
    ]
    return "invalid request: " + "; ".join(problems)


def parameters_table(providers: Sequence[str]) -> str:
    """The uniform sampling parameters as a Markdown table: each one's range (from `ChatRequest`'s fields) and
    which providers' drivers accept it (their `Capabilities.params`). The docs' table is this output, checked by a
    test, so the declaration, validation, dropping and the docs cannot drift apart."""
    rows = [
        "| parameter | range | " + " | ".join(providers) + " |",
        "|---|---|" + "---|" * len(providers),
    ]
    accepted = {name: driver_class(name).capabilities.params for name in providers}
    for name in CHAT_PARAMS:
        bounds = {
            key: value
            for constraint in ChatRequest.model_fields[name].metadata
            for key in ("ge", "gt", "le")
            if (value := getattr(constraint, key, None)) is not None
        }
        low = f"[{bounds['ge']:g}" if "ge" in bounds else (f"({bounds['gt']:g}" if "gt" in bounds else "")
        span = f"{low}, {bounds['le']:g}]" if "le" in bounds else (f"≥ {bounds['ge']:g}" if "ge" in bounds else "")
        marks = " | ".join("✓" if name in accepted[provider] else "–" for provider in providers)
        rows.append(f"| `{name}` | {span} | {marks} |")
    return "\n".join(rows)
