"""Google's rules for a loopback Gemini server: the published request shape (gemini/chat_request.schema.json) and
the thought-signature rule of function calling.

https://ai.google.dev/gemini-api/docs/thought-signatures: on Gemini 3, a model turn of the current conversation
that made function calls must come back with the signature on its first function call, unchanged, or the answer is
a 400: "Function call is missing a thought_signature in functionCall parts. This is required for tools to work
correctly, and missing thought_signature may lead to degraded model performance."
"""

from __future__ import annotations

from typing import Any

from conformance.schemas import errors
from llmclient.testing import Request

MISSING = "Function call is missing a thought_signature in functionCall parts."


class SignatureRule:
    """A `ScriptedServer` check: the schema, and each signed function-calling turn comes back signed.

    Args:
        issued: For each function the script calls, the signature its turn came with.
    """

    def __init__(self, issued: dict[str, str]) -> None:
        self.issued = issued

    def __call__(self, request: Request) -> list[str]:
        if not request.path.endswith(("generateContent", "GenerateContent")):
            return []
        body = request.json()
        return errors("gemini", body) or self.signature_problems(body["contents"])

    def signature_problems(self, contents: list[dict[str, Any]]) -> list[str]:
        problems = []
        for number, content in enumerate(contents):
            calls = [part for part in content["parts"] if "functionCall" in part]
            if content.get("role") != "model" or not calls:
                continue
            expected = self.issued.get(calls[0]["functionCall"]["name"])
            if expected is not None and calls[0].get("thoughtSignature") != expected:
                problems.append(f"contents[{number}]: {MISSING}")
        return problems
