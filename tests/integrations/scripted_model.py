"""A cooperative scripted model behind an OpenAI-compatible server on loopback, for LangChain's integration suite.

Not a mock of llmclient: it speaks OpenAI's chat-completions wire format (a JSON body, or server-sent events with
`stream_options.include_usage`) and answers the way a cooperative model would, from what each request says:

- tools offered and the conversation ends with the user: it calls the tool `tool_choice` names, else the one the
  user's text names, else the first; arguments are built from the tool's JSON schema, filled with the user's
  quoted phrases (strings) and numbers (integers), so `magic_function(3)` is called with `{"input": 3}`;
- a `json_schema` response format: a JSON object built from that schema; `json_object`: an object whose keys are
  the phrases the user quoted ("with 'setup' and 'punchline' keys");
- otherwise prose about the last message; a user who asks it to "think" also gets reasoning (and its tokens);
- usage is counted in words; a prompt that repeats an earlier prompt's messages reports them as cached tokens;
- `/embeddings` answers each input with a vector of its letters' counts (`dimensions` long, 8 by default);
- `failures` scripts errors: each request takes the next status (429, 500, ...) from it while any are left.

Like OpenAI it refuses a strict JSON schema that strict mode rejects (a property not required, objects without
`additionalProperties: false`) and a schema name outside `^[a-zA-Z0-9_-]{1,64}$`, with a 400 error body.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")
_NUMBER = re.compile(r"-?\d+")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class BadRequest(Exception):
    """A request OpenAI would refuse: answered with status 400 and OpenAI's error body."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _images(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")


def words(text: str) -> int:
    """The scripted model's token count: one token per whitespace-separated word."""
    return len(text.split())


@dataclass
class Hints:
    """What the user's last message offers for filling in values: quoted phrases, numbers, and the text itself."""

    text: str
    quoted: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, text: str) -> Hints:
        quoted = [single or double for single, double in _QUOTED.findall(text)]
        return cls(text, quoted, [int(n) for n in _NUMBER.findall(text)])

    def string(self) -> str:
        return self.quoted.pop(0) if self.quoted else (self.text or "something")

    def integer(self) -> int:
        return self.numbers.pop(0) if self.numbers else 1


