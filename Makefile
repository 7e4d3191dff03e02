# AetherScan: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml web/package.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a local CPU wheel; an unpinned torch would pull a CUDA build.
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[dev,heic]'
	$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('$(TORCH_VERSION)') else f'torch {v} was installed instead of $(TORCH_VERSION)')"
	cd web && npm install --no-audit --no-fund --loglevel=error
	touch $(STAMP)

install: $(STAMP) ## Create the virtual environment and install everything (first use only)

serve: $(STAMP) ## Run the server on http://127.0.0.1:8000 (engine: auto)
	$(BIN)/aetherscan serve

test: $(STAMP) ## Run the test suite (offline, CPU, a few minutes)
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## The quick offline run: no slow, browser or GPU tests (about a minute)
	$(BIN)/python -m pytest -m "not slow and not browser and not gpu"

lint: $(STAMP) ## Lint, check formatting and types
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP) ## Format the code
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) web/node_modules .pytest_cache .ruff_cache

.PHONY: help install serve test test-fast lint format clean
