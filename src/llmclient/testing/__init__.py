"""The driver conformance suite: the cases every driver, built-in or plugin, passes against its wire.

A driver that talks to a server runs every case against a `ScriptedServer` speaking its wire (a `Wire` writes the
cases' scripted replies and errors in the provider's format); an in-process engine runs the cases that need no
script. `conformance_cases(target)` picks the cases that apply to a target from its driver's `Capabilities` and its
wire; `not_applicable(target)` says which do not, and why. A test module parametrizes over them:

```python
import pytest

from llmclient.testing import ScriptedServer, Target, conformance_cases
from llmclient.testing.wires import OpenAIWire


def acme(server):  # the driver under test, pointed at the scripted server of its wire
    return Target("openai-compatible", "m", {"base_url": f"{server.url}/v1", "api_key": "sk-test"}, server)


@pytest.mark.parametrize("case", conformance_cases(acme(ScriptedServer(OpenAIWire()))), ids=str)
async def test_conformance(case):
    async with ScriptedServer(OpenAIWire()) as server:
        await case(acme(server))
```

The cases are plain async functions that raise `ConformanceError` (an `AssertionError`) with what was expected
and what came; they import nothing from pytest. See docs/drivers.md.
"""

from __future__ import annotations

from llmclient.drivers import Capabilities
from llmclient.testing import cases, local_cases
from llmclient.testing.script import Failure, FailureKind, Reply, ScriptedCall, ScriptedUsage, Step
from llmclient.testing.server import Answer, Check, Request, ScriptedServer, Wire
from llmclient.testing.target import PRICE, Case, ConformanceError, Target, check, expected_cost

_NO_SERVER = "an in-process engine has no server to script (no wire, statuses or error bodies)"


def _scripted(capabilities: Capabilities, wire: Wire | None) -> str | None:
    return _NO_SERVER if wire is None else None


def _in_process(capabilities: Capabilities, wire: Wire | None) -> str | None:
    return None if wire is None else "the scripted case of the same kind runs instead"


def _streams(capabilities: Capabilities, wire: Wire | None) -> str | None:
    return _scripted(capabilities, wire) or (None if capabilities.stream else "the driver does not stream")


def _tools(capabilities: Capabilities, wire: Wire | None) -> str | None:
    return _scripted(capabilities, wire) or (None if capabilities.tools else "the driver takes no tools")


def _streamed_tools(capabilities: Capabilities, wire: Wire | None) -> str | None:
    return _tools(capabilities, wire) or _streams(capabilities, wire)


def _usage_details(capabilities: Capabilities, wire: Wire | None) -> str | None:
    if wire is None:
        return _NO_SERVER
    return None if wire.reports else "its wire reports no cached, cache-write or reasoning tokens"


def _local_streams(capabilities: Capabilities, wire: Wire | None) -> str | None:
    return _in_process(capabilities, wire) or (None if capabilities.stream else "the driver does not stream")


CASES: tuple[Case, ...] = (
    Case("chat", cases.chat, _scripted),
    Case("stream", cases.stream, _streams),
    Case("parallel_tool_calls", cases.parallel_tool_calls, _tools),
    Case("streamed_tool_calls", cases.streamed_tool_calls, _streamed_tools),
    Case("tool_results", cases.tool_results, _tools),
    Case("usage_details", cases.usage_details, _usage_details),
    Case("error_auth", cases.error_auth, _scripted),
    Case("error_unknown_model", cases.error_unknown_model, _scripted),
    Case("error_rate_limit", cases.error_rate_limit, _scripted),
    Case("error_server_retried", cases.error_server_retried, _scripted),
    Case("error_context_window", cases.error_context_window, _scripted),
    Case("error_overloaded_retried", cases.error_overloaded_retried, _scripted),
    Case("cancellation", cases.cancellation, _streams),
    Case("budgets", cases.budgets, _scripted),
    Case("ledger", cases.ledger, _streams),
    Case("local_chat", local_cases.local_chat, _in_process),
    Case("local_stream", local_cases.local_stream, _local_streams),
    Case("local_cancellation", local_cases.local_cancellation, _local_streams),
    Case("local_budgets", local_cases.local_budgets, _in_process),
    Case("local_ledger", local_cases.local_ledger, _local_streams),
)
"""Every case, scripted ones first; each knows when it does not apply."""


def conformance_cases(target: Target) -> list[Case]:
    """The cases that apply to `target`: by its driver's capabilities, and whether it has a scripted server (and
    what that server's wire reports)."""
    return [case for case in CASES if case.reason_not_to_run(target) is None]


def not_applicable(target: Target) -> dict[str, str]:
    """The cases that do not apply to `target`, each with the reason."""
    reasons = {case.name: case.reason_not_to_run(target) for case in CASES}
    return {name: reason for name, reason in reasons.items() if reason is not None}


__all__ = [
    "CASES",
    "PRICE",
    "Answer",
    "Case",
    "Check",
    "ConformanceError",
    "Failure",
    "FailureKind",
    "Reply",
    "Request",
    "ScriptedCall",
    "ScriptedServer",
    "ScriptedUsage",
    "Step",
    "Target",
    "Wire",
    "check",
    "conformance_cases",
    "expected_cost",
    "not_applicable",
]
