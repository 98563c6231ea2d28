# Two commands: `make run` (the main job) and `make test` (the test suite).
# Each creates/updates the local virtual environment .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# one single-threaded worker process per core: small batched fits use a core better alone
# than two threads on one fit (docs/performance.md, "The main job")
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: run test lint format venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/droplab run --preset standard --workers $(WORKERS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build dist src/*.egg-info
