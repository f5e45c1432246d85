# pexkit: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pip reads this machine's local wheel folder (PIP_FIND_LINKS) by itself.
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: install demo test test-fast bench lint clean

$(STAMP): pyproject.toml scripts/install-system.sh
	bash scripts/install-system.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import pexkit, lightgbm, xgboost, polars, fastapi, ax, playwright" 
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pexkit demo --out demo-out --json demo-out/demo.json

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	# two processes (one per core of the CI machine); a file's tests stay in one process, so its
	# module fixtures (a fitted model, a served experiment) are built once
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=20

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	command -v wrk > /dev/null || (apt-get update -qq && apt-get install -y -qq wrk > /dev/null)
	bash benchmarks/setup_peers.sh
	$(BIN)/python benchmarks/run.py --out benchmarks/results
	$(BIN)/python benchmarks/optimize_bench.py --out benchmarks/results
	$(BIN)/python benchmarks/service_bench.py --out benchmarks/results
	$(BIN)/python benchmarks/decide_bench.py --out benchmarks/results
	$(BIN)/python benchmarks/explain_bench.py --out benchmarks/results
	$(BIN)/python benchmarks/dask_bench.py --rows 10000000 --parts 40 --single-rows 2000000 --out benchmarks/results
	$(BIN)/python benchmarks/sequential_bench.py --out benchmarks/results
	$(BIN)/python benchmarks/longterm_coverage.py --out benchmarks/results

clean:
	rm -rf $(VENV) .peers .obp demo-out .pytest_cache .mypy_cache .ruff_cache
