"""What the call lifecycle tells the world: observers and logging (`observers`), OpenTelemetry GenAI spans and
metrics (`tracing`). `client.pipeline.observers` holds a client's observers; append your own."""

from __future__ import annotations

from llmclient.observability.observers import LoggingObserver, Observer, Run, ToolExecution
from llmclient.observability.tracing import Tracing

__all__ = ["LoggingObserver", "Observer", "Run", "ToolExecution", "Tracing", "default_observers"]


def default_observers() -> list[Observer]:
    """What every client reports to: the `llmclient` logger and OpenTelemetry (a no-op unless configured).

    Here, above both modules: `tracing` builds on `observers`, so `observers` must not import it back.
    """
    return [LoggingObserver(), Tracing()]
