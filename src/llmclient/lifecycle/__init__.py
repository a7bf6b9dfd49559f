"""The call lifecycle: the steps every call goes through, each in a module that says what it is.

```
Client.chat(...)
  resolve   model_ids.ModelResolver → lifecycle.resolve.Drivers          a ModelId and its driver
  build     lifecycle.request.chat_request                               a validated ChatRequest
  admit     Pipeline.admit: CountPrompt, BudgetAdmission, …              refuse with nothing sent
  send      lifecycle.send.send: RetryPolicy.run under a Deadline        driver.chat / driver.stream
  finish    Pipeline.finish: Pricing → BudgetAdmission (settle) → LedgerRecording, exactly once
  observe   Pipeline.observers (llmclient.observability): logging, OpenTelemetry and user hooks
```

Streaming (`llmclient.chat.streaming`), structured output (`llmclient.chat.structured`), the tool loop
(`llmclient.tools.loop`) and embedding jobs (`llmclient.embeddings.job`) drive the same steps. A new cross-cutting
behaviour (rate limits, routing, tracing, shared budgets) is one more `Step` added to `Client.pipeline`; the client
(the composition root) decides which steps a client has.
"""

from __future__ import annotations

from llmclient.lifecycle.budget_admission import BudgetAdmission
from llmclient.lifecycle.call import Call, CallKind, Outcome
from llmclient.lifecycle.deadline import Deadline
from llmclient.lifecycle.steps import CountPrompt, LedgerRecording, Pipeline, Pricing, Step

__all__ = [
    "BudgetAdmission",
    "Call",
    "CallKind",
    "CountPrompt",
    "Deadline",
    "LedgerRecording",
    "Outcome",
    "Pipeline",
    "Pricing",
    "Step",
]
