"""The built-in drivers' wires for the scripted server, each written from its provider's documented examples:
OpenAI's chat completions (also what OpenAI-compatible servers speak) and DeepSeek's, and Ollama's native API."""

from llmclient.testing.wires.ollama import OllamaWire
from llmclient.testing.wires.openai import DeepSeekWire, OpenAIWire

__all__ = ["DeepSeekWire", "OllamaWire", "OpenAIWire"]
