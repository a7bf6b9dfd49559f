"""LangChain's standard integration suite for `ChatLLMClient`, against a scripted OpenAI-compatible model on loopback.

Every capability flag that is true of the adapter is on. The suite's tests for inputs llmclient has no message part
for (PDF files, audio) and its VCR benchmark are deselected at collection, each with its reason (conftest.py);
tests/integrations/test_langchain.py checks those inputs are refused with a clear error.

The suite downloads one image from GitHub (its image tests); that URL is served from loopback by an HTTPS proxy
(offline_web.py) that `HTTPS_PROXY` and `SSL_CERT_FILE` point `httpx` at, so the suite's own code runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests

from integrations.conftest import DESELECTED
from integrations.offline_web import LoopbackWeb, png
from integrations.scripted_model import ScriptedServer
from llmclient.integrations.langchain import ChatLLMClient

# The scripted model has no price, so its cost is None and llmclient warns once per model, as it should; pytest
# turns warnings into errors, and the suite's own tests cannot pass a price.
pytestmark = pytest.mark.filterwarnings("ignore::llmclient.accounting.prices.UnknownPriceWarning")

SERVER: ScriptedServer | None = None
SUITE_IMAGE = (
    "https://raw.githubusercontent.com/langchain-ai/docs/4d11d08b6b0e210bd456943f7a22febbd168b543/"
    "src/images/agentic-rag-output.png"
)  # what langchain_tests.integration_tests.chat_models downloads in test_image_inputs and its neighbours


@pytest.fixture(scope="module", autouse=True)
def scripted_server() -> Iterator[ScriptedServer]:
    global SERVER
    with ScriptedServer() as server:
        SERVER = server
        yield server
        SERVER = None


@pytest.fixture(scope="module")
def loopback_web() -> Iterator[LoopbackWeb]:
    with LoopbackWeb({SUITE_IMAGE: ("image/png", png())}) as web:
        yield web


@pytest.fixture(autouse=True)
def _offline_downloads(loopback_web: LoopbackWeb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in loopback_web.environment(tmp_path).items():
        monkeypatch.setenv(name, value)


class TestChatLLMClientIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatLLMClient]:
        return ChatLLMClient

    @property
    def chat_model_params(self) -> dict[str, Any]:
        assert SERVER is not None
        return {"model": "openai-compatible/scripted", "base_url": SERVER.url, "api_key": "sk-scripted"}

    @property
    def model_override_value(self) -> str:
        return "scripted-alt"

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supported_usage_metadata_details(self) -> dict[str, Any]:
        details = ["reasoning_output", "cache_read_input"]
        return {"invoke": details, "stream": details}

    def invoke_with_reasoning_output(self, *, stream: bool = False) -> AIMessage:
        model = self.chat_model_class(**self.chat_model_params)
        return _invoke(model, [HumanMessage("Think first: what is 2 + 2?")], stream=stream)

    def invoke_with_cache_read_input(self, *, stream: bool = False) -> AIMessage:
        model = self.chat_model_class(**self.chat_model_params)
        messages = [SystemMessage("You are a careful assistant. " * 50), HumanMessage("Hello")]
        _invoke(model, messages, stream=False)  # the first call fills the scripted server's prompt cache
        return _invoke(model, messages, stream=stream)


def _invoke(model: ChatLLMClient, messages: list[Any], *, stream: bool) -> AIMessage:
    if not stream:
        return model.invoke(messages)
    full = None
    for chunk in model.stream(messages):
        full = chunk if full is None else full + chunk
    assert isinstance(full, AIMessage)
    return full


def test_every_deselected_suite_test_is_gated_by_a_flag_that_is_false() -> None:
    suite = TestChatLLMClientIntegration()
    flags = {
        "test_pdf_inputs": suite.supports_pdf_inputs,
        "test_pdf_tool_message": suite.supports_pdf_tool_message,
        "test_audio_inputs": suite.supports_audio_inputs,
        "test_stream_time": suite.enable_vcr_tests,
    }
    assert set(DESELECTED) == set(flags)
    assert not any(flags.values())
