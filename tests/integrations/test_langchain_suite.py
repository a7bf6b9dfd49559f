"""LangChain's standard integration suite for `ChatLLMClient`, against a scripted OpenAI-compatible model on loopback.

Every capability flag that is true of the adapter is on (images, PDFs and audio in messages and tool results
included). The suite's VCR benchmark is deselected at collection, with its reason (conftest.py).

The suite downloads an image from GitHub, a PDF from w3.org and a WAV file from Wikimedia; those URLs are served
from loopback by an HTTPS proxy (offline_web.py) that `HTTPS_PROXY` and `SSL_CERT_FILE` point `httpx` at, so the
suite's own code runs unchanged. The files are made here (a PNG, a one-page PDF, a second of silence).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests

from integrations.conftest import DESELECTED
from integrations.offline_web import LoopbackWeb, pdf, png, wav
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
SUITE_PDF = (
    "https://www.w3.org/WAI/ER/tests/xhtml/testfiles/resources/pdf/dummy.pdf"  # test_pdf_inputs, ..._tool_message
)
SUITE_WAV = "https://upload.wikimedia.org/wikipedia/commons/6/6a/Northern_Flicker_202280456.wav"  # test_audio_inputs


@pytest.fixture(scope="module", autouse=True)
def scripted_server() -> Iterator[ScriptedServer]:
    global SERVER
    with ScriptedServer() as server:
        SERVER = server
        yield server
        SERVER = None


@pytest.fixture(scope="module")
def loopback_web() -> Iterator[LoopbackWeb]:
    pages = {SUITE_IMAGE: ("image/png", png()), SUITE_PDF: ("application/pdf", pdf()), SUITE_WAV: ("audio/wav", wav())}
    with LoopbackWeb(pages) as web:
        yield web


@pytest.fixture(autouse=True)
def _offline_downloads(loopback_web: LoopbackWeb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in loopback_web.environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    # The suite asks for a User-Agent naming who downloads Wikimedia's audio (it warns without one).
    monkeypatch.setenv("LANGCHAIN_TESTS_USER_AGENT", "llmclient-tests (loopback, nothing leaves the machine)")


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
    def supports_pdf_inputs(self) -> bool:
        return True

    @property
    def supports_pdf_tool_message(self) -> bool:
        return True

    @property
    def supports_audio_inputs(self) -> bool:
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


def test_the_only_deselected_suite_test_is_the_vcr_benchmark() -> None:
    suite = TestChatLLMClientIntegration()
    assert set(DESELECTED) == {"test_stream_time"}
    assert not suite.enable_vcr_tests
    assert suite.supports_pdf_inputs and suite.supports_pdf_tool_message and suite.supports_audio_inputs
