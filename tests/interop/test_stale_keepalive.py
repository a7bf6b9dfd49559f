"""Stale keep-alive, on every plain server and every backend: each server closes idle connections after 1 s, the
event loop is blocked for longer between 20 calls (retries off), and every call must still get its answer.

The runs start with the suite (conftest.py) and are collected here, last: they spend 25 s blocked in sleeps."""

from __future__ import annotations

from concurrent.futures import Future

from interop.stale import CALLS


def test_calls_after_the_server_closed_the_idle_connection_unseen(
    stale_keepalive_runs: Future[dict[str, tuple[int, int] | BaseException]],
) -> None:
    results = stale_keepalive_runs.result(timeout=120)
    failed = {run: result for run, result in results.items() if not isinstance(result, tuple) or result[0] != CALLS}
    assert not failed, f"calls answered right, of {CALLS}: {failed}"
    # The case happened: every server closed idle connections while a loop was blocked (on a server with a precise
    # keep-alive timer, every time; waitress looks for idle connections once a second when its loop wakes, so it
    # closes some of them).
    reconnections: dict[str, int] = {}
    for run, (_, connections) in results.items():  # type: ignore[misc]
        server = run.split(" over ", 1)[1]
        reconnections[server] = reconnections.get(server, 0) + connections - 1
    assert all(count >= 3 for count in reconnections.values()), f"connections closed by the server: {reconnections}"