def value_for(schema: dict[str, Any], hints: Hints, root: dict[str, Any] | None = None) -> Any:
    """A value that satisfies `schema`, filled from the hints."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return value_for((root.get("$defs") or root.get("definitions") or {})[name], hints, root)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [option for option in schema[key] if option.get("type") != "null"]
            return value_for(options[0] if options else {"type": "null"}, hints, root)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: value_for(sub, hints, root) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [value_for(schema.get("items") or {}, hints, root)]
    if kind == "integer":
        return hints.integer()
    if kind == "number":
        return float(hints.integer())
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return hints.string()


def check_strict(schema: dict[str, Any], where: str = "schema") -> None:
    """Refuse what OpenAI's strict mode refuses: every object lists all its properties as required and sets
    `additionalProperties: false` (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas)."""
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if set(schema.get("required") or ()) != set(properties):
            raise BadRequest(f"Invalid schema: In context={where}, 'required' must list every property")
        if schema.get("additionalProperties") is not False:
            raise BadRequest(f"Invalid schema: In context={where}, 'additionalProperties' must be false")
        for name, sub in properties.items():
            check_strict(sub, f"{where}.{name}")
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key) or ():
            check_strict(option, where)
    for key in ("$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_strict(sub, f"{where}.{key}.{name}")
    if isinstance(schema.get("items"), dict):
        check_strict(schema["items"], f"{where}.items")


class ScriptedModel:
    """The answers, as pure functions of the request (plus the prompts seen before, for cached tokens)."""

    def __init__(self) -> None:
        self.prompts: list[list[Any]] = []
        self._lock = threading.Lock()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The `choices[0]` message, finish reason and usage of a chat completion for this request body."""
        messages = body.get("messages") or []
        if not messages:
            raise BadRequest("'messages' must not be empty")
        last = messages[-1]
        hints = Hints.of(_text(last.get("content")))
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "stop"
        call = self._tool_call(body, last, hints)
        if call is not None:
            message["tool_calls"] = [call]
            finish = "tool_calls"
        else:
            message["content"] = self._content(body, messages, hints)
            if "think" in hints.text.lower():
                message["reasoning_content"] = "The user wants me to think, so I think before I answer."
        stops = body.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else stops:
            if message["content"] and stop in message["content"]:
                message["content"] = message["content"].split(stop, 1)[0]
        return {"message": message, "finish_reason": finish, "usage": self._usage(messages, message)}

    def _tool_call(self, body: dict[str, Any], last: dict[str, Any], hints: Hints) -> dict[str, Any] | None:
        tools = [tool["function"] for tool in body.get("tools") or ()]
        choice = body.get("tool_choice")
        if not tools or choice == "none" or last.get("role") != "user":
            return None
        named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        if isinstance(choice, str) and choice not in ("auto", "required"):
            named = choice
        mentioned = [tool for tool in tools if tool["name"] in hints.text]
        tool = next((t for t in tools if t["name"] == named), None) or (mentioned or tools)[0]
        arguments = value_for(tool.get("parameters") or {"type": "object"}, hints)
        number = len(self.prompts)
        return {
            "id": f"call_{number}",
            "type": "function",
            "function": {"name": tool["name"], "arguments": json.dumps(arguments, ensure_ascii=False)},
        }

    def _content(self, body: dict[str, Any], messages: list[dict[str, Any]], hints: Hints) -> str:
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema") or {}
            if not _NAME.match(str(spec.get("name", ""))):
                raise BadRequest("Invalid 'response_format.json_schema.name': must match ^[a-zA-Z0-9_-]{1,64}$")
            if spec.get("strict"):
                check_strict(spec.get("schema") or {})
            return json.dumps(value_for(spec.get("schema") or {}, hints), ensure_ascii=False)
        if response_format.get("type") == "json_object":
            keys = hints.quoted or ["answer"]
            return json.dumps({key: f"{key} about {hints.text[:40]}" for key in keys}, ensure_ascii=False)
        last = messages[-1]
        if last.get("role") == "tool":
            return f"The tool answered: {_text(last.get('content')) or 'nothing'}. That is my answer."
        images = sum(_images(m.get("content")) for m in messages)
        seen = f" I see {images} image{'s' * (images != 1)}." if images else ""
        return f"Hello! You said: {hints.text.strip() or 'nothing'}.{seen}"

    def _usage(self, messages: list[dict[str, Any]], reply: dict[str, Any]) -> dict[str, Any]:
        sizes = [words(_text(message.get("content"))) + 3 for message in messages]
        with self._lock:
            cached_messages = max((_common(seen, messages) for seen in self.prompts), default=0)
            self.prompts.append(messages)
        cached = sum(sizes[: min(cached_messages, len(messages) - 1)])
        reasoning = words(reply.get("reasoning_content") or "")
        calls = reply.get("tool_calls") or []
        output = words(reply["content"] or "") + sum(words(c["function"]["arguments"]) + 2 for c in calls) + reasoning
        usage: dict[str, Any] = {
            "prompt_tokens": sum(sizes),
            "completion_tokens": output,
            "total_tokens": sum(sizes) + output,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        return usage


def _common(a: list[Any], b: list[Any]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def sse_events(completion_id: str, model: str, answer: dict[str, Any], include_usage: bool) -> Iterator[str]:
    """The answer as OpenAI's stream: a role chunk, content word by word (tool calls in pieces), the finish reason,
    then the usage chunk when it was asked for."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "model": model, "system_fingerprint": "fp_scripted"}

    def event(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return json.dumps({**base, "choices": [choice]}, ensure_ascii=False)

    message = answer["message"]
    yield event({"role": "assistant", "content": ""})
    if message.get("reasoning_content"):
        yield event({"reasoning_content": message["reasoning_content"]})
    for word in re.findall(r"\S+\s*", message.get("content") or ""):
        yield event({"content": word})
    for index, call in enumerate(message.get("tool_calls") or ()):
        arguments = call["function"]["arguments"]
        head = {"index": index, "id": call["id"], "type": "function"}
        yield event({"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]})
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            yield event({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield event({}, answer["finish_reason"])
    if include_usage:
        yield json.dumps({**base, "choices": [], "usage": answer["usage"]})
    yield "[DONE]"


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's embeddings answer: per input, its letters counted into `dimensions` buckets (floats)."""
    inputs = body.get("input") or []
    inputs = [inputs] if isinstance(inputs, str) else inputs
    size = int(body.get("dimensions") or 8)
    data = []
    for index, text in enumerate(inputs):
        vector = [0.0] * size
        for letter in str(text):
            vector[ord(letter) % size] += 1.0
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(words(str(text)) for text in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body.get("model", ""), "usage": usage}


class ScriptedServer:
    """`ScriptedModel` served over HTTP/1.1 on 127.0.0.1 from a background thread, while in a `with` block; `url`
    ends in `/v1`, for an OpenAI-compatible client."""

    def __init__(self) -> None:
        self.model = ScriptedModel()
        self.requests: list[dict[str, Any]] = []
        self.failures: list[int] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-model", daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def respond(self, path: str, body: dict[str, Any]) -> tuple[int, str, str]:
        """Status, content type and body for one request."""
        self.requests.append(body)
        if self.failures:
            status = self.failures.pop(0)
            error = {"error": {"message": f"scripted {status}", "type": "server_error", "param": None, "code": None}}
            return status, "application/json", json.dumps(error)
        if path.endswith("/embeddings"):
            return 200, "application/json", json.dumps(embeddings(body))
        if not path.endswith("/chat/completions"):
            return 404, "application/json", '{"error": {"message": "not found"}}'
        try:
            answer = self.model.answer(body)
        except BadRequest as exc:
            error = {"error": {"message": str(exc), "type": "invalid_request_error", "param": None, "code": None}}
            return 400, "application/json", json.dumps(error)
        completion_id = f"chatcmpl-scripted-{len(self.requests)}"
        model = str(body.get("model", ""))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = sse_events(completion_id, model, answer, include_usage)
            return 200, "text/event-stream", "".join(f"data: {event}\n\n" for event in events)
        completion = {
            "id": completion_id,
            "object": "chat.completion",
            "model": model,
            "system_fingerprint": "fp_scripted",
            "choices": [{"index": 0, "message": answer["message"], "finish_reason": answer["finish_reason"]}],
            "usage": answer["usage"],
        }
        return 200, "application/json", json.dumps(completion, ensure_ascii=False)


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real server

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            status, content_type, text = server.respond(self.path.rstrip("/"), body)
            data = text.encode()
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not access logs
            return

    return Handler
