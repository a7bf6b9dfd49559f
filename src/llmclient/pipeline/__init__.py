"""The call path as small named steps, each in a module that says what it is.

```
Client.chat(...)
  resolve   model_ids.ModelResolver → pipeline.resolve.Drivers          a ModelId and its driver
  build     pipeline.request.chat_request                              a validated ChatRequest
  admit     Pipeline.admit: CountPrompt, BudgetAdmission, …            refuse with nothing sent
  send      pipeline.send.send: RetryPolicy.run under a Deadline       driver.chat / driver.stream
  finish    Pipeline.finish: Pricing → BudgetAdmission (settle) → LedgerRecording, exactly once
  observe   Pipeline.observers (pipeline.observe): logging, OpenTelemetry (pipeline.tracing) and user hooks
```

Streaming (`llmclient.streaming`), structured output (`llmclient.structured`), the tool loop
(`llmclient.tool_loop`) and embedding jobs (`llmclient.embed_job`) drive the same steps. A new cross-cutting
behaviour (rate limits, routing, tracing, shared budgets) is one more `Step` added to `Client.pipeline`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmclient.pipeline.budgets import BudgetAdmission
from llmclient.pipeline.call import Call, CallKind, Outcome
from llmclient.pipeline.deadline import Deadline
from llmclient.pipeline.observe import LoggingObserver, Observer, Run, ToolExecution
from llmclient.pipeline.routing import Routing
from llmclient.pipeline.steps import CountPrompt, LedgerRecording, Pipeline, Pricing, Step
from llmclient.pipeline.tracing import Tracing
from llmclient.types import build_validators

if TYPE_CHECKING:
    from llmclient.budget import Budget
    from llmclient.ledger import CostLedger


def client_pipeline(
    pricing: Pricing,
    budgets: Callable[[], list[Budget]],
    ledger: CostLedger,
    track_drift: bool = False,
    budget_store: Any = None,
    *,
    routed: bool = False,
) -> Pipeline:
    """A `Client`'s steps, in order: routing (for model groups, so budgets price the deployment picked), the prompt
    count (with `track_drift`), pricing, in-process budgets, shared budgets (with a `budget_store`: a
    `postgresql://` URL or `stores.SharedBudgets`), and the ledger record."""
    build_validators()  # here, not at import: see its docstring
    steps: list[Step] = [Routing()] if routed else []
    steps += [CountPrompt()] if track_drift else []
    steps += [pricing, BudgetAdmission(budgets, pricing)]
    if budget_store is not None:
        from llmclient.stores import shared_budget_step  # psycopg (and numpy) only for fleets

        steps.append(shared_budget_step(budget_store, pricing, ledger))
    return Pipeline([*steps, LedgerRecording(ledger)])


__all__ = [
    "BudgetAdmission",
    "Call",
    "CallKind",
    "CountPrompt",
    "Deadline",
    "LedgerRecording",
    "LoggingObserver",
    "Observer",
    "Outcome",
    "Pipeline",
    "Pricing",
    "Run",
    "Step",
    "ToolExecution",
    "Tracing",
    "client_pipeline",
]
