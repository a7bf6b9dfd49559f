"""A tool loop on a 135M-parameter model: a grammar makes SmolLM2 call the tool well-formed, llmclient validates
and runs it, and the model answers with the result."""

from __future__ import annotations

import asyncio

from llmclient import Client

RATES = {"EUR": 1.0, "USD": 1.08, "JPY": 162.0}


def convert(amount: float, source: str, target: str) -> float:
    """Convert an amount of money between currencies.

    Args:
        amount: How much money.
        source: The currency code to convert from, e.g. "EUR".
        target: The currency code to convert to, e.g. "USD".
    """
    return round(amount / RATES.get(source.upper(), 1.0) * RATES.get(target.upper(), 1.0), 2)


async def main() -> None:
    async with Client() as client:
        result = await client.run(
            "How many US dollars is 100 euros?",
            tools=[convert],
            model="llamacpp/smollm2",
            tool_choice="required",  # the first step must call a tool; later steps are free to answer
            max_steps=3,
            max_tokens=80,
            temperature=0,
        )
        for message in result.messages:
            if message.tool_calls:
                for call in message.tool_calls:
                    print(f"assistant calls {call.name}({call.arguments})")
            else:
                print(f"{message.role}: {message.text.strip()}")
        print(f"[{result.steps} steps, {result.usage.prompt_tokens} in, {result.usage.output_tokens} out]")


if __name__ == "__main__":
    asyncio.run(main())
