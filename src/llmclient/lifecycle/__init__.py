"""The call lifecycle: the steps every call goes through, each in a module that says what it is.

```
Client.chat(...)
  resolve   model_ids.ModelResolver → lifecycle.resolve.Drivers          a ModelId and its driver
  build     lifecycle.request.chat_request                               a validated ChatRequest, in a Call
  ── lifecycle.flow.Lifecycle: the one lifecycle of chat, stream and embed calls ──────────────────────────────
  admit     Pipeline.admit: CountPrompt, BudgetAdmission, …              refuse with nothing sent
  send      Lifecycle.send: RetryPolicy.run (or a Route) under a Deadline driver.chat / stream / embed
  settle    Lifecycle.reply / finish: missing usage counted and flagged, then Pipeline.finish: Pricing →
            BudgetAdmission (settle) → LedgerRecording, exactly once; a failure: Lifecycle.failed
  observe   Pipeline.observers (llmclient.observability): logging, OpenTelemetry and user hooks
```

Streaming (`llmclient.chat.streaming`) and embedding jobs (`llmclient.embeddings.job`) run a `Lifecycle` of their
own; structured output (`llmclient.chat.structured`) and the tool loop (`llmclient.tools.loop`) are chat calls. A
new cross-cutting behaviour (rate limits, routing, tracing, shared budgets) is one more `Step` added to
`Client.pipeline`; the client (the composition root) decides which steps a client has.
"""

from __future__ import annotations

from llmclient.lifecycle.budget_admission import BudgetAdmission
from llmclient.lifecycle.call import Call, CallKind, Outcome
from llmclient.lifecycle.deadline import Deadline
from llmclient.lifecycle.flow import Lifecycle
from llmclient.lifecycle.steps import CountPrompt, LedgerRecording, Pipeline, Pricing, Step

__all__ = [
    "BudgetAdmission",
    "Call",
    "CallKind",
    "CountPrompt",
    "Deadline",
    "LedgerRecording",
    "Lifecycle",
    "Outcome",
    "Pipeline",
    "Pricing",
    "Step",
]
