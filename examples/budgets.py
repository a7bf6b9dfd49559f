"""Budgets: each call reserves its worst case first and is refused, unsent, when it would not fit.

Runs offline on the fake driver with a made-up price, so the arithmetic is easy to follow.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from llmclient import BudgetExceededError, Client

PRICES = {"fake/paid": {"input_cost_per_token": "0.001", "output_cost_per_token": "0.002"}}  # USD per token


async def main() -> None:
    client = Client(prices=PRICES)
    async with client.budget(usd=Decimal("0.10")) as budget:
        for prompt in ["a short question", "another short one", "word " * 60]:
            try:
                reply = await client.chat(prompt, model="fake/paid", max_tokens=10)
                print(f"sent:    {prompt[:20]!r:24} cost ${reply.cost.total if reply.cost else '?'}")
            except BudgetExceededError as error:
                print(f"refused: {prompt[:20]!r:24} {error.message}")
    print(f"spent ${budget.spent} of ${budget.limit}; {len(client.ledger)} calls in the ledger")


if __name__ == "__main__":
    asyncio.run(main())
