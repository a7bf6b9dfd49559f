"""What a model group is made of: its `Deployment`s, the `ModelGroup` (strategy, fallbacks, waiting) and the
`Cooldown` periods, plus each deployment's `Health` as the router tracks it. The router is `routing.router`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from llmclient.accounting.prices import PriceEntry
from llmclient.errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    ConflictError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from llmclient.routing.ratelimit import RateLimit, RateLimitStore

if TYPE_CHECKING:
    from llmclient.drivers import Driver

Strategy = Literal["weighted", "least-busy", "latency", "cost", "priority"]
STRATEGIES: tuple[Strategy, ...] = ("weighted", "least-busy", "latency", "cost", "priority")


class Deployment:
    """One place that serves a model group: a model id plus its own provider options, weight and limits.

    Args:
        model: The model id there (`"deepseek/deepseek-flash"`, `"vllm/qwen2.5-7b"`).
        name: How responses, ledger records and errors name it; `"<group>@<index>"` by default.
        weight: Its share of calls under the `"weighted"` strategy.
        rpm: Requests per window it accepts (see `per`); calls wait for capacity or move on.
        tpm: Tokens (prompt + `max_tokens`, corrected to actual usage) per window it accepts.
        per: The rate-limit window in seconds (60: per minute).
        context_window: Prompt plus `max_tokens` it accepts; else the price table's `max_input_tokens` for the prompt.
        price: A price for this place only: USD per million tokens, LiteLLM fields, or a `PriceEntry`.
        driver: A ready driver instance (tests, the fake driver); else one is built from `options`.
        **options: Provider options of its own (`api_key`, `base_url`, `host`, …), over the provider's options in
            `Client(providers=...)`. Without any, it shares the provider's driver (and its environment variables).
    """

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        weight: float = 1.0,
        rpm: int | None = None,
        tpm: int | None = None,
        per: float = 60.0,
        context_window: int | None = None,
        price: PriceEntry | Mapping[str, Any] | float | int | str | None = None,
        driver: Driver | None = None,
        **options: Any,
    ) -> None:
        if weight < 0:
            raise ValueError("weight must be >= 0")
        self.model = model
        self.name = name
        self.weight = weight
        self.limit = RateLimit(rpm, tpm, per) if rpm is not None or tpm is not None else None
        self.context_window = context_window
        self.price = price
        self.driver = driver
        self.options = options

    def __repr__(self) -> str:
        return f"Deployment({self.model!r}, name={self.name!r}, weight={self.weight})"

    @classmethod
    def from_option(cls, value: Deployment | str | Mapping[str, Any]) -> Deployment:
        """A deployment from a model id, a mapping (the configuration file's tables) or itself."""
        if isinstance(value, Deployment):
            return value
        if isinstance(value, str):
            return cls(value)
        options = dict(value)
        if "model" not in options:
            raise ConfigurationError(f"a deployment needs a model id: {sorted(options)}")
        return cls(**options)


@dataclass(frozen=True)
class Cooldown:
    """How long a failing deployment is left out. After it, one call at a time probes it back; a failed probe
    doubles the period. No period is longer than `longest`, a server's `Retry-After` included: one that asks for
    days (`Retry-After: 999999`) or forever (`inf`) is probed back after `longest` like any other.

    Args:
        rate_limited: A 429 without `Retry-After` (with one, that long, up to `longest`).
        out_of_credit: A 402 or quota error: the account needs topping up.
        unreachable: The connection was refused or reset.
        failures: 5xx answers or timeouts in a row that cool a deployment down, for `failing` seconds.
        failing: See `failures`.
        longest: The longest a deployment is left out (10 minutes).
    """

    rate_limited: float = 5.0
    out_of_credit: float = 300.0
    unreachable: float = 5.0
    failures: int = 3
    failing: float = 10.0
    longest: float = 600.0

    def period(self, health: Health, error: BaseException) -> float | None:
        """Seconds `error` takes the deployment out for (None: it stays in)."""
        doubled = 2.0**health.strikes
        if isinstance(error, RateLimitError):
            return min(self.longest, error.retry_after if error.retry_after is not None else self.rate_limited)
        if isinstance(error, QuotaExceededError):
            return min(self.longest, self.out_of_credit * doubled)
        if isinstance(error, (ServerError, ConflictError, APITimeoutError)):
            health.failures += 1
            if health.failures >= self.failures or health.probing:
                return min(self.longest, self.failing * doubled)
            return None
        if isinstance(error, APIConnectionError):
            return min(self.longest, self.unreachable * doubled)
        return None


@dataclass
class ModelGroup:
    """A model group: its deployments, how calls are spread over them, and where they go when all fail.

    Args:
        deployments: `Deployment`s, model ids or mappings of `Deployment`'s arguments.
        strategy: `"weighted"` (random by weight), `"least-busy"` (fewest in flight), `"latency"` (lowest
            observed), `"cost"` (cheapest for this prompt) or `"priority"` (in order).
        fallbacks: Groups tried, in order, once this group's deployments are all out or have failed.
        max_wait: Seconds a call may wait for rate-limit capacity (0: fail at once with `RateLimitError`).
        cooldown: The `Cooldown` periods of this group's deployments.
        store: Where its deployments' rate-limit windows live: a `RateLimitStore`, or a `postgresql://` URL to
            share them with every process using that database; None: the router's (this process by default).
    """

    deployments: Sequence[Deployment | str | Mapping[str, Any]]
    strategy: Strategy = "weighted"
    fallbacks: Sequence[str] = ()
    max_wait: float = 30.0
    cooldown: Cooldown = field(default_factory=Cooldown)
    store: RateLimitStore | str | None = None

    @classmethod
    def from_option(cls, value: ModelGroup | Sequence[Any] | Mapping[str, Any]) -> ModelGroup:
        """A group from a list of deployments, a mapping (the configuration file's table) or itself."""
        if isinstance(value, ModelGroup):
            return value
        if isinstance(value, Mapping):
            options = dict(value)
            if isinstance(options.get("cooldown"), Mapping):
                options["cooldown"] = Cooldown(**options["cooldown"])
            return cls(**options)
        return cls(list(value))


@dataclass
class Health:
    """A deployment's state: cooling until when, failures in a row, in flight, observed latency."""

    until: float = 0.0
    failures: int = 0
    strikes: int = 0
    probing: bool = False
    in_flight: int = 0
    latency: float | None = None

    def available(self, now: float) -> bool:
        return now >= self.until and not (self.probing and self.in_flight > 0)
