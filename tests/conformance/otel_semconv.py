"""A checker of spans and metrics against the OpenTelemetry GenAI semantic conventions, from artefacts nobody here
wrote: the `opentelemetry-semantic-conventions` package's constants, and the conventions' own model (YAML) and
message JSON schemas, vendored under otel/ (see otel/README.md for their source, commit and license).

`Conventions.load().span_problems(span)` lists every way a finished SDK span departs from them (empty: it conforms):

- a `gen_ai.*` or `openai.*` name the package does not export, or one the model marks deprecated or does not define;
- an attribute the operation's span definition does not list (private `llmclient.*` ones excepted);
- a value of the wrong type (`gen_ai.request.top_k` is a double; `server.port` an int; ...);
- a `required` attribute missing, or a conditionally required one whose condition holds (error.type on an error,
  server.port with server.address, gen_ai.request.stream on a stream, gen_ai.request.model, which we always have);
- a span name or kind other than the definition's;
- captured messages that fail the input/output message JSON schemas.

`metric_problems` does the same for metric points (name, unit, attributes, required ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes, openai_attributes
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.trace import SpanKind, StatusCode

OTEL = Path(__file__).parent / "otel"
OURS = "llmclient."  # private attributes, for what the conventions have nothing for

SPAN_GROUPS = {  # gen_ai.operation.name → the span definition in gen-ai-spans.yaml
    "chat": "span.gen_ai.inference.client",
    "embeddings": "span.gen_ai.embeddings.client",
    "invoke_agent": "span.gen_ai.invoke_agent.internal",
    "execute_tool": "span.gen_ai.execute_tool.internal",
}
OPENAI_GROUP = "span.openai.inference.client"  # for spans whose gen_ai.provider.name is "openai"
# OpenAI's "metrics follow Generative AI metrics with the noted additional attributes" (docs/gen-ai/openai.md,
# v1.41.1): metric_attributes.openai on these two.
OPENAI_METRICS = ("gen_ai.client.token.usage", "gen_ai.client.operation.duration")


def _constants(module: Any) -> set[str]:
    return {value for name, value in vars(module).items() if name.isupper() and isinstance(value, str)}


@dataclass
class Conventions:
    attributes: dict[str, dict[str, Any]]
    """Every attribute the registries define and do not deprecate, by name."""
    groups: dict[str, dict[str, Any]]
    """Span and metric definitions (and the attribute groups they extend), by id."""
    exported: set[str]
    """The attribute and metric names the opentelemetry-semantic-conventions package exports."""
    schemas: dict[str, dict[str, Any]]

    @classmethod
    @cache
    def load(cls) -> Conventions:
        attributes: dict[str, dict[str, Any]] = {}
        for registry in ("gen-ai-registry", "openai-registry", "server-registry", "error-registry"):
            for group in yaml.safe_load((OTEL / f"{registry}.yaml").read_text())["groups"]:
                for attribute in group.get("attributes") or ():
                    if "deprecated" not in attribute:
                        attributes[attribute["id"]] = attribute
        groups = {
            group["id"]: group
            for model in ("gen-ai-spans", "gen-ai-metrics")
            for group in yaml.safe_load((OTEL / f"{model}.yaml").read_text())["groups"]
        }
        exported = _constants(gen_ai_attributes) | _constants(openai_attributes) | _constants(gen_ai_metrics)
        schemas = {
            key: json.loads((OTEL / f"gen-ai-{key.replace('.', '-')}.json").read_text())
            for key in ("input.messages", "output.messages")
        }
        return cls(attributes, groups, exported, schemas)

    def levels(self, group_id: str) -> dict[str, Any]:
        """The attributes a definition lists, with their requirement levels, following `extends` (later wins)."""
        group = self.groups[group_id]
        levels = self.levels(group["extends"]) if "extends" in group else {}
        for attribute in group.get("attributes") or ():
            name = attribute.get("ref") or attribute["id"]
            levels[name] = attribute.get("requirement_level", levels.get(name, "recommended"))
        return levels

    # -- checks -------------------------------------------------------------------------------------------------

    def name_problems(self, names: Any, where: str) -> list[str]:
        problems = []
        for name in names:
            if name.startswith(OURS):
                continue
            if name.startswith(("gen_ai.", "openai.")) and name not in self.exported:
                problems.append(f"{where}: {name} is not a name opentelemetry-semantic-conventions exports")
            elif name not in self.attributes:
                problems.append(f"{where}: {name} is not defined by the conventions (or is deprecated)")
        return problems

    def value_problems(self, attributes: dict[str, Any], where: str) -> list[str]:
        problems = []
        for name, value in attributes.items():
            kind = (self.attributes.get(name) or {}).get("type")
            if kind is not None and not _has_type(value, kind):
                problems.append(f"{where}: {name}={value!r} is not of type {kind if isinstance(kind, str) else 'enum'}")
        return problems

    def span_problems(self, span: ReadableSpan, *, streamed: bool = False) -> list[str]:
        """Every way `span` departs from its operation's definition (see the module docstring)."""
        attributes = dict(span.attributes or {})
        operation = attributes.get("gen_ai.operation.name")
        where = f"span {span.name!r}"
        if operation not in SPAN_GROUPS:
            return [f"{where}: gen_ai.operation.name {operation!r} is not one of {sorted(SPAN_GROUPS)}"]
        openai = operation == "chat" and attributes.get("gen_ai.provider.name") == "openai"
        levels = self.levels(OPENAI_GROUP if openai else SPAN_GROUPS[operation])
        if openai:  # its note: "gen_ai.provider.name MUST be set to "openai""
            levels["gen_ai.provider.name"] = "required"
        problems = self.name_problems(attributes, where) + self.value_problems(attributes, where)
        for name in attributes:
            if not name.startswith(OURS) and name not in levels and name in self.attributes:
                problems.append(f"{where}: {name} is not an attribute of {operation} spans")
        conditions = {
            "error.type": span.status.status_code is StatusCode.ERROR,
            "server.port": "server.address" in attributes,
            "gen_ai.request.stream": streamed,
            "gen_ai.request.model": operation in ("chat", "embeddings"),  # "if available": it always is to us
        }
        for name, level in levels.items():
            needed = level == "required" or (isinstance(level, dict) and conditions.get(name, False))
            if needed and name not in attributes:
                problems.append(f"{where}: {name} is required ({level}) but missing")
        if streamed != ("gen_ai.request.stream" in attributes):
            problems.append(f"{where}: gen_ai.request.stream is set if and only if the request streams")
        problems += _name_and_kind(span, operation, attributes)
        for key, schema in self.schemas.items():
            text = attributes.get(f"gen_ai.{key}")
            if text is not None:
                problems += [
                    f"{where}: gen_ai.{key} fails the conventions' schema: {error.message}"
                    for error in jsonschema.Draft202012Validator(schema).iter_errors(json.loads(str(text)))
                ]
        return problems

    def metric_problems(self, name: str, unit: str, points: list[Any]) -> list[str]:
        """Every way a metric's name, unit and data points depart from its definition in gen-ai-metrics.yaml."""
        where = f"metric {name}"
        group = next((g for g in self.groups.values() if g.get("metric_name") == name), None)
        if name not in self.exported or group is None:
            return [f"{where} is not a metric the conventions define"]
        problems = [] if unit == group["unit"] else [f"{where}: unit {unit!r}, not {group['unit']!r}"]
        for point in points:
            attributes = dict(point.attributes)
            levels = self.levels(group["id"])
            if attributes.get("gen_ai.provider.name") == "openai" and name in OPENAI_METRICS:
                levels.update(self.levels("metric_attributes.openai"))
            problems += self.name_problems(attributes, where) + self.value_problems(attributes, where)
            problems += [f"{where}: {n} is not an attribute of it" for n in attributes if n not in levels]
            conditions = {"server.port": "server.address" in attributes, "gen_ai.request.model": True}
            for attribute, level in levels.items():
                needed = level == "required" or (isinstance(level, dict) and conditions.get(attribute, False))
                if needed and attribute not in attributes:
                    problems.append(f"{where}: {attribute} is required ({level}) but missing")
        return problems


