"""Routing: a model group's calls spread over its deployments, moved on failure, kept out of failing places and
under each place's rate limits.

```python
from llmclient import Client, FakeDriver, RateLimitError
from llmclient.routing import Deployment

busy = FakeDriver(replies=[RateLimitError("slow down", status=429, retry_after=30)])
async with Client(routes={"chat": [Deployment("fake/a", driver=busy), Deployment("fake/b")]}) as client:
    replies = [await client.chat("hi", model="chat", temperature=0) for _ in range(3)]
assert {reply.deployment for reply in replies} == {"chat@1"}  # chat@0 answered 429 once, then cooled down
```

`Router` holds a client's groups and each deployment's health (cooldowns, in-flight count, observed latency);
`Route` is one call's way through them, driven by `RetryPolicy`'s counts under the call's deadline
(`lifecycle.flow.Lifecycle.send`); the `Routing` step picks the first deployment at admission and settles rate
limits at the end.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from llmclient.accounting.catalog import PriceTable
from llmclient.accounting.prices import PriceEntry
from llmclient.errors import (
    APIConnectionError,
    APIError,
    ConfigurationError,
    ConflictError,
    ContextWindowExceededError,
    LLMClientError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from llmclient.lifecycle.call import Call, Outcome
from llmclient.lifecycle.steps import Step
from llmclient.model_ids import ModelId
from llmclient.routing.groups import STRATEGIES, Cooldown, Deployment, Health, ModelGroup
from llmclient.routing.ratelimit import Admission, MemoryRateLimitStore, RateLimit, RateLimitStore
from llmclient.types import ChatResponse

if TYPE_CHECKING:
    from llmclient.lifecycle.resolve import Drivers

T = TypeVar("T")
_UNLIMITED = RateLimit()


@dataclass(eq=False)
class Target:
    """A deployment as the router uses it: resolved id, registered driver name, price, window and tier."""

    name: str
    model_id: ModelId
    weight: float
    limit: RateLimit | None
    context_window: int | None
    price: PriceEntry | None
    tier: int = 0


class Router:
    """A client's model groups and the health of every deployment in them.

    Args:
        routes: `{group: ModelGroup | [Deployment | model id | mapping, ...]}`.
        drivers: The client's drivers; each deployment with options of its own is registered there by its name.
        prices: The client's price table (for the `"cost"` strategy and context windows).
        store: Where rate-limit state lives: a `RateLimitStore`, or a `postgresql://` URL to share it with every
            process using that database (`PostgresRateLimitStore`); this process by default. A group's own `store`
            takes precedence for its deployments.
        open_store: Turns a URL given as a store into a `RateLimitStore`. The client passes the one that knows
            PostgreSQL (routing knows only the interface); without it a URL is a `ConfigurationError`.
    """

    def __init__(
        self,
        routes: Mapping[str, ModelGroup | Sequence[Any] | Mapping[str, Any]],
        drivers: Drivers,
        prices: PriceTable,
        store: RateLimitStore | str | None = None,
        open_store: Callable[[str], RateLimitStore] | None = None,
    ) -> None:
        self.drivers = drivers
        self.prices = prices
        self._open_store = open_store
        self.store: RateLimitStore = self._store(store) if store is not None else MemoryRateLimitStore()
        # Every dict here holds one entry per group or deployment of the configuration: none grows with the calls.
        self.stores: dict[str, RateLimitStore] = {}  # deployment → the store of its group's windows
        self.groups = {name: ModelGroup.from_option(group) for name, group in routes.items()}
        self.targets: dict[str, list[Target]] = {}
        self.health: dict[str, Health] = {}
        self.cooldowns: dict[str, Cooldown] = {}
        self.learned: set[str] = set()  # deployments that sent rate-limit headers
        self._plans: dict[str, list[Target]] = {}  # a group's targets, its fallbacks' after them
        self._windows: dict[str, tuple[int | None, int | None]] = {}
        self._sized: dict[str, bool] = {}
        for group_name, group in self.groups.items():
            if group.strategy not in STRATEGIES:
                raise ConfigurationError(f"route {group_name!r}: unknown strategy {group.strategy!r}; use {STRATEGIES}")
            missing = [name for name in group.fallbacks if name not in routes]
            if missing or not group.deployments:
                raise ConfigurationError(f"route {group_name!r}: no deployments, or unknown fallbacks {missing}")
            self.targets[group_name] = [
                self._target(group_name, index, Deployment.from_option(d)) for index, d in enumerate(group.deployments)
            ]
            store = self.store if group.store is None else self._store(group.store)
            for target in self.targets[group_name]:
                self.cooldowns[target.name] = group.cooldown
                self.stores[target.name] = store

    def _store(self, spec: RateLimitStore | str) -> RateLimitStore:
        if not isinstance(spec, str):
            return spec
        if self._open_store is None:
            raise ConfigurationError(
                "a rate-limit store given as a URL needs open_store= (a Client passes its own); or pass the store"
            )
        return self._open_store(spec)

    def _target(self, group: str, index: int, deployment: Deployment) -> Target:
        name = deployment.name or f"{group}@{index}"
        if name in self.health:
            raise ConfigurationError(f"two deployments are named {name!r}")
        self.health[name] = Health()
        model_id = ModelId.parse(deployment.model, providers=self.drivers.names())
        if deployment.driver is not None or deployment.options:
            self.drivers.add_deployment(name, model_id.provider, deployment.driver or deployment.options)
        else:
            self.drivers.link(name, model_id.provider)
        price = deployment.price
        if price is not None and not isinstance(price, PriceEntry):
            price = PriceTable.from_option({deployment.model: price}).lookup(*model_id)
        return Target(name, model_id, deployment.weight, deployment.limit, deployment.context_window, price)

    def __contains__(self, group: object) -> bool:
        return group in self.groups

    def first(self, group: str) -> ModelId:
        """The group's first deployment, as `(its driver's registered name, model)`."""
        target = self.targets[group][0]
        return ModelId(target.name, target.model_id.model)

    def route(self, call: Call, group: str, rebuild: Callable[[Call], None] | None) -> None:
        """Attach a `Route` over `group` (and its fallbacks) to `call`, bound to the group's first deployment."""
        targets = self._plans.get(group)
        if targets is None:
            targets, seen, queue = [], {group}, [group]
            for tier, name in enumerate(queue):
                for target in self.targets[name]:
                    targets.append(target if tier == 0 else _tiered(target, tier))
                for fallback in self.groups[name].fallbacks:
                    if fallback not in seen:
                        seen.add(fallback)
                        queue.append(fallback)
            self._plans[group] = targets
        sized = self._sized.get(group)
        if sized is None:  # whether any deployment's window is known: else prompts are never measured
            sized = self._sized[group] = any(self.window(t) != (None, None) for t in targets)
        call.route = Route(self, self.groups[group], targets, rebuild, sized=sized)
        self.bind(call, targets[0])

    def bind(self, call: Call, target: Target) -> None:
        """Send `call`'s next attempt to `target`, rebuilding its request for another driver or model."""
        if call.deployment == target.name:
            return
        before, driver = call.driver, self.drivers.get(target.name)
        call.deployment, call.model_id, call.driver = target.name, target.model_id, driver
        call.price_override = target.price
        request = call.request
        if request is not None and (driver is before or driver.capabilities == before.capabilities):
            # The same parameters and tools are accepted there: only the model name changes (no revalidation).
            if request.model != target.model_id.model:
                call.request = request.model_copy(update={"model": target.model_id.model})
        elif call.route is not None and call.route.rebuild is not None:
            call.route.rebuild(call)

    def window(self, target: Target) -> tuple[int | None, int | None]:
        """The target's (total window, prompt window): stated on the deployment, else from the price table."""
        window = self._windows.get(target.name)
        if window is None:
            entry = target.price or self.prices.lookup(*target.model_id)
            prompt = None if entry is None or target.context_window is not None else entry.max_input_tokens
            window = self._windows[target.name] = (target.context_window, prompt)
        return window

    def failed(self, target: Target, error: BaseException) -> None:
        """Cool `target` down when `error` says so (on every path: first attempts, retries and fallbacks)."""
        health = self.health[target.name]
        period = self.cooldowns[target.name].period(health, error)
        if period is not None:
            health.until = max(health.until, time.monotonic() + period)
            health.strikes += 1
            health.failures = 0
            health.probing = True

    def succeeded(self, target: Target, seconds: float) -> None:
        """`target` answered: it is healthy again, and its latency joins the running average."""
        health = self.health[target.name]
        health.failures = health.strikes = 0
        health.probing = False
        health.latency = seconds if health.latency is None else 0.7 * health.latency + 0.3 * seconds


def _tiered(target: Target, tier: int) -> Target:
    return Target(target.name, target.model_id, target.weight, target.limit, target.context_window, target.price, tier)


def moves(error: BaseException) -> bool:
    """Whether `error` sends a call to another deployment: the place failed (429, 402/quota, 5xx, 409, no
    connection, timeout) or its window is too small. Errors about the request itself (400, 401, 403, 404, a refused
    argument, an unusable 2xx) would fail the same way anywhere, so they are raised."""
    return isinstance(
        error,
        (
            RateLimitError,
            QuotaExceededError,
            ServerError,
            ConflictError,
            APIConnectionError,
            ContextWindowExceededError,
        ),
    )


class Route:
    """One call's way through a group: which deployments it tried, which one serves it, what it holds."""

    def __init__(
        self,
        router: Router,
        group: ModelGroup,
        targets: list[Target],
        rebuild: Callable[[Call], None] | None,
        *,
        sized: bool = True,
    ) -> None:
        self.router = router
        self.sized = sized
        self.group = group
        self.targets = targets
        self.rebuild = rebuild
        self.tried: set[str] = set()
        self.serving: Target | None = None
        self.admission: Admission | None = None
        self.retries = 0
        self.waited = 0.0
        self.bound: int | None = None  # an upper bound on the prompt's tokens, once known

    # -- choosing a deployment ------------------------------------------------------------------------------------

    async def admit(self, call: Call) -> None:
        """Pick the first deployment: available, fitting the prompt, with rate-limit capacity."""
        pool = await self._fitting(call, self.targets)
        if not pool:
            raise ContextWindowExceededError(
                "the prompt fits no deployment's context window", provider=call.provider, model=call.model
            )
        if not await self._choose(call, pool):
            await self._wait_cooldown(call, pool, None)

    async def _fitting(self, call: Call, targets: list[Target], larger_than: int | None = None) -> list[Target]:
        if not self.sized or call.request is None:
            # No window is known: a prompt fits anywhere, but a too-long one is not moved to a place no larger.
            return targets if larger_than is None else []
        windows = [self.router.window(t) for t in targets]
        request = call.request
        if self.bound is None:
            structured = request.tools or any(not isinstance(m.content, (str, type(None))) for m in request.messages)
            # Byte-level tokenizers give at least one byte per token: when the bytes fit, counting is not needed.
            cheap = sum(len(m.text.encode()) + 8 for m in request.messages) + 8
            self.bound = await call.count_prompt() if structured else cheap
        output = request.max_tokens or 0
        fits: list[Target] = []
        for target, (total, prompt) in zip(targets, windows, strict=True):
            size = total if total is not None else prompt
            if larger_than is not None and (size is None or size <= larger_than):
                continue
            need = self.bound + (output if total is not None else 0)
            if size is not None and need > size and self.bound != call.counted_input_tokens:
                self.bound = await call.count_prompt()  # the cheap bound did not fit: count exactly
                need = self.bound + (output if total is not None else 0)
            if size is None or need <= size:
                fits.append(target)
        return fits

    async def _choose(self, call: Call, pool: list[Target]) -> bool:
        """Bind the call to the best available target of `pool` with capacity; False when all of them cool down."""
        import asyncio

        prompt = await call.count_prompt() if self.group.strategy == "cost" else 0
        health = self.router.health
        while True:
            now = time.monotonic()
            ready = [t for t in pool if health[t.name].available(now)]
            if not ready:
                return False
            tier = ready[0].tier  # targets are in tier order: the group's own, then each fallback group's
            ordered = self._order(
                call, ready if ready[-1].tier == tier else [t for t in ready if t.tier == tier], prompt
            )
            waits = []
            for target in ordered:
                # Without limits of its own, a deployment is still held to what its rate-limit headers said.
                limit = target.limit or (_UNLIMITED if target.name in self.router.learned else None)
                if limit is None:
                    self._hold(call, target, None)
                    return True
                tokens = (await call.count_prompt() if limit.tpm else 0) + (
                    call.request.max_tokens or 0 if call.request else 0
                )
                got = await self.router.stores[target.name].try_acquire(target.name, limit, tokens)
                if isinstance(got, Admission):
                    self._hold(call, target, got)
                    return True
                waits.append(got)
            wait = min(waits)
            if self.waited + wait > self.group.max_wait:
                raise RateLimitError(
                    f"no deployment of {[t.name for t in ordered]} has rate-limit capacity for {wait:.1f} s",
                    provider=call.provider,
                    model=call.model,
                    retry_after=wait,
                    retryable=False,
                )
            self.waited += wait
            await asyncio.sleep(wait)

    def _hold(self, call: Call, target: Target, admission: Admission | None) -> None:
        self.router.bind(call, target)
        self.serving, self.admission = target, admission
        self.router.health[target.name].in_flight += 1

    def _order(self, call: Call, targets: list[Target], prompt: int) -> list[Target]:
        strategy = self.group.strategy
        if len(targets) < 2 or strategy == "priority":
            return targets
        health = self.router.health
        if strategy == "least-busy":
            return sorted(targets, key=lambda t: (health[t.name].in_flight, random.random()))
        if strategy == "latency":  # an unmeasured deployment goes first, so each gets measured
            return sorted(targets, key=lambda t: (health[t.name].latency or 0.0, random.random()))
        if strategy == "cost":
            output = call.request.max_tokens or 256 if call.request else 0
            return sorted(targets, key=lambda t: self._cost(t, prompt, output))
        # Weighted random order without replacement (Efraimidis-Spirakis): key = u^(1/w), largest first.
        keys = [(random.random() ** (1.0 / t.weight) if t.weight else -1.0, i) for i, t in enumerate(targets)]
        keys.sort(reverse=True)
        return [targets[i] for _, i in keys]

    def _cost(self, target: Target, prompt: int, output: int) -> float:
        entry = target.price or self.router.prices.lookup(*target.model_id)
        if entry is None:
            return float("inf")  # unknown is not free
        return float(entry.input * prompt + entry.output * output)

    async def _wait_cooldown(self, call: Call, pool: list[Target], error: BaseException | None) -> None:
        """Every target of `pool` cools down: wait for the first to come back when the policy allows, else raise."""
        import asyncio

        wait = min(self.router.health[t.name].until for t in pool) - time.monotonic()
        policy = call.policy
        if self.retries >= policy.max_retries or wait > policy.max_retry_after:
            if error is not None:
                raise error
            raise RateLimitError(
                f"every deployment of {[t.name for t in pool]} is cooling down for {max(wait, 0):.1f} s",
                provider=call.provider,
                model=call.model,
                retry_after=max(wait, 0.0),
                retryable=False,
            )
        self.retries += 1
        await asyncio.sleep(max(wait, 0.0))
        if not await self._choose(call, pool):
            await self._wait_cooldown(call, pool, error)

    # -- sending ----------------------------------------------------------------------------------------------------

    async def run(self, call: Call, attempt: Callable[[], Awaitable[T]]) -> T:
        """Send attempts until one succeeds: moving to the next deployment on a failure of the place, retrying
        (the call's `RetryPolicy`) once every deployment that fits was tried; at most one request per deployment
        plus `max_retries`, all under the call's deadline."""
        import asyncio

        while True:
            target = self.serving
            assert target is not None, "a routed call is admitted before it is sent"
            started = time.perf_counter()
            try:
                result = await attempt()
            except Exception as error:
                if isinstance(error, LLMClientError):
                    error.deployment = target.name
                self._ended(target, refund=isinstance(error, APIError))
                self.router.failed(target, error)
                self.tried.add(target.name)
                if not moves(error):
                    raise
                if isinstance(error, ContextWindowExceededError):
                    size = max((s for s in self.router.window(target) if s is not None), default=None)
                    larger = await self._fitting(call, self._untried(), larger_than=size or call.counted_input_tokens)
                    if not larger or not await self._choose(call, larger):
                        raise
                    continue
                pool = await self._fitting(call, self._untried())
                if pool and await self._choose(call, pool):
                    continue
                pool = await self._fitting(call, self.targets)
                if self.retries >= call.policy.max_retries or not call.policy.should_retry(error) or not pool:
                    raise
                if any(self.router.health[t.name].available(time.monotonic()) for t in pool):
                    self.retries += 1
                    await asyncio.sleep(call.policy.backoff(self.retries))
                    if await self._choose(call, pool):
                        continue
                await self._wait_cooldown(call, pool, error)
                continue
            self.router.succeeded(target, time.perf_counter() - started)
            if isinstance(result, ChatResponse) and result.rate_limits:
                self.router.learned.add(target.name)
                await self.router.stores[target.name].learn(target.name, result.rate_limits)
            return result

    def _untried(self) -> list[Target]:
        return [t for t in self.targets if t.name not in self.tried]

    def _ended(self, target: Target, *, refund: bool, tokens: int | None = None) -> None:
        self.router.health[target.name].in_flight -= 1
        admission, self.admission, self.serving = self.admission, None, None
        if admission is not None:
            store = self.router.stores[target.name]
            if refund:
                store.refund(admission)
            else:
                store.settle(admission, tokens)

    def finish(self, outcome: Outcome) -> None:
        """The call ended billed: the serving deployment's tokens become the reported usage."""
        if self.serving is not None:
            usage = outcome.usage
            self._ended(self.serving, refund=False, tokens=usage.prompt_tokens + usage.output_tokens)

    def release(self) -> None:
        """The call ended unbilled (refused, cancelled): give back what its deployment holds."""
        if self.serving is not None:
            self._ended(self.serving, refund=True)


class Routing(Step):
    """The pipeline step of routed calls: pick the first deployment at admission (before budgets reserve on its
    price), settle its rate-limit hold at the end."""

    async def admit(self, call: Call) -> None:
        if call.route is not None:
            await call.route.admit(call)

    def finish(self, call: Call, outcome: Outcome) -> None:
        if call.route is not None:
            call.route.finish(outcome)

    def release(self, call: Call, error: BaseException | None) -> None:
        if call.route is not None:
            call.route.release()
