"""The servers of the interop suite, started together in their own processes (`serve.py`) and stopped together.

Each is named for what it is (`uvicorn-httptools`, `waitress`, ...) and reached at `Server.url`. Which ones run,
and how each is configured, is `FLEET`; a test takes them from the session fixture `fleet` (conftest.py).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

HERE = Path(__file__).parent
KEEPALIVE_S = 1.0
"""Every server's keep-alive timeout: an idle connection is closed by the server after a second."""


@dataclass(frozen=True)
class Spec:
    kind: str
    args: tuple[str, ...] = ()
    tls: bool = False
    http: bool = True  # answers the app's GET /v1/models (the proxy only relays)


# The plain servers every answer test runs against, each with a 1 s keep-alive timeout (http.server's HTTP/1.0
# ends every connection after its answer).
PLAIN = {
    "uvicorn-httptools": Spec("uvicorn-httptools"),
    "uvicorn-h11": Spec("uvicorn-h11"),
    "hypercorn": Spec("hypercorn"),
    "granian": Spec("granian"),
    "waitress": Spec("waitress"),
    "aiohttp.web": Spec("aiohttp"),
    "http.server HTTP/1.0": Spec("http.server-1.0"),
}
FLEET = {
    **PLAIN,
    # Complete HTTP/1.1 answers without `connection: close`, then the close (a worker recycling after each one).
    "http.server closing after each answer": Spec("http.server-close"),
    # waitress's default connection limit, its idle connections kept for 120 s (its default `channel_timeout`).
    "waitress, 100 connections": Spec("waitress", ("--limit", "100", "--keepalive", "120")),
    "hypercorn over TLS": Spec("hypercorn", tls=True),
    "granian over TLS": Spec("granian", tls=True),
    # A forward proxy (HTTP and CONNECT) for HTTP_PROXY, HTTPS_PROXY and NO_PROXY; its access log is its output.
    "proxy.py": Spec("proxy.py", http=False),
    # Not from PyPI: answers whose header line never ends, sent fast or a byte at a time (test_heads.py).
    "endless header": Spec("endless-header", http=False),
    "endless header, slow": Spec("endless-header-slow", http=False),
}


@dataclass
class Server:
    name: str
    spec: Spec
    process: subprocess.Popen[bytes]
    output: Path
    port: int = 0
    ca: Path | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.spec.tls else 'http'}://127.0.0.1:{self.port}/v1"


@dataclass
class Authority:
    """A throwaway CA and the certificate it issued for 127.0.0.1 and localhost."""

    bundle: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, folder: Path) -> Authority:
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        bundle, cert, key = folder / "ca.pem", folder / "server.pem", folder / "server.key"
        ca.cert_pem.write_to_path(str(bundle))
        issued.cert_chain_pems[0].write_to_path(str(cert))
        for extra in issued.cert_chain_pems[1:]:
            extra.write_to_path(str(cert), append=True)
        private = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
        key.write_bytes(  # PKCS#8: the one form granian reads
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cls(bundle, cert, key)


def start(fleet: dict[str, Spec], authority: Authority, folder: Path, timeout: float = 30.0) -> dict[str, Server]:
    """Start every server at once and return when all answer (or raise, naming those that did not). Each one's
    output goes to a file in `folder` (a pipe nobody reads would stop a server that logs)."""
    servers: dict[str, Server] = {}
    for number, (name, spec) in enumerate(fleet.items()):
        command = [sys.executable, str(HERE / "serve.py"), spec.kind, "--keepalive", str(KEEPALIVE_S), *spec.args]
        if spec.tls:
            command += ["--cert", str(authority.cert), "--key", str(authority.key)]
        output = folder / f"server-{number}.log"
        with output.open("w") as sink:  # stdin stays open while the suite runs: the server stops when it closes
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        servers[name] = Server(name, spec, process, output, ca=authority.bundle if spec.tls else None)
    try:
        deadline = time.monotonic() + timeout
        for server in servers.values():
            server.port = announced_port(server, deadline)
        for server in servers.values():
            wait_until_answering(server, authority, deadline)
    except BaseException:
        stop(servers)
        raise
    return servers


def announced_port(server: Server, deadline: float) -> int:
    """The port in the launcher's line `PORT <n>`."""
    while True:
        text = server.output.read_text()
        found = re.search(r"^PORT (\d+)$", text, re.MULTILINE)
        if found:
            return int(found[1])
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise RuntimeError(f"{server.name} did not start: {text[-2000:]}")
        time.sleep(0.02)


def wait_until_answering(server: Server, authority: Authority, deadline: float) -> None:
    while not server.spec.http:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    while True:
        context = ssl.create_default_context(cafile=str(authority.bundle)) if server.spec.tls else None
        connection = (
            http.client.HTTPSConnection("127.0.0.1", server.port, timeout=2, context=context)
            if context
            else http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        )
        try:
            connection.request("GET", "/v1/models")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} does not answer on port {server.port}: {server.output.read_text()[-2000:]}"
            )
        time.sleep(0.05)


def stop(servers: dict[str, Server]) -> None:
    """Stop every server (their process groups: granian's workers too), then wait for them."""
    for server in servers.values():
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)
        if server.process.stdin is not None:
            server.process.stdin.close()
    for server in servers.values():
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()
