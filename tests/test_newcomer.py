"""The first ten minutes, as a newcomer with a core-only install lives them: none of the extras importable
(transformers, llama.cpp, LangChain, OpenTelemetry, bpe-openai, tokenizers, aiohttp), every warning an error, a real
server on loopback. tests/test_install.py does the same from the built wheel in a fresh venv."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Makes the optional libraries unimportable, as they are after `pip install llmclient` alone.
CORE_ONLY = """
import importlib.abc, sys
class CoreOnly(importlib.abc.MetaPathFinder):
    BLOCKED = {"torch", "transformers", "llama_cpp", "langchain_core", "opentelemetry", "tqdm", "rich", "bpe_openai",
               "tokenizers", "aiohttp"}
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, CoreOnly())
"""

SCRIPT = """
import asyncio, json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Server(BaseHTTPRequestHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        body = json.dumps({
            "object": "list", "model": "e5", "usage": {"prompt_tokens": 2, "total_tokens": 2},
            "data": [{"object": "embedding", "index": i, "embedding": [1.0, 0]} for i in range(len(request["input"]))],
        }).encode() if self.path.endswith("/embeddings") else json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "smollm2",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
threading.Thread(target=server.serve_forever, daemon=True).start()

from llmclient import Client, SyncClient

async def main():
    base_url = f"http://127.0.0.1:{server.server_port}/v1"
    # As docs/providers/openai-compatible.md shows: the server's model is priced (0), since an OpenAI-compatible
    # endpoint may be a hosted gateway, where an unknown price is not free (and warns).
    providers = {"openai-compatible": {"base_url": base_url}}
    async with Client(providers=providers, prices={"openai-compatible/smollm2": 0}) as client:
        reply = await client.chat("Capital of France?", model="openai-compatible/smollm2")
        assert (reply.text, reply.usage.output_tokens, reply.cost.total) == ("Paris.", 2, 0), reply
        async with Client() as offline:  # the README's first example: the fake driver
            assert (await offline.chat("Hello", model="fake/echo")).text == "You said: Hello"
        # Counts are exact in the core install, as quickstart and counting.md say: no extra, no download, no warning.
        async with Client() as counter:
            hello = [{"role": "user", "content": "Hello, world!"}]
            found = [tuple(await counter.count_tokens(hello, model="openai/gpt-4"))]
            for model in ("openai/gpt-4o", "deepseek/deepseek-v4-pro"):
                found.append(tuple(await counter.count_tokens("Hello, world!", model=model)))
            assert [tuple(v for _, v in count) for count in found] == [
                (11, True, "cl100k_base"), (4, True, "o200k_base"), (4, True, "deepseek-v4")
            ], found
        # No tokenizer warning where nothing was asked to be counted: the first embed, a budget, a failed call.
        prices = {"openai-compatible/smollm2": {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002},
                  "openai-compatible/e5": {"input_cost_per_token": 0, "max_input_tokens": 512, "mode": "embedding"}}
        async with Client(providers=providers, prices=prices) as client:
            assert (await client.embed(["a", "b"], model="openai-compatible/e5")).vectors.shape == (2, 2)
            async with client.budget(usd="1"):
                await client.chat("Capital of France?", model="openai-compatible/smollm2", max_tokens=5)
        from llmclient import APIConnectionError
        async with Client(providers={"ollama": {"host": "http://127.0.0.1:9"}}, retry=0) as client:
            try:
                await client.chat("hi", model="ollama/qwen2:1.5b")
            except APIConnectionError:
                pass

asyncio.run(main())
with SyncClient(default_model="fake/echo") as client:
    assert client.chat("hi").text == "You said: hi"
print("ok")
"""


def test_a_core_only_install_runs_the_first_examples_without_a_warning() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONWARNINGS": "error"}
    env.pop("LLMCLIENT_MODEL", None)
    code = textwrap.dedent(CORE_ONLY) + textwrap.dedent(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
