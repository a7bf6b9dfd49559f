"""llmclient: one async client for every LLM provider, with exact token and cost accounting.

```python
from llmclient import Client

async with Client() as client:
    reply = await client.chat("Hello!", model="fake/echo")
    print(reply.text, reply.usage.input_tokens, reply.usage.output_tokens)
```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llmclient.accounting.budgets import Budget, BudgetOvershootWarning, BudgetScope
from llmclient.accounting.catalog import PriceTable
from llmclient.accounting.ledger import CostLedger, LedgerRecord, SQLiteLedger, Summary
from llmclient.accounting.prices import PriceEntry, UnknownPriceWarning
from llmclient.chat.streaming import ChatStream
from llmclient.client import Client
from llmclient.drivers import BaseDriver, Capabilities, DeprecatedModelWarning, Driver
from llmclient.drivers.fake import FakeDriver
from llmclient.embeddings.cache import EmbeddingCache, MemoryEmbeddingCache, SQLiteEmbeddingCache
from llmclient.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigurationError,
    ConflictError,
    ContextWindowExceededError,
    DimensionMismatchError,
    IncompleteWriteError,
    InputTooLongError,
    InsufficientBalanceError,
    InvalidRequestError,
    LLMClientError,
    LocalEngineError,
    MaxStepsExceededError,
    MissingAPIKeyError,
    MissingExtraError,
    NotFoundError,
    OutOfMemoryError,
    OutputCapRequiredError,
    PermissionDeniedError,
    PriceFileError,
    QuotaExceededError,
    RateLimitError,
    RedirectError,
    RefusalError,
    ResponseFormatError,
    ServerError,
    StreamDecodeError,
    StreamError,
    StreamInterruptedError,
    StructuredOutputError,
    ToolArgumentsError,
    ToolError,
    ToolExecutionError,
    UnknownModelError,
    UnknownProviderError,
    UnsupportedCapabilityError,
    UnsupportedParameterError,
    VectorStoreError,
)
from llmclient.http import HTTPOptions, InsecureURLWarning, Limits, Timeouts
from llmclient.lifecycle.request import ParameterDroppedWarning
from llmclient.lifecycle.retry import RetryPolicy
from llmclient.model_ids import ModelId
from llmclient.sync import SyncClient, SyncStream
from llmclient.tokens import TokenizerUnavailableWarning
from llmclient.tools import FunctionTool, RunResult, tool
from llmclient.types import (
    AudioPart,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ContentPart,
    Cost,
    EmbedResponse,
    FilePart,
    ImagePart,
    ImageURL,
    Message,
    TextPart,
    TokenCount,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from llmclient.vectors.index import SearchResult, VectorIndex
    from llmclient.vectors.similarity import ZeroVectorWarning

# Names whose modules import numpy: loaded on first access, so `import llmclient` stays light.
_LAZY = {
    "SearchResult": "llmclient.vectors.index",
    "VectorIndex": "llmclient.vectors.index",
    "ZeroVectorWarning": "llmclient.vectors.similarity",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmclient' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
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
