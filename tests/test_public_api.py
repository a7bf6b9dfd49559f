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
    "BudgetOvershootWarning",
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
    "HTTPOptions",
    "ImagePart",
    "ImageURL",
    "IncompleteWriteError",
    "InputTooLongError",
    "InsecureURLWarning",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "LLMClientError",
    "LedgerRecord",
    "Limits",
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
    "RedirectError",
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
    "VectorStoreError",
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
    heavy = [
        "torch", "transformers", "llama_cpp", "langchain_core", "tiktoken", "numpy", "httpx", "aiohttp", "httptools"
    ]  # fmt: skip
    code = f"import sys, llmclient; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# Each module may import only from the layers below it (DESIGN.md, "Data flow").
LAYERS = {
    # Below every other module, importing nothing from llmclient: text, secrets and JSON at the edges; docstrings.
    "_sanitize": -10,
    "_docstrings": -10,
    "types": 0,
    "errors": 0,
    "_framing": 5,  # stream lines, events and NDJSON, bounded: raises errors.StreamDecodeError
    "_http_options": 6,  # HTTPOptions, Limits and the key/URL checks: errors, _sanitize, _framing
    "schema": 10,  # pydantic and errors; types.Tool.from_function imports it on first use, tools builds on it
    # similarity is pure numpy but raises errors.DimensionMismatchError, so it sits one layer above errors.
    "similarity": 10,
    "embedding": 10,
    "_tokenizer_files": 0,  # where tokens finds its files: imports nothing of llmclient
    "tokens": 10,
    "prices": 10,
    "budget": 10,
    "retry": 10,
    "_http": 10,
    "_aiohttp": 10,
    "_h1_connection": 8,  # one connection of the native backend: imports nothing of llmclient at run time
    "_h1": 10,  # the native HTTP/1.1 backend: _h1_connection, _framing, _http_options and errors
    "config": 10,
    "options": 10,
    "tools": 20,  # builds on schema
    "drivers": 20,
    "index": 20,
    "vectors": 25,  # the vector-database adapters build on index (VectorIndex validates their batches)
    "model_ids": 30,
    "ledger": 40,
    "pipeline": 50,
    "streaming": 60,
    "structured": 60,
    "tool_loop": 60,
    "routing": 60,
    "stores": 60,
    "embed_job": 70,
    "client": 80,
    "cost": 80,  # kept for imports written against 0.1: re-exports prices, ledger and budget
    "sync": 90,
    "_terminal": 90,  # the command line's warning and spinner helpers
    "_cli_ledger": 95,  # the command line's ledger: `llmclient cost` and `llmclient db`
    "cli": 100,
    "integrations": 100,
    "__init__": 110,
}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_modules_only_import_lower_layers() -> None:
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(relative.parts)
        own = _layer(module)
        # Module-level imports only: a deferred import inside a function (Tool.from_function → schema) adds no
        # import-time dependency, and schema imports nothing of llmclient, so there is no cycle either.
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
        if path.name != "_aiohttp.py":
            assert "import aiohttp" not in path.read_text(), path
        if path.name != "_h1_connection.py":
            assert "import httptools" not in path.read_text(), path


def test_the_01_cost_module_still_exports_what_it_had() -> None:
    from llmclient import budget, cost, ledger, prices

    assert (cost.PriceTable, cost.PriceEntry, cost.UnknownPriceWarning) == (
        prices.PriceTable,
        prices.PriceEntry,
        prices.UnknownPriceWarning,
    )
    assert (cost.CostLedger, cost.SQLiteLedger, cost.Budget) == (ledger.CostLedger, ledger.SQLiteLedger, budget.Budget)
