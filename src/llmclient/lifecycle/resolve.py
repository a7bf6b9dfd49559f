"""Resolution: from what a call names to its `ModelId`, the driver that serves it (built once per provider from the
user's options), and the `Call` the other steps work on."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from llmclient.drivers import Driver, create_driver
from llmclient.errors import InvalidRequestError
from llmclient.http import Timeouts, Transport
from llmclient.http.loop_end import on_loop_end
from llmclient.lifecycle.call import Call, CallKind
from llmclient.lifecycle.request import chat_request
from llmclient.lifecycle.retry import RetryPolicy
from llmclient.model_ids import ModelId, ModelResolver
from llmclient.options import chat_options

if TYPE_CHECKING:
    from llmclient.accounting.catalog import PriceTable
    from llmclient.routing.router import Router


class Drivers:
    """The drivers of one client: configured options per provider, and the instances made from them.

    Args:
        providers: `Client(providers=...)`: options per provider (API keys are held as `SecretStr`), or ready
            driver instances.
        transport: The httpx transport every driver whose capabilities say `http` receives.
        timeouts: The timeouts those drivers receive.
    """

    def __init__(
        self,
        providers: Mapping[str, Mapping[str, Any] | Driver] | None,
        *,
        transport: Transport | None,
        timeouts: Timeouts,
    ) -> None:
        self._transport = transport
        self._timeouts = timeouts
        # Each dict holds one entry per provider or routed deployment configured (or named by a call): never per call.
        self._options: dict[str, dict[str, Any]] = {}
        self._instances: dict[str, Driver] = {}
        self._given: set[str] = set()
        self._loops: dict[str, object] = {}
        self._watchers: dict[str, object] = {}  # per provider: its driver's loop-end watcher (one at a time)
        self._links: dict[str, str] = {}  # a routed deployment without options of its own → its provider
        for name, config in (providers or {}).items():
            if isinstance(config, Mapping):
                self._options[name] = {
                    key: SecretStr(value) if key == "api_key" and isinstance(value, str) else value
                    for key, value in config.items()
                }
            else:
                self._instances[name] = config
                self._given.add(name)

    def names(self) -> list[str]:
        """The providers configured by name (their own or built-in names)."""
        return sorted({*self._options, *self._instances})

    def add_deployment(self, name: str, provider: str, options: Mapping[str, Any] | Driver) -> None:
        """Register a routed deployment's own driver under `name`: a ready instance, or `provider`'s driver made
        from `provider`'s configured options with the deployment's over them."""
        if not isinstance(options, Mapping):
            self._instances[name] = options
            return
        base = self._options.get(provider, {})
        merged = {**base, "driver": base.get("driver", provider), **options}
        self._options[name] = {
            key: SecretStr(value) if key == "api_key" and isinstance(value, str) else value
            for key, value in merged.items()
        }

    def link(self, name: str, provider: str) -> None:
        """Let `name` (a routed deployment without options of its own) use `provider`'s driver."""
        self._links[name] = provider

    def get(self, provider: str) -> Driver:
        """The driver for `provider`, created on first use from its options, and again on a new event loop.

        A script or notebook may run one client under several `asyncio.run()` calls; connection pools belong to the
        loop that opened them, so a driver this client made is made afresh on a new loop (the old loop is closed,
        and its connections with it).
        """
        provider = self._links.get(provider, provider)
        loop = _running_loop()
        driver = self._instances.get(provider)
        if driver is not None and provider not in self._given and self._loops.get(provider, loop) is not loop:
            driver = None
        if driver is None:
            options = dict(self._options.get(provider, {}))
            if isinstance(options.get("api_key"), SecretStr):
                options["api_key"] = options["api_key"].get_secret_value()
            driver = create_driver(provider, options, transport=self._transport, timeouts=self._timeouts)
            self._instances[provider] = driver
            self._loops[provider] = loop
            if loop is not None:  # closed on its loop as the loop ends, its sockets and threads with it
                self._watchers[provider] = on_loop_end(partial(self._loop_ended, provider, driver))
        return driver

    async def _loop_ended(self, provider: str, driver: Driver) -> None:
        """The loop `driver` was made on is ending (`http.loop_end`): close it, unless it was closed or replaced."""
        if self._instances.get(provider) is driver:
            del self._instances[provider]
            await driver.aclose()

    def __iter__(self) -> Iterator[Driver]:
        return iter(list(self._instances.values()))

    def secrets(self) -> list[str]:
        """Every API key configured or in use, so tool errors and messages can be scrubbed of them."""
        keys = [
            value.get_secret_value()
            for options in self._options.values()
            for key, value in options.items()
            if key == "api_key" and isinstance(value, SecretStr)
        ]
        keys += [driver.api_key.get_secret_value() for driver in self if driver.api_key is not None]
        return keys

    async def aclose(self) -> None:
        """Close every driver made so far (connection pools, loaded models); they are made again on next use.

        A driver this client made on another event loop is dropped, not closed here: it was closed on that loop as
        the loop ended (or its connections went with the loop, where a loop ends without closing its generators).
        """
        loop = _running_loop()
        drivers, self._instances = dict(self._instances), {}
        for provider, driver in drivers.items():
            if provider in self._given or self._loops.get(provider, loop) is loop:
                await driver.aclose()


