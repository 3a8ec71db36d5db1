# The README's two commands: `make serve` (install + start on the bundled models) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev serve test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q .

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[train,dev]'

serve: install
	$(BIN)/python -m service

# pytest exits 5 when it collects nothing: that must fail, and it does (no `|| true`).
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest
