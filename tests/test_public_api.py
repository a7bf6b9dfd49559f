"""The public surface, the import cost, and the layering of modules (DESIGN.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import llmclient

SRC = Path(llmclient.__file__).parent

EXPECTED = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BaseDriver",
    "Budget",
    "BudgetExceededError",
    "BudgetScope",
    "Capabilities",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatStream",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ContentPart",
    "ContextWindowExceededError",
    "Cost",
    "CostLedger",
    "DimensionMismatchError",
    "Driver",
    "EmbedResponse",
    "EmbeddingCache",
    "FakeDriver",
    "FunctionTool",
    "ImagePart",
    "ImageURL",
    "InputTooLongError",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "LLMClientError",
    "LedgerRecord",
    "LocalEngineError",
    "MaxStepsExceededError",
    "MemoryEmbeddingCache",
    "Message",
    "MissingAPIKeyError",
    "MissingExtraError",
    "ModelId",
    "NotFoundError",
    "OutOfMemoryError",
    "ParameterDroppedWarning",
    "PermissionDeniedError",
    "PriceEntry",
    "PriceTable",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseFormatError",
    "RetryPolicy",
    "RunResult",
    "SQLiteEmbeddingCache",
    "SQLiteLedger",
    "SearchResult",
    "ServerError",
    "StreamDecodeError",
    "StreamError",
    "StreamInterruptedError",
    "StructuredOutputError",
    "Summary",
    "SyncClient",
    "SyncStream",
    "TextPart",
    "Timeouts",
    "TokenCount",
    "TokenizerUnavailableWarning",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallDelta",
    "ToolError",
    "ToolExecutionError",
    "UnknownModelError",
    "UnknownPriceWarning",
    "UnknownProviderError",
    "UnsupportedCapabilityError",
    "UnsupportedParameterError",
    "Usage",
    "VectorIndex",
    "ZeroVectorWarning",
    "__version__",
    "tool",
]


def test_public_surface_is_pinned_and_sorted() -> None:
    assert llmclient.__all__ == EXPECTED
    assert sorted(llmclient.__all__) == llmclient.__all__
    for name in llmclient.__all__:
        assert hasattr(llmclient, name), name


def test_import_loads_no_heavy_library() -> None:
    heavy = ["torch", "transformers", "llama_cpp", "langchain_core", "tiktoken", "numpy", "httpx"]
    code = f"import sys, llmclient; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# Each module may import only from the layers below it (DESIGN.md, "Data flow").
LAYERS = {
    "types": 0,
    "errors": 0,
    # similarity is pure numpy but raises errors.DimensionMismatchError, so it sits one layer above errors.
    "similarity": 1,
    "embedding": 1,
    "tokens": 1,
    "prices": 1,
    "budget": 1,
    "retry": 1,
    "tools": 1,
    "_http": 1,
    "config": 1,
    "options": 1,
    "drivers": 2,
    "index": 2,
    "model_ids": 3,
    "ledger": 4,
    "pipeline": 5,
    "streaming": 6,
    "structured": 6,
    "tool_loop": 6,
    "embed_job": 7,
    "client": 8,
    "cost": 8,  # kept for imports written against 0.1: re-exports prices, ledger and budget
    "sync": 9,
    "_terminal": 9,  # the command line's warning and spinner helpers
    "cli": 10,
    "integrations": 10,
    "__init__": 11,
}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_modules_only_import_lower_layers() -> None:
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(relative.parts)
        own = _layer(module)
        # Module-level imports only: a deferred import inside a function (Tool.from_function) adds no import-time
        # dependency and no cycle.
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmclient"):
                targets = [node.module] if node.module != "llmclient" else [f"llmclient.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("llmclient")]
            else:
                continue
            for target in targets:
                if tuple(target.split(".")[1:2]) == relative.parts[1:2]:
                    continue  # within the same package (drivers importing drivers)
                assert _layer(target) < own, f"{module} imports {target}"
    drivers = "\n".join(p.read_text() for p in (SRC / "drivers").glob("*.py"))
    for forbidden in ("llmclient.client", "llmclient.pipeline", "llmclient.ledger", "llmclient.retry"):
        assert forbidden not in drivers


def test_only_http_module_imports_httpx() -> None:
    for path in SRC.rglob("*.py"):
        if path.name != "_http.py":
            assert "import httpx" not in path.read_text(), path
