# Two commands on a fresh machine: `make run` (set up, then run the pipeline) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Prefect's database and matplotlib's font cache stay in the project (git-ignored), not under ~; a value you set wins
export PREFECT_HOME ?= $(CURDIR)/.prefect
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
# DVC stage commands call `python`: the venv's
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run lint test test-fast prefect-server serve clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# torch first from its exact pin (a looser spec pulls a multi-GB CUDA build), then the lock with torch constrained.
$(STAMP): requirements.lock constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.lock -c constraints.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)  ## create .venv from nothing (idempotent)

run: setup  ## run the continual-learning pipeline on the embedded defaults
	$(BIN)/python -m mllmcl run

lint: setup  ## ruff (lint + format check) and the import contract (layers of pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# One pytest worker per core (tests/conftest.py gives each one torch thread); a test file stays on one worker, so its
# module fixtures (a trained project, a Prefect harness) are built once; the heaviest files start first, in the order
# tests/conftest.py gives (--no-loadscope-reorder keeps it). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: lint  ## lint, then the whole test suite (slow end-to-end tests included)
	$(PYTEST)

test-fast: lint  ## lint, then skip the slow end-to-end tests
	$(PYTEST) -m "not slow"

PREFECT_PORT ?= 4200
prefect-server: setup  ## a local Prefect server on 127.0.0.1 (SQLite under .prefect/, analytics off)
	PREFECT_SERVER_API_HOST=127.0.0.1 \
	  $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

serve: setup  ## serve the scheduled and drift-triggered deployments against that server
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
	  $(BIN)/python -m flows.serve

clean:  ## remove generated data, models and reports (not the venv)
	rm -rf data/tasks models reports metrics
