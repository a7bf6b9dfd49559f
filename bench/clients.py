"""The clients bench/run.py measures against bench/server.py, each doing the same three jobs.

Every client makes the same requests with the same bodies and does the same useful work with the answer: `chat`
returns the reply's text, `stream` the text joined from its deltas, `embed` a float32 matrix. A client that cannot
do a job (or is not installed) raises `Unavailable`, and its row says why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from server import MODEL

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

PROMPT = "hi"
LLMCLIENT_MODEL = f"openai-compatible/{MODEL}"
# Exactly what OpenAICompatibleDriver._to_wire sends for `chat(PROMPT)`.
WIRE_BODY: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
STREAM_BODY: dict[str, Any] = {**WIRE_BODY, "stream": True, "stream_options": {"include_usage": True}}
FREE = {LLMCLIENT_MODEL: 0}


class Unavailable(Exception):
    """This client cannot run this job here (not installed, or no such feature)."""


def _matrix(items: list[dict[str, Any]]) -> npt.NDArray[np.float32]:
    import numpy as np

    return np.array([item["embedding"] for item in items], dtype=np.float32)


def _delta(line: bytes | str) -> str:
    """The content delta of one SSE line (`data: {...}`), or "" for anything else."""
    if isinstance(line, bytes):
        line = line.decode()
    if not line.startswith("data: ") or line.startswith("data: [DONE]"):
        return ""
    choices = json.loads(line[6:]).get("choices") or ()
    return "".join((choice.get("delta") or {}).get("content") or "" for choice in choices)


class Client:
    """One client under test."""

    name = ""

    async def chat(self) -> str:
        raise Unavailable("no chat")

    async def stream(self) -> str:
        raise Unavailable("no stream")

    async def embed(self, texts: list[str]) -> Any:
        raise Unavailable("no embeddings")

    async def aclose(self) -> None:
        """Close the connection pool."""


class RawAiohttp(Client):
    """The limit: `aiohttp.ClientSession.post` + `json()` (streams: `async for line in response.content`)."""

    name = "raw aiohttp"

    def __init__(self, base_url: str) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        self.base_url = base_url

    async def chat(self) -> str:
        async with self.session.post(f"{self.base_url}/chat/completions", json=WIRE_BODY) as response:
            response.raise_for_status()
            text: str = (await response.json())["choices"][0]["message"]["content"]
            return text

    async def stream(self) -> str:
        parts = []
        async with self.session.post(f"{self.base_url}/chat/completions", json=STREAM_BODY) as response:
            response.raise_for_status()
            async for line in response.content:
                parts.append(_delta(line))
        return "".join(parts)

    async def embed(self, texts: list[str]) -> Any:
        body = {"model": MODEL, "input": texts, "encoding_format": "float"}
        async with self.session.post(f"{self.base_url}/embeddings", json=body) as response:
            response.raise_for_status()
            return _matrix((await response.json())["data"])

    async def aclose(self) -> None:
        await self.session.close()


class RawHttpx(Client):
    """`httpx.AsyncClient.post` + `.json()` with httpx's defaults (streams: `aiter_lines`)."""

    name = "raw httpx"

    def __init__(self, base_url: str) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=base_url, transport=self._transport())

    def _transport(self) -> Any:
        return None

    async def chat(self) -> str:
        response = await self.client.post("/chat/completions", json=WIRE_BODY)
        response.raise_for_status()
        text: str = response.json()["choices"][0]["message"]["content"]
        return text

    async def stream(self) -> str:
        parts = []
        async with self.client.stream("POST", "/chat/completions", json=STREAM_BODY) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                parts.append(_delta(line))
        return "".join(parts)

    async def embed(self, texts: list[str]) -> Any:
        body = {"model": MODEL, "input": texts, "encoding_format": "float"}
        response = await self.client.post("/embeddings", json=body)
        response.raise_for_status()
        return _matrix(response.json()["data"])

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpxOverAiohttp(RawHttpx):
    """httpx's client over `httpx_aiohttp.AiohttpTransport` (the `httpx-aiohttp` package)."""

    name = "httpx + httpx-aiohttp"

    def _transport(self) -> Any:
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError as exc:
            raise Unavailable("httpx-aiohttp is not installed") from exc
        return AiohttpTransport()


