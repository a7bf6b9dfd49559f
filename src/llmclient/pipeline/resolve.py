"""Resolution: from what a call names to its `ModelId`, the driver that serves it (built once per provider from the
user's options), and the `Call` the other steps work on."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from llmclient._http import Timeouts, Transport
from llmclient.drivers import Driver, create_driver
from llmclient.errors import InvalidRequestError
from llmclient.model_ids import ModelResolver
from llmclient.options import chat_options
from llmclient.pipeline.call import Call, CallKind
from llmclient.pipeline.request import chat_request
from llmclient.retry import RetryPolicy


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
        self._options: dict[str, dict[str, Any]] = {}
        self._instances: dict[str, Driver] = {}
        self._given: set[str] = set()
        self._loops: dict[str, object] = {}
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

    def get(self, provider: str) -> Driver:
        """The driver for `provider`, created on first use from its options, and again on a new event loop.

        A script or notebook may run one client under several `asyncio.run()` calls; connection pools belong to the
        loop that opened them, so a driver this client made is made afresh on a new loop (the old loop is closed,
        and its connections with it).
        """
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
        return driver

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

        A driver this client made on another event loop is dropped, not closed: its connections belong to that loop,
        which has ended.
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
    """

    def __init__(self, models: ModelResolver, drivers: Drivers, *, retry: RetryPolicy, strict_params: bool) -> None:
        self.models = models
        self.drivers = drivers
        self.retry = retry
        self.strict_params = strict_params

    def call(self, kind: CallKind, model: str | None, *, max_retries: int | None, tags: Sequence[str]) -> Call:
        """A call to `model` (an id, an alias, or None for the default) with its driver and retry policy."""
        model_id = self.models.resolve(model)
        driver = self.drivers.get(model_id.provider)
        return Call(kind, model_id, driver, self.retry.with_max_retries(max_retries), tuple(tags))

    def chat_call(self, kind: CallKind, messages: Any, options: Mapping[str, Any]) -> Call:
        """A chat or stream call with its request built from `Client.chat`'s `ChatOptions`."""
        params = chat_options(kind, options)
        call = self.call(kind, params.pop("model"), max_retries=params.pop("max_retries"), tags=params.pop("tags"))
        call.timeout = checked_timeout(params.pop("timeout"))
        call.request, call.applied, call.dropped = chat_request(
            call.driver,
            call.model_id,
            messages,
            tools=params.pop("tools"),
            tool_choice=params.pop("tool_choice"),
            extra_body=params.pop("extra_body"),
            params=params,
            strict_params=self.strict_params,
        )
        return call
