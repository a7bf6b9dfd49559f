"""The interop suite's servers: started once per session, all at once, and stopped at its end."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from interop.servers import FLEET, Authority, Server, start, stop
from interop.stale import blocked_loop_runs


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    folder = tmp_path_factory.mktemp("interop")
    servers = start(FLEET, Authority.create(folder), folder)
    try:
        yield servers
    finally:
        stop(servers)


@pytest.fixture(scope="session")
def stale_keepalive_runs(fleet: dict[str, Server]) -> Iterator[Future[dict[str, tuple[int, int] | BaseException]]]:
    """The stale keep-alive runs (test_stale_keepalive.py), started in the background: they spend their time
    blocked in `time.sleep`, so the rest of the suite runs meanwhile."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor.submit(blocked_loop_runs, fleet)


@pytest.fixture(scope="session", autouse=True)
def _start_stale_keepalive_runs_early(request: pytest.FixtureRequest) -> None:
    if any(item.path.name == "test_stale_keepalive.py" for item in request.session.items):
        request.getfixturevalue("stale_keepalive_runs")
