"""The steps every call passes through around sending, and the `Pipeline` that runs them in order.

A step sees a call twice: `admit` before anything is sent (raise to refuse: nothing is sent), then either
`finish` (the call was, or may have been, billed: it has an `Outcome` to price, settle and record) or `release`
(nothing was billed). Cross-cutting behaviour is one more step:

```python
from llmclient import Client
from llmclient.lifecycle import Call, Outcome, Step


class CountCalls(Step):
    def __init__(self) -> None:
        self.finished: list[str] = []

    def finish(self, call: Call, outcome: Outcome) -> None:
        self.finished.append(f"{call.model_id} cost {outcome.cost.total}")


counter = CountCalls()
async with Client() as client:
    client.pipeline.add(counter)
    await client.chat("hi", model="fake/echo")
assert counter.finished == ["fake/echo cost 0"]
```
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmclient.accounting.catalog import PriceTable
from llmclient.accounting.ledger import CostLedger, LedgerRecord
from llmclient.lifecycle.call import Call, Outcome
from llmclient.observability import default_observers
from llmclient.observability.observers import Hooks, Observer, hook_failed, notify
from llmclient.types import Cost, Usage

if TYPE_CHECKING:
    from llmclient.accounting.prices import PriceEntry


class Step:
    """One stage of every call; override the hooks you need (each does nothing by default)."""

    async def admit(self, call: Call) -> None:
        """Before anything is sent; raise an `LLMClientError` to refuse the call."""

    def finish(self, call: Call, outcome: Outcome) -> None:
        """After a call that was or may have been billed (steps run in order: price, settle, record, …)."""

    def release(self, call: Call, error: BaseException | None) -> None:
        """After a call that ended with nothing billed (`error` says why, when it failed): give back what `admit`
        took."""

    def reserves(self, call: Call) -> bool:
        """Whether admitting `call` reserves money, so its input must be counted first (an embedding job counts
        its texts only then)."""
        return False

    async def aclose(self) -> None:
        """The client is closing: finish what was handed over (a store's queued writes)."""


class Pipeline:
    """The ordered steps of a client's calls: admission in order, then exactly one `finish` or `release`.

    `observers` hear every admitted call's events (`llmclient.observability.observers`): logging and OpenTelemetry by
    default; append your own hooks.
    """

    def __init__(self, steps: Sequence[Step], observers: Sequence[Observer] | None = None) -> None:
        self.steps = list(steps)
        # The client's observers (logging, tracing, the user's hooks): a fixed few, never added to per call.
        self.observers: list[Observer] = default_observers() if observers is None else list(observers)
        self._hooks = Hooks(self.observers)
        self._bound_for = list(self.observers)

    def hooks(self) -> Hooks:
        """The observers' hooks, bound again only when `observers` changed (a list comparison: it runs per call)."""
        if self._bound_for != self.observers:
            self._hooks = Hooks(self.observers)
            self._bound_for = list(self.observers)
        return self._hooks

    def add(self, step: Step, *, before: type[Step] | None = None) -> None:
        """Add a step at the end, or before the first step of type `before` (e.g. before `LedgerRecording`)."""
        index = next((i for i, s in enumerate(self.steps) if before and isinstance(s, before)), len(self.steps))
        self.steps.insert(index, step)

    def reserves(self, call: Call) -> bool:
        """Whether any step reserves money for `call` (`Step.reserves`)."""
        return any(step.reserves(call) for step in self.steps)

    async def aclose(self) -> None:
        """Close every step (`Step.aclose`), in order."""
        for step in self.steps:
            await step.aclose()

    async def admit(self, call: Call) -> None:
        """Run every step's admission; if one refuses, release those already admitted, and raise."""
        if self.observers:
            call.observers = hooks = self.hooks()
            for hook in hooks.on_request:  # inline, not notify(): this runs on every call
                try:
                    hook(call)
                except Exception:
                    hook_failed(hook)
        admitted: list[Step] = []
        try:
            for step in self.steps:
                await step.admit(call)
                admitted.append(step)
        except BaseException as error:
            for step in reversed(admitted):
                step.release(call, error)
            self._ended(call, "on_error", error, None)
            raise
        call.started = time.perf_counter()

    def finish(self, call: Call, outcome: Outcome, error: BaseException | None = None) -> None:
        """Price, settle and record a billed call, once however often it is called (`error`: how a billed call
        failed, for the observers)."""
        if call.recorded:
            return
        call.recorded = True
        for step in self.steps:
            step.finish(call, outcome)
        if call.observers is not None:
            if call.observers.on_record and outcome.record is not None:
                notify(call.observers.on_record, call, outcome.record)
            if error is None:
                self._ended(call, "on_response", outcome)
            else:
                self._ended(call, "on_error", error, outcome)

    def release(self, call: Call, error: BaseException | None) -> None:
        """Release what admission took for a call that was not billed."""
        if call.recorded:
            return
        for step in self.steps:
            step.release(call, error)
        if error is not None:
            self._ended(call, "on_error", error, None)

    @staticmethod
    def _ended(call: Call, event: str, *args: object) -> None:
        """Tell the observers how the call ended, once: they hear nothing more of it."""
        hooks, call.observers = call.observers, None
        if hooks is not None and (event_hooks := getattr(hooks, event)):
            notify(event_hooks, call, *args)


class CountPrompt(Step):
    """Count every prompt before sending, so the ledger shows how far the count was from the billed usage
    (`Client(track_drift=True)`). Without it a prompt is counted only when something needs the number: a budget's
    reservation, or a record of a failed or cut call that has no reported usage."""

    async def admit(self, call: Call) -> None:
        if call.request is not None:
            await call.count_prompt()


class Pricing(Step):
    """Price the outcome's usage: by the requested model, else by the model the provider says served it. A call
    one of whose attempts timed out after its request left (`Call.billed_unknown`) has an unknown cost (None), even
    when a later attempt answered: that request may have been billed too.

    Self-hosted providers (their driver's `Capabilities.self_hosted`) cost 0 unless priced; any other unknown
    model costs None, with one `UnknownPriceWarning` per model.
    """

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices

    def entry(self, call: Call, served_model: str | None = None) -> PriceEntry | None:
        """The price entry for a call's model (or the served one), None when unknown."""
        if call.price_override is not None:  # a routed deployment's own price
            return call.price_override
        self_hosted = call.driver.capabilities.self_hosted
        entry = self.prices.lookup(call.provider, call.model, self_hosted=self_hosted)
        if entry is None and served_model and served_model != call.model:
            entry = self.prices.lookup(call.provider, served_model, self_hosted=self_hosted)
        return entry

    def cost(
        self, call: Call, usage: Usage, served_model: str | None = None, service_tier: str | None = None
    ) -> Cost | None:
        """What `usage` cost on the call's model, at `service_tier`'s rates where it has its own; None (warned
        once) when unknown."""
        entry = self.entry(call, served_model)
        if entry is None:
            return self.prices.cost(call.provider, call.model, usage)  # None, with one warning per model
        return entry.cost(usage, service_tier)

    def finish(self, call: Call, outcome: Outcome) -> None:
        if call.billed_unknown:  # an attempt timed out after its request left: what the call cost is unknown
            outcome.cost, outcome.priced = None, True
        elif not outcome.priced:
            outcome.cost = self.cost(call, outcome.usage, outcome.served_model, outcome.service_tier)
            outcome.priced = True


class LedgerRecording(Step):
    """Write one ledger record per logical call."""

    def __init__(self, ledger: CostLedger) -> None:
        self.ledger = ledger

    async def aclose(self) -> None:
        await self.ledger.drain()

    def finish(self, call: Call, outcome: Outcome) -> None:
        outcome.record = record = LedgerRecord(
            provider=call.provider,
            model=call.model,
            kind=call.kind,
            usage=outcome.usage,
            cost=outcome.cost,
            latency_s=time.perf_counter() - call.started,
            attempts=call.attempts,
            request_id=outcome.request_id,
            tags=call.tags,
            error=outcome.error,
            counted_input_tokens=call.counted_input_tokens,
            deployment=call.deployment,
        )
        if outcome.settlement is None:
            self.ledger.add(record)
        else:  # a shared budget's settlement, written in the same statement as the row
            self.ledger.add_settled(record, outcome.settlement)
