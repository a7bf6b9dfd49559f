"""Start one server of the interop suite on loopback and print `PORT <n>`: `python serve.py KIND [options]`.

The listening socket is bound here (port 0) and handed to the server where it takes one, so no port is guessed;
granian takes a port number only, so it gets a port found free a moment before. Every server is configured for the
suite: short keep-alive timeouts (`--keepalive`), waitress's connection limit (`--limit`), TLS (`--cert`, `--key`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).parent


def listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    return sock


def uvicorn(options: argparse.Namespace, http: str) -> None:
    import uvicorn

    from interop.app import asgi

    tls = {"ssl_certfile": options.cert, "ssl_keyfile": options.key} if options.cert else {}
    config = uvicorn.Config(
        asgi, http=http, lifespan="off", log_level="warning", timeout_keep_alive=options.keepalive, **tls
    )
    uvicorn.Server(config).run(sockets=[listener()])


def hypercorn(options: argparse.Namespace) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from interop.app import asgi

    sock = listener()
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.keep_alive_timeout = options.keepalive
    config.loglevel = "WARNING"
    if options.cert:
        config.certfile, config.keyfile = options.cert, options.key
    asyncio.run(serve(asgi, config))  # type: ignore[arg-type]


def granian(options: argparse.Namespace) -> None:
    sock = listener()
    port = sock.getsockname()[1]
    sock.close()  # granian binds the port itself
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--http", "1", "--no-ws"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--runtime-threads", "1"]
    command += ["--log-level", "warning", "--working-dir", str(HERE.parent)]
    # hyper's header read timeout also runs while a kept-alive connection waits for its next request
    command += ["--http1-header-read-timeout", str(int(options.keepalive * 1000))]
    if options.cert:
        command += ["--ssl-certificate", options.cert, "--ssl-keyfile", options.key]
    subprocess.run([*command, "interop.app:asgi"], check=False)  # in this process group: stopped with it


def waitress(options: argparse.Namespace) -> None:
    import waitress

    from interop.app import wsgi

    # Idle connections are closed `channel_timeout` after their last request, looked for every `cleanup_interval`.
    timeout = max(1, round(options.keepalive))
    server = waitress.create_server(
        wsgi,
        sockets=[listener()],
        channel_timeout=timeout,
        cleanup_interval=timeout,
        connection_limit=options.limit,
        threads=4,
    )
    server.run()


def aiohttp(options: argparse.Namespace) -> None:
    from aiohttp import web

    from interop.app import aiohttp_handler

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", aiohttp_handler)
    web.run_app(app, sock=listener(), keepalive_timeout=options.keepalive, print=None, access_log=None)


def stdlib(options: argparse.Namespace, version: str) -> None:
    from interop.app import Handler

    class Served(Handler):
        protocol_version = version
        close_after_answer = version == "HTTP/1.1"

    class Listening(ThreadingHTTPServer):
        request_queue_size = 128  # not 5: calls at once would overflow the backlog and be reset, unaccepted

    server = Listening(("127.0.0.1", 0), Served)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


def forward_proxy(options: argparse.Namespace) -> None:
    import time

    import proxy

    flags = ["--hostname", "127.0.0.1", "--port", "0", "--num-acceptors", "1", "--num-workers", "1"]
    with proxy.Proxy([*flags, "--log-level", "INFO"]) as running:  # its access log goes to stdout
        print(f"PORT {running.flags.port}", flush=True)
        while True:
            time.sleep(3600)


def endless_header(options: argparse.Namespace, slow: bool) -> None:
    """Not a server from PyPI: an answer whose header line never ends, as fast as the client reads or a byte every
    50 ms, until the client goes away."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-endless: "

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            while True:
                if slow:
                    await asyncio.sleep(0.05)
                writer.write(b"a" if slow else b"a" * 16384)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up on it: what the test waits for
        finally:
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(serve, sock=listener())
        await server.serve_forever()

    asyncio.run(run())


def stop_with_the_suite() -> None:
    """Stop this server's whole process group when the suite's end of stdin closes: when the suite stops it, and
    when the suite is killed before it could (no server outlives its test run)."""

    def watch() -> None:
        # The descriptor, not sys.stdin: a thread blocked in sys.stdin holds its lock, and a process forked
        # meanwhile (proxy.py's workers) would deadlock closing its copy of stdin.
        while os.read(0, 4096):
            pass
        os.killpg(os.getpgrp(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    stop_with_the_suite()
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("--keepalive", type=float, default=1.0)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    options = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))  # tests/: the app is interop.app
    starts = {
        "uvicorn-httptools": lambda: uvicorn(options, "httptools"),
        "uvicorn-h11": lambda: uvicorn(options, "h11"),
        "hypercorn": lambda: hypercorn(options),
        "granian": lambda: granian(options),
        "waitress": lambda: waitress(options),
        "aiohttp": lambda: aiohttp(options),
        "http.server-1.0": lambda: stdlib(options, "HTTP/1.0"),
        "http.server-close": lambda: stdlib(options, "HTTP/1.1"),
        "proxy.py": lambda: forward_proxy(options),
        "endless-header": lambda: endless_header(options, slow=False),
        "endless-header-slow": lambda: endless_header(options, slow=True),
    }
    starts[options.kind]()


if __name__ == "__main__":
    main()