class LLMClient(Client):
    """`Client.chat` / `stream` / `embed` through the openai-compatible driver, as the README shows them."""

    name = "llmclient"
    backend: str | None = None  # the default configuration (the native backend)

    def __init__(self, base_url: str) -> None:
        from llmclient import Client as LLM

        options: dict[str, Any] = {"base_url": base_url}
        if self.backend is not None:
            options["http"] = {"backend": self.backend}
        self.client = LLM(providers={"openai-compatible": options}, prices=FREE)

    async def chat(self) -> str:
        return (await self.client.chat(PROMPT, model=LLMCLIENT_MODEL)).text

    async def stream(self) -> str:
        return "".join([chunk.delta async for chunk in self.client.stream(PROMPT, model=LLMCLIENT_MODEL)])

    async def embed(self, texts: list[str]) -> Any:
        return (await self.client.embed(texts, model=LLMCLIENT_MODEL)).vectors

    async def check(self) -> None:
        """Fail loudly if usage was estimated instead of read from the server."""
        reply = await self.client.chat(PROMPT, model=LLMCLIENT_MODEL)
        if reply.usage.estimated or not reply.usage.output_tokens:
            raise RuntimeError(f"llmclient did not read the server's usage: {reply!r}")

    async def aclose(self) -> None:
        await self.client.aclose()


class LLMClientAiohttp(LLMClient):
    """llmclient with `HTTPOptions(backend="aiohttp")`, the backend a proxied client uses."""

    name = "llmclient (aiohttp backend)"
    backend = "aiohttp"


class LLMClientHttpx(LLMClient):
    """llmclient with `HTTPOptions(backend="httpx")`: what the default aiohttp backend saves."""

    name = "llmclient (httpx backend)"
    backend = "httpx"


class OpenAISDK(Client):
    """The official SDK's `chat.completions.create` / `embeddings.create`, with its defaults."""

    name = "openai SDK"

    def __init__(self, base_url: str) -> None:
        try:
            import openai
        except ImportError as exc:
            raise Unavailable("openai is not installed") from exc
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key="x", http_client=self._http_client(openai))

    def _http_client(self, openai: Any) -> Any:
        return None

    async def chat(self) -> str:
        completion = await self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}]
        )
        return completion.choices[0].message.content or ""

    async def stream(self) -> str:
        stream = await self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        parts = []
        async for event in stream:
            parts += [choice.delta.content or "" for choice in event.choices]
        return "".join(parts)

    async def embed(self, texts: list[str]) -> Any:
        # The SDK asks for base64 by default and decodes it with numpy; the matrix is built the same way.
        response = await self.client.embeddings.create(model=MODEL, input=texts)
        return _matrix([{"embedding": item.embedding} for item in response.data])

    async def aclose(self) -> None:
        await self.client.close()


class OpenAISDKAiohttp(OpenAISDK):
    """The official SDK with `http_client=DefaultAioHttpClient()` (its aiohttp transport)."""

    name = "openai SDK (aiohttp)"

    def _http_client(self, openai: Any) -> Any:
        if not hasattr(openai, "DefaultAioHttpClient"):
            raise Unavailable("this openai version has no DefaultAioHttpClient")
        try:
            return openai.DefaultAioHttpClient()
        except RuntimeError as exc:  # raised when its aiohttp extra is missing
            raise Unavailable(str(exc)) from exc


class LiteLLM(Client):
    """`litellm.acompletion` / `aembedding` against the same server (only where litellm is installed)."""

    name = "litellm"

    def __init__(self, base_url: str) -> None:
        try:
            import litellm
        except ImportError as exc:
            raise Unavailable(
                "litellm is not installed (not a dependency: `pip install litellm` to add this row)"
            ) from exc
        self.litellm = litellm
        self.base_url = base_url

    async def chat(self) -> str:
        response = await self.litellm.acompletion(
            model=f"openai/{MODEL}", api_base=self.base_url, api_key="x", messages=[{"role": "user", "content": PROMPT}]
        )
        return str(response.choices[0].message.content)

    async def stream(self) -> str:
        response = await self.litellm.acompletion(
            model=f"openai/{MODEL}",
            api_base=self.base_url,
            api_key="x",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
        )
        parts = []
        async for event in response:
            parts += [choice.delta.content or "" for choice in event.choices]
        return "".join(parts)

    async def embed(self, texts: list[str]) -> Any:
        response = await self.litellm.aembedding(
            model=f"openai/{MODEL}", api_base=self.base_url, api_key="x", input=texts, encoding_format="float"
        )
        return _matrix(response.data)


CLIENTS: tuple[Callable[[str], Client], ...] = (
    RawAiohttp,
    RawHttpx,
    HttpxOverAiohttp,
    LLMClient,
    LLMClientAiohttp,
    LLMClientHttpx,
    OpenAISDK,
    OpenAISDKAiohttp,
    LiteLLM,
)
BASELINE = RawAiohttp.name
