"""A deterministic, scripted driver with no I/O: for tests, docs and trying llmclient without a key.

It is registered like any other driver (`fake/<any name>`), so code under test uses exactly the same calls:

```python
from llmclient import Client, ToolCall

client = Client(providers={"fake": {"replies": [
    ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),
    "It is sunny in Paris.",
]}})
first = await client.chat("Weather in Paris?", model="fake/scripted")
assert first.tool_calls[0].arguments == {"city": "Paris"}
second = await client.chat("And now?", model="fake/scripted")
assert second.text == "It is sunny in Paris."
await client.aclose()
```

Without a script it echoes the last user message, and `fake/echo` always echoes: a script is for the other model
names (one script shared by them all, or one per model with `replies={"a": [...], "b": [...]}`), so scripting one
model never changes another. Its tokenizer counts whitespace-separated words, exactly, so usage is predictable; its
embeddings are unit vectors derived from a hash of the text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from llmclient.drivers import BaseDriver, Capabilities
from llmclient.errors import ConfigurationError
from llmclient.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedResponse,
    Message,
    TextPart,
    TokenCount,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    import numpy as np

Reply = str | ToolCall | Sequence[ToolCall] | Message | dict[str, Any] | BaseException

_WORD = re.compile(r"\S+\s*|\s+")
ECHO = "echo"  # the model that always echoes, whatever the script
SHARED = ""  # the key of the script every other model shares


def count_words(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


class FakeDriver(BaseDriver):
    """Replies from a script (text, tool calls, messages, or exceptions to raise), else echoes.

    Args:
        replies: What successive calls return, in order (a `BaseException` instance is raised instead): one list
            for every model but `echo`, or a list per model name (`{"planner": [...], "writer": [...]}`), the
            others echoing. A scripted model whose script is used up raises `ConfigurationError`.
        embedding_dimensions: Length of the vectors `embed` returns.
        provider: The provider name reported on responses.
        self_hosted: Price it as a self-hosted provider (unpriced is free): by default only under its own name.
    """

    name: ClassVar[str] = "fake"
    capabilities = Capabilities(self_hosted=True, embed=True)

    def __init__(
        self,
        *,
        replies: Sequence[Reply] | Mapping[str, Sequence[Reply]] = (),
        embedding_dimensions: int = 8,
        provider: str | None = None,
        self_hosted: bool | None = None,
        **_: Any,
    ) -> None:
        super().__init__(provider=provider)
        # Under its own name the fake is free; standing in for another provider (`{"mystery": {"driver": "fake"}}`)
        # it is priced as an unknown provider would be, unless told it is self-hosted.
        hosted = self.provider == self.name if self_hosted is None else self_hosted
        self.capabilities = replace(self.capabilities, self_hosted=hosted)
        # One script per model name; SHARED holds the one every model but `echo` takes from.
        self._scripts: dict[str, list[Reply]] = {}
        if isinstance(replies, Mapping):
            self._scripts = {str(model): list(script) for model, script in replies.items()}
        elif replies:
            self._scripts[SHARED] = list(replies)
        self.embedding_dimensions = embedding_dimensions
        self.requests: list[ChatRequest] = []  # every request, for tests to inspect: a test double keeps them all
        """Every request received, in order, so tests can assert what was sent."""
        self.embed_requests: list[list[str]] = []
        """Every embedding batch received, in order."""

    def add_replies(self, *replies: Reply, model: str | None = None) -> None:
        """Append to the script of `model`, or to the one every model but `echo` shares."""
        self._scripts.setdefault(SHARED if model is None else model, []).extend(replies)

    def _script_for(self, model: str) -> list[Reply] | None:
        if model in self._scripts:
            return self._scripts[model]
        return None if model == ECHO else self._scripts.get(SHARED)

    def _next_message(self, request: ChatRequest) -> Message:
        self.requests.append(request)
        script = self._script_for(request.model)
        if script is None:
            last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
            return Message(role="assistant", content=f"You said: {last_user}")
        if not script:
            raise ConfigurationError(
                f"the fake driver's script for {request.model!r} is used up; add replies with add_replies()",
                provider=self.provider,
                model=request.model,
            )
        reply = script.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, str):
            return Message(role="assistant", content=reply)
        if isinstance(reply, ToolCall):
            return Message(role="assistant", tool_calls=[reply])
        if isinstance(reply, Message):
            return reply
        if isinstance(reply, dict):
            return Message.model_validate({"role": "assistant", **reply})
        return Message(role="assistant", tool_calls=list(reply))

    def _usage(self, request: ChatRequest, message: Message) -> Usage:
        generated = message.text + "".join(call.raw_arguments for call in message.tool_calls or [])
        output = count_words(generated) + len(message.tool_calls or [])
        if request.max_tokens is not None:
            output = min(output, request.max_tokens)
        return Usage(input_tokens=_prompt_words(request.messages, request.tools or []), output_tokens=output)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        message = self._next_message(request)
        return ChatResponse(
            message=message,
            finish_reason="tool_calls" if message.tool_calls else "stop",
            usage=self._usage(request, message),
            model=request.model,
            provider=self.provider,
            request_id=f"fake-{len(self.requests)}",
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        message = self._next_message(request)
        for piece in _WORD.findall(message.text):
            yield ChatChunk(delta=piece)
        for index, call in enumerate(message.tool_calls or []):
            yield ChatChunk(
                tool_call_deltas=[ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.raw_arguments)]
            )
        yield ChatChunk(
            finish_reason="tool_calls" if message.tool_calls else "stop",
            usage=self._usage(request, message),
            model=request.model,
            request_id=f"fake-{len(self.requests)}",
        )

    async def embed(self, model: str, inputs: list[str], *, dimensions: int | None = None) -> EmbedResponse:
        import numpy as np

        width = dimensions or self.embedding_dimensions
        if inputs:
            self.embed_requests.append(list(inputs))
        vectors = (
            np.stack([_hash_vector(text, width) for text in inputs])
            if inputs
            else (np.zeros((0, width), dtype=np.float32))
        )
        usage = Usage(input_tokens=sum(count_words(text) for text in inputs))
        return EmbedResponse(vectors=vectors, usage=usage, model=model, provider=self.provider)

    async def count_tokens(self, model: str, messages: list[Message], tools: list[Tool]) -> TokenCount:
        return TokenCount(tokens=_prompt_words(messages, tools), exact=True, tokenizer="fake-words")

    async def count_text(self, model: str, text: str) -> TokenCount:
        """Words in plain text."""
        return TokenCount(tokens=count_words(text), exact=True, tokenizer="fake-words")

    async def aclose(self) -> None:
        return None


def _prompt_words(messages: Sequence[Message], tools: Sequence[Tool]) -> int:
    words = 0
    for message in messages:
        if isinstance(message.content, list):
            words += sum(count_words(part.text) for part in message.content if isinstance(part, TextPart))
        elif message.content:
            words += count_words(message.content)
    return words + sum(count_words(tool.description) + 1 for tool in tools)


def _hash_vector(text: str, dimensions: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    import numpy as np

    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector
