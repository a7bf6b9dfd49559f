"""The built-in drivers' wires for the scripted server, each written from its provider's documented examples:
OpenAI's chat completions (also what OpenAI-compatible servers speak) and DeepSeek's, Ollama's native API,
Anthropic's Messages API and Google's Gemini API."""

from llmclient.testing.wires.anthropic import AnthropicWire
from llmclient.testing.wires.gemini import GeminiWire
from llmclient.testing.wires.ollama import OllamaWire
from llmclient.testing.wires.openai import DeepSeekWire, OpenAIWire

__all__ = ["AnthropicWire", "DeepSeekWire", "GeminiWire", "OllamaWire", "OpenAIWire"]
