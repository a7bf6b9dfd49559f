"""The public surface, the import cost, and the layering of modules (DESIGN.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    "OutputCapRequiredError",
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


ROOT = SRC.parent.parent  # the checkout: pyproject.toml and docs/ beside src/


def _contract(kind: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return next(contract for contract in config["contracts"] if contract["id"] == kind)


def test_modules_only_import_lower_layers() -> None:
    # import-linter reads every import, those inside functions included (a deferred import is still a dependency:
    # one that points upward is an import cycle waiting for its first call); pyproject.toml holds the contracts.
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    environment = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    drivers = "\n".join(p.read_text() for p in (SRC / "drivers").rglob("*.py"))
    for forbidden in ("llmclient.client", "llmclient.lifecycle", "llmclient.accounting", "llmclient.stores"):
        assert forbidden not in drivers


def test_the_architecture_page_draws_the_layer_contract() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = page.split("## Layout", 1)[1].split("```", 2)[1]
    drawn = [m.group(1) for line in block.splitlines() if (m := re.match(r"([\w]+(?: \| [\w]+)*)\s{2,}", line))]
    layers = [layer.replace("llmclient.", "") for layer in _contract("layers")["layers"]]
    assert drawn == layers
    modules = {p.stem for p in SRC.glob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert modules | packages == {name for layer in layers for name in layer.split(" | ")}  # each in one layer


def test_only_http_module_imports_httpx() -> None:
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        if relative != "http/client.py":
            assert "import httpx" not in path.read_text(), path
        if relative != "http/backends/aiohttp_backend.py":
            assert "import aiohttp" not in path.read_text(), path
        if relative != "http/backends/native_connection.py":
            assert "import httptools" not in path.read_text(), path
