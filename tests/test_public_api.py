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
    "AudioPart",
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
    "Choice",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "ContentPart",
    "ContextWindowExceededError",
    "Cost",
    "CostLedger",
    "DeprecatedModelWarning",
    "DimensionMismatchError",
    "Driver",
    "EmbedResponse",
    "EmbeddingCache",
    "FakeDriver",
    "FilePart",
    "FunctionTool",
    "HTTPOptions",
    "ImagePart",
    "ImageURL",
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
    "PriceFileError",
    "PriceTable",
    "QuotaExceededError",
    "RateLimitError",
    "RedirectError",
    "RefusalError",
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
    "TokenLogprob",
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
    heavy = [
        "torch", "transformers", "llama_cpp", "langchain_core", "tiktoken", "numpy", "httpx", "aiohttp", "httptools"
    ]  # fmt: skip
    code = f"import sys, llmclient; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# Each package may import only from the layers below it (DESIGN.md, "Layout" and "Data flow"); the modules of one
# package import each other freely. docs/architecture.md draws the same table.
LAYERS = {
    # Below every other module: text, secrets and JSON at the edges; the data types; the error tree; chat options.
    "_sanitize": -10,
    "_envelope": -8,  # a provider's error envelope read into one shape
    "content": -5,  # provider-neutral message parts and reply details
    "usage": -5,  # usage, cost and token counts
    "options": -5,  # chat options and the types of their values
    "types": 0,
    "errors": 0,
    "http": 10,  # the driver toolkit's transport half: client, framing, options, backends
    "tokens": 10,  # tokenizers and counting; where their files are found
    "config": 10,
    "drivers": 20,  # the contract, the registry and one package per wire family
    "model_ids": 30,  # "provider/model" against the registry
    "accounting": 40,  # prices, the ledger, budgets
    "observability": 50,  # observers, logging, OpenTelemetry
    "tools": 55,  # definitions, schemas, running tools, the tool loop (given a chat step)
    "lifecycle": 60,  # the call lifecycle: resolve, build, admit, send under retry and deadline, finish
    "chat": 70,
    "routing": 70,
    "embeddings": 70,
    "vectors": 70,
    "stores": 80,  # PostgreSQL (ledger, budgets, rate limits, pgvector)
    "client": 90,  # the composition root
    "sync": 100,
    "cli": 110,
    "integrations": 110,
    "testing": 110,  # the driver conformance suite: drives drivers through a Client
    "__init__": 120,
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
    drivers = "\n".join(p.read_text() for p in (SRC / "drivers").rglob("*.py"))
    for forbidden in ("llmclient.client", "llmclient.lifecycle", "llmclient.accounting", "llmclient.stores"):
        assert forbidden not in drivers


def test_only_http_module_imports_httpx() -> None:
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        if relative != "http/client.py":
            assert "import httpx" not in path.read_text(), path
        if relative != "http/backends/aiohttp_backend.py":
            assert "import aiohttp" not in path.read_text(), path
        if relative != "http/backends/native_connection.py":
            assert "import httptools" not in path.read_text(), path
