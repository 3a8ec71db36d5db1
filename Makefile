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

.PHONY: loadtest bench payloads docker-build

# 60 s locust run of the endpoint mix against `python -m service` on models/ (reports in loadtest/reports/).
loadtest: install-dev
	$(BIN)/python -m loadtest.loadrun --run-time 60s --users 16 --doc docs/benchmarks.md

# Every benchmark (loadtest/bench_*.py and the locust mix) within 15 minutes; rewrites docs/benchmarks.md.
bench: install-dev
	$(BIN)/python -m loadtest.run_benchmarks --budget-s 900

# Re-sample loadtest/payloads.json from the dev splits (RNNSERVE_DATA_DIR, default ../shared/data).
payloads: install-dev
	$(BIN)/python -m loadtest.make_payloads

docker-build:
	docker build -t rnnserve:cpu .
	docker build -t rnnserve:gpu --target gpu .
