"""Model groups: one name (`model="chat"`) over several deployments, with strategies, fallbacks, cooldowns and
token-aware rate limits. The machinery is `llmclient.routing.router` and `llmclient.routing.ratelimit`; this
module is where users import it from.

```python
from llmclient import Client
from llmclient.routing import Deployment, ModelGroup

routes = {
    "chat": ModelGroup(
        [Deployment("fake/small", name="cheap", price=0.1), Deployment("fake/large", name="big", price=2)],
        strategy="cost",
    )
}
async with Client(routes=routes) as client:
    reply = await client.chat("Hello", model="chat")
assert (reply.deployment, reply.model) == ("cheap", "small")
assert client.ledger.by_deployment()["cheap"].calls == 1
```
"""

from __future__ import annotations

from llmclient.routing.groups import STRATEGIES, Cooldown, Deployment, ModelGroup, Strategy
from llmclient.routing.ratelimit import MemoryRateLimitStore, RateLimit, RateLimitStore
from llmclient.routing.router import Router, moves

__all__ = [
    "STRATEGIES",
    "Cooldown",
    "Deployment",
    "MemoryRateLimitStore",
    "ModelGroup",
    "RateLimit",
    "RateLimitStore",
    "Router",
    "Strategy",
    "moves",
]
