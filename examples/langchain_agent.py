"""An llmclient model inside LangChain: bind a tool, let the model call it, answer with the result.

SmolLM2-135M runs in-process through llama.cpp; any llmclient model id works the same way.
"""

from __future__ import annotations

import asyncio

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from llmclient.integrations.langchain import ChatLLMClient


@tool
def word_length(word: str) -> int:
    """Count the letters in a word."""
    return len(word)


async def main() -> None:
    model = ChatLLMClient(model="llamacpp/smollm2", max_tokens=60, temperature=0)
    agent = model.bind_tools([word_length], tool_choice="word_length")
    question = HumanMessage("How many letters are in the word 'encyclopedia'?")
    call_message = await agent.ainvoke([question])
    call = call_message.tool_calls[0]
    print(f"tool call: {call['name']}({call['args']})")
    result = word_length.invoke(call["args"])
    answer = await model.ainvoke([question, call_message, ToolMessage(str(result), tool_call_id=call["id"])])
    print(f"answer: {answer.content}")
    print(f"usage: {answer.usage_metadata}")


if __name__ == "__main__":
    asyncio.run(main())
