"""The driver under test (`Target`), a conformance case (`Case`), and what every case checks with (`check`,
`expected_cost`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmclient.client import Client
from llmclient.drivers import Capabilities, Driver, driver_class
from llmclient.types import Usage

if TYPE_CHECKING:
    from llmclient.testing.server import ScriptedServer, Wire

PRICE: dict[str, Any] = {
    "input_cost_per_token": "0.000001",
    "cache_read_input_token_cost": "0.0000001",
    "cache_creation_input_token_cost": "0.00000125",
    "output_cost_per_token": "0.000002",
    "max_output_tokens": 1000,
}
"""The price every case gives the model under test (USD per token), so costs are exact whatever the catalog says."""


class ConformanceError(AssertionError):
    """A driver broke the contract; the message says what was expected and what came."""


def check(condition: bool, what: str) -> None:
    """Raise `ConformanceError(what)` unless `condition` (an assert that `python -O` keeps)."""
    if not condition:
        raise ConformanceError(what)


def expected_cost(usage: Usage) -> Decimal:
    """What `usage` costs at `PRICE`."""
    rates = {name: Decimal(value) for name, value in PRICE.items() if name.endswith(("_token", "_cost"))}
    return (
        rates["input_cost_per_token"] * usage.input_tokens
        + rates["cache_read_input_token_cost"] * usage.cached_input_tokens
        + rates["cache_creation_input_token_cost"] * usage.cache_write_tokens
        + rates["output_cost_per_token"] * usage.output_tokens
    )


@dataclass
class Target:
    """The driver under test, and for a driver that talks to a server, the scripted server of its wire.

    Args:
        provider: The provider name the driver serves under (`"anthropic"`, or a plugin's own).
        model: A model name on that provider.
        options: The driver's options (`Client(providers={provider: options})`: for an HTTP driver its
            `base_url` pointing at `server`, and a key), or a driver instance.
        server: The scripted server, started, for a driver that talks to one; None for an in-process engine.
        shared: The driver instance is shared between cases (a loaded local model): cases never close it.
    """

    provider: str
    model: str
    options: Mapping[str, Any] | Driver = field(default_factory=dict)
    server: ScriptedServer | None = None
    shared: bool = False

    @property
    def model_id(self) -> str:
        """`provider/model`."""
        return f"{self.provider}/{self.model}"

    @property
    def capabilities(self) -> Capabilities:
        """The driver's capabilities (the instance's, when `options` is one)."""
        if isinstance(self.options, Mapping):
            found: Capabilities = driver_class(str(self.options.get("driver", self.provider))).capabilities
            return found
        return self.options.capabilities

    @property
    def wire(self) -> Wire | None:
        """The server's wire, for a scripted target."""
        return None if self.server is None else self.server.wire

    def accepted(self, **params: Any) -> dict[str, Any]:
        """The request parameters among `params` the driver accepts (`Capabilities.params`): a case passes only
        those, so a driver that lacks one is not warned about it."""
        return {name: value for name, value in params.items() if name in self.capabilities.params}

    def client(self, **options: Any) -> Client:
        """A client with the driver under test as `provider`, the model priced at `PRICE`, and `options`."""
        options.setdefault("retry", 0)
        return Client(providers={self.provider: self.options}, prices={self.model_id: PRICE}, **options)

    async def close(self, client: Client) -> None:
        """Close a case's client, unless the driver is shared."""
        if not self.shared:
            await client.aclose()

    def scripted(self) -> ScriptedServer:
        """The scripted server (a case that needs one runs only for a target with one)."""
        check(self.server is not None, "this case needs a scripted server of the driver's wire")
        assert self.server is not None
        return self.server


Runner = Callable[[Target], Awaitable[None]]
Applies = Callable[[Capabilities, "Wire | None"], str | None]


@dataclass(frozen=True)
class Case:
    """One conformance case: what it checks, and when it does not apply (a reason, or None when it does).

    Call it with a `Target`: `await case(target)`. `str(case)` is its name, for test ids.
    """

    name: str
    run: Runner
    applies: Applies
    description: str = ""

    def __str__(self) -> str:
        return self.name

    async def __call__(self, target: Target) -> None:
        await self.run(target)

    def reason_not_to_run(self, target: Target) -> str | None:
        """Why the case does not apply to `target` (None when it does)."""
        return self.applies(target.capabilities, target.wire)


async def settled(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether `condition` holds within `timeout` seconds (for what the server sees after the client moved on)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


__all__ = ["PRICE", "Case", "ConformanceError", "Target", "check", "expected_cost", "settled"]
