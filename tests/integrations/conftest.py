"""What LangChain's standard suites run here, and why a few of their tests are deselected rather than run.

Deselected tests are not skipped: they are never collected, so `make test` reports none of them. The one left is a
test the suite gates on a tool this project does not use (VCR cassettes).
"""

from __future__ import annotations

import pytest

DESELECTED = {
    "test_stream_time": "a VCR-cassette benchmark: timings live in bench/, and tests never record HTTP cassettes",
}
"""The suite's tests that cannot apply to ChatLLMClient, by name, with the reason."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        suite_test = item.path.name == "test_langchain_suite.py" and getattr(item, "originalname", "") in DESELECTED
        (dropped if suite_test else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
