"""llmclient: one async client for every LLM provider, with exact token and cost accounting.

```python
from llmclient import Client

async with Client() as client:
    reply = await client.chat("Hello!", model="fake/echo")
    print(reply.text, reply.usage.input_tokens, reply.usage.output_tokens)
```
"""

from __future__ import annotations

from llmclient._http import Timeouts
from llmclient.client import ChatStream, Client, ParameterDroppedWarning
from llmclient.cost import CostLedger, LedgerRecord
from llmclient.drivers import Capabilities, Driver
from llmclient.drivers.fake import FakeDriver
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
    InsufficientBalanceError,
    InvalidRequestError,
    LLMClientError,
    LocalEngineError,
    MissingAPIKeyError,
    MissingExtraError,
    NotFoundError,
    OutOfMemoryError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    StreamDecodeError,
    StreamError,
    StreamInterruptedError,
    ToolError,
    UnknownModelError,
    UnknownProviderError,
    UnsupportedCapabilityError,
    UnsupportedParameterError,
)
from llmclient.retry import RetryPolicy
from llmclient.tokens import TokenizerUnavailableWarning
from llmclient.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ContentPart,
    Cost,
    EmbedResponse,
    ImagePart,
    ImageURL,
    Message,
    TextPart,
    TokenCount,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
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
    "Driver",
    "EmbedResponse",
    "FakeDriver",
    "ImagePart",
    "ImageURL",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "LLMClientError",
    "LedgerRecord",
    "LocalEngineError",
    "Message",
    "MissingAPIKeyError",
    "MissingExtraError",
    "NotFoundError",
    "OutOfMemoryError",
    "ParameterDroppedWarning",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseFormatError",
    "RetryPolicy",
    "ServerError",
    "StreamDecodeError",
    "StreamError",
    "StreamInterruptedError",
    "TextPart",
    "Timeouts",
    "TokenCount",
    "TokenizerUnavailableWarning",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolError",
    "UnknownModelError",
    "UnknownProviderError",
    "UnsupportedCapabilityError",
    "UnsupportedParameterError",
    "Usage",
    "__version__",
]