def _running_loop() -> object:
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # `Client.driver()` called outside a loop: the driver stays with the loop it has
        return None


def checked_timeout(value: Any) -> float | None:
    """A call's `timeout=`: None (the client's), or a positive number of seconds; else `InvalidRequestError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidRequestError(f"timeout must be a positive number of seconds, not {value!r}")
    return float(value)


class Resolver:
    """The resolve and build steps: what a call names → `ModelId` → driver → a `Call` with a validated request.

    Args:
        models: Turns ids, aliases and the default into `ModelId`s.
        drivers: The drivers per provider.
        retry: The client's retry policy (a call may override its count).
        strict_params: Refuse parameters a provider lacks instead of dropping them.
        prices: The price catalog, whose entries say which parameters a model refuses.
        router: The client's model groups (`routing.Router`, built by the client: routing builds on this layer).
    """

    def __init__(
        self,
        models: ModelResolver,
        drivers: Drivers,
        *,
        retry: RetryPolicy,
        strict_params: bool,
        router: Router | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        self.models = models
        self.drivers = drivers
        self.retry = retry
        self.strict_params = strict_params
        self.router = router
        self.prices = prices

    def resolve(self, model: str | None) -> ModelId:
        """The `ModelId` of an id, alias or the default; a model group's is its first deployment's (by the name its
        driver is registered under), for counting tokens and reading capabilities."""
        group = self._group(model)
        return self.models.resolve(model) if group is None else self.router.first(group)  # type: ignore[union-attr]

    def _group(self, model: str | None) -> str | None:
        name = model or self.models.default_model
        return name if self.router is not None and name in self.router else None

    def call(
        self,
        kind: CallKind,
        model: str | None,
        *,
        max_retries: int | None,
        tags: Sequence[str],
        rebuild: Callable[[Call], None] | None = None,
    ) -> Call:
        """A call to `model` (an id, an alias, a model group, or None for the default) with its driver and retry
        policy; a group's call carries its `Route` (only chat and stream calls move between deployments)."""
        policy = self.retry.with_max_retries(max_retries)
        group = self._group(model)
        if group is not None and self.router is not None:
            first = self.router.first(group)
            call = Call(kind, first, self.drivers.get(first.provider), policy, tuple(tags))
            self.router.route(call, group, rebuild)
            if kind == "embed":
                call.route = None  # an embedding job sends its batches to the deployment it was bound to
            return call
        model_id = self.models.resolve(model)
        driver = self.drivers.get(model_id.provider)
        return Call(kind, model_id, driver, policy, tuple(tags))

    def chat_call(self, kind: CallKind, messages: Any, options: Mapping[str, Any]) -> Call:
        """A chat or stream call with its request built from `Client.chat`'s `ChatOptions`."""
        params = chat_options(kind, options)
        model, max_retries, tags = params.pop("model"), params.pop("max_retries"), params.pop("tags")
        timeout = checked_timeout(params.pop("timeout"))
        tools, tool_choice, extra_body = params.pop("tools"), params.pop("tool_choice"), params.pop("extra_body")

        def build(call: Call) -> None:  # again for each deployment a routed call moves to
            call.request, call.applied, call.dropped = chat_request(
                call.driver,
                call.model_id,
                messages,
                tools=tools,
                tool_choice=tool_choice,
                extra_body=extra_body,
                params=params,
                strict_params=self.strict_params,
                model_entry=self.prices.lookup(call.provider, call.model) if self.prices is not None else None,
            )

        call = self.call(kind, model, max_retries=max_retries, tags=tags, rebuild=build)
        call.timeout = timeout
        if call.request is None:  # a routed call was built when it was bound to its first deployment
            build(call)
        return call