def _name_and_kind(span: ReadableSpan, operation: str, attributes: dict[str, Any]) -> list[str]:
    where = f"span {span.name!r}"
    subject = {
        "chat": attributes.get("gen_ai.request.model"),
        "embeddings": attributes.get("gen_ai.request.model"),
        "execute_tool": attributes.get("gen_ai.tool.name"),
        "invoke_agent": attributes.get("gen_ai.agent.name"),
    }[operation]
    expected = f"{operation} {subject}" if subject else operation
    problems = [] if span.name == expected else [f"{where}: the name should be {expected!r}"]
    # Inference and embeddings spans SHOULD be CLIENT and MAY be INTERNAL for models in the same process.
    kinds = (SpanKind.CLIENT, SpanKind.INTERNAL) if operation in ("chat", "embeddings") else (SpanKind.INTERNAL,)
    if span.kind not in kinds:
        problems.append(f"{where}: kind {span.kind.name}, not one of {[k.name for k in kinds]}")
    return problems


def _has_type(value: Any, kind: Any) -> bool:
    if isinstance(kind, dict):  # an enum: its members are strings (or ints); custom values are allowed
        member = kind["members"][0]["value"]
        return isinstance(value, type(member))
    scalar = {"string": str, "int": int, "double": float, "boolean": bool}
    if kind in scalar:
        return isinstance(value, scalar[kind]) and (kind == "boolean" or not isinstance(value, bool))
    if kind.endswith("[]"):
        return isinstance(value, (list, tuple)) and all(_has_type(item, kind[:-2]) for item in value)
    return kind == "any"
