"""Tool schemas from ordinary Python: a function's type hints and docstring, or a pydantic model, as JSON schema.

It builds on pydantic and the error tree alone; `llmclient.tools` turns its parts into `Tool`s (the data type
knows nothing of schemas, so `types` stays below every other module).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from llmclient.errors import ToolError
from llmclient.tools.docstrings import parse_docstring

# -- schemas ----------------------------------------------------------------------------------------------------


def arguments_model(fn: Callable[..., Any], descriptions: Mapping[str, str] | None = None) -> type[BaseModel]:
    """A pydantic model of a function's parameters (self/cls left out); `*args`/`**kwargs` are refused with a
    `ToolError`, since no JSON schema can tell a model what they take."""
    hints = get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    in_class = "." in getattr(fn, "__qualname__", "")
    fields: dict[str, Any] = {}
    for position, (name, parameter) in enumerate(signature.parameters.items()):
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            star = "*" if parameter.kind is parameter.VAR_POSITIONAL else "**"
            raise ToolError(
                f"{_model_name(fn)} takes {star}{name}, which a tool schema cannot describe; give the tool named "
                "parameters (or wrap it in a function that has them)"
            )
        if position == 0 and in_class and name in ("self", "cls"):
            continue
        annotation = hints.get(name, Any)
        default: Any = ... if parameter.default is parameter.empty else parameter.default
        description = (descriptions or {}).get(name)
        if description is not None:
            fields[name] = (annotation, Field(default, description=description))
        else:
            fields[name] = (annotation, default)
    # No extra="forbid" here: it would add additionalProperties to the schema, which LangChain's does not have;
    # unknown arguments are rejected in FunctionTool.validate instead.
    model: type[BaseModel] = create_model(
        _model_name(fn), __config__=ConfigDict(arbitrary_types_allowed=True), **fields
    )
    return model


def _model_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema as tool parameters: references inlined, titles removed (as LangChain does)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    schema = _inline_refs(schema, definitions)
    schema.pop("title", None)
    schema.pop("description", None)
    return _without_titles(schema)


def _inline_refs(node: Any, definitions: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = dict(definitions[ref.rsplit("/", 1)[1]])
            extra = {key: value for key, value in node.items() if key != "$ref"}
            return _inline_refs({**target, **extra}, definitions)
        return {key: _inline_refs(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(item, definitions) for item in node]
    return node


def _without_titles(node: dict[str, Any], parent: str = "") -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and not (isinstance(value, dict) and parent == "properties"):
            continue
        if isinstance(value, dict):
            cleaned[key] = _without_titles(value, key)
        elif isinstance(value, list):
            cleaned[key] = [_without_titles(item, key) if isinstance(item, dict) else item for item in value]
        else:
            cleaned[key] = value
    return cleaned


def _annotated_descriptions(fn: Callable[..., Any]) -> dict[str, str]:
    descriptions: dict[str, str] = {}
    for name, hint in get_type_hints(fn, include_extras=True).items():
        for meta in getattr(hint, "__metadata__", ()):
            if isinstance(meta, str):
                descriptions[name] = meta
                break
            if isinstance(meta, FieldInfo) and meta.description:
                descriptions[name] = meta.description
                break
    return descriptions


def function_parts(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> tuple[type[BaseModel], str, str, dict[str, Any]]:
    """A function as a tool: its arguments model, name, description and parameters schema."""
    doc_description, doc_params = parse_docstring(inspect.getdoc(fn))
    model = arguments_model(fn, {**doc_params, **_annotated_descriptions(fn)})
    return model, name or _model_name(fn), description if description is not None else doc_description, schema_of(model)


def model_parts(
    model: type[BaseModel], *, name: str | None = None, description: str | None = None
) -> tuple[str, str, dict[str, Any]]:
    """A pydantic model as a tool's name, description (its docstring by default) and parameters schema."""
    return (
        name or model.__name__,
        description if description is not None else inspect.cleandoc(model.__doc__ or ""),
        schema_of(model),
    )
