"""Anthropic's rules for a loopback Messages server: the published request shape (anthropic/chat_request.schema.json)
and the thinking rule of tool loops.

https://platform.claude.com/docs/en/build-with-claude/extended-thinking#preserving-thinking-blocks: with thinking
on, the assistant turn that called tools must come back with its thinking block first, unchanged (its `signature`
verifies it), or the answer is a 400 `invalid_request_error`: "messages.1.content.0.type: Expected `thinking` or
`redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a
thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks)." This check is stricter on one
point: a changed thinking text or signature is refused too (the API refuses it when the signature does not verify).
"""

from __future__ import annotations

from typing import Any

from conformance.schemas import errors
from llmclient.testing import Request

MISSING = (
    "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final "
    "`assistant` message must start with a thinking block"
)


class ThinkingRule:
    """A `ScriptedServer` check: the schema, and each thinking block sent with tool calls comes back unchanged.

    Args:
        issued: For each tool call id the script makes, the thinking text and signature it comes with.
    """

    def __init__(self, issued: dict[str, tuple[str, str]]) -> None:
        self.issued = issued

    def __call__(self, request: Request) -> list[str]:
        if not request.path.endswith("/v1/messages"):
            return []
        body = request.json()
        return errors("anthropic", body) or self.thinking_problems(body["messages"])

    def thinking_problems(self, messages: list[dict[str, Any]]) -> list[str]:
        problems = []
        for number, message in enumerate(messages):
            content = message["content"]
            if message["role"] != "assistant" or not isinstance(content, list):
                continue
            calls = [block["id"] for block in content if block["type"] == "tool_use" and block["id"] in self.issued]
            if not calls:
                continue
            thinking, signature = self.issued[calls[0]]
            first = content[0]
            if first["type"] != "thinking":
                problems.append(f"messages.{number}.content.0.type: {MISSING}")
            elif (first["thinking"], first["signature"]) != (thinking, signature):
                problems.append(f"messages.{number}.content.0: the thinking block was changed; its signature fails")
        return problems
