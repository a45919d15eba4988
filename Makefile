# telemed: the two commands in the README are `make run` and `make test`; both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-unit lint bench clean

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

## Run the whole system on embedded defaults (private PostgreSQL and Mosquitto under var/); Ctrl-C stops it.
run: setup
	$(PY) -m deploy.system

## All tests: unit, integration (real PostgreSQL and Mosquitto started by the fixtures), static checks.
test: setup
	$(PY) -m pytest
	$(MAKE) --no-print-directory lint

test-unit: setup
	$(PY) -m pytest tests/unit

lint: setup
	$(VENV)/bin/ruff check proto devices edge cloud deploy tests
	$(VENV)/bin/mypy

## Benchmarks: prints a table and writes var/bench/latest.json.
bench: setup
	$(PY) -m tests.bench.harness

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
