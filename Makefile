# clipyard — every target creates what it needs (.venv, node_modules) idempotently.
# Needs only Python 3.11+, Node 20+ and make.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
AZURITE_STAMP := tests/azurite/node_modules/.installed
BENCHMARKS := $(basename $(notdir $(filter-out %/__init__.py,$(wildcard tests/benchmarks/*.py))))

.PHONY: setup demo test lint format bench clean

$(VENV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "clipyard needs Python 3.11+ (set PYTHON=...)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(AZURITE_STAMP): tests/azurite/package.json tests/azurite/package-lock.json
	npm ci --prefix tests/azurite --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV_STAMP) $(AZURITE_STAMP)

demo: $(VENV_STAMP)
	$(VENV)/bin/clipyard up

test: setup lint
	$(PY) -m pytest

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	@test -n "$(BENCHMARKS)" || { echo "no benchmarks in tests/benchmarks" >&2; exit 1; }
	@for name in $(BENCHMARKS); do \
		echo "# tests.benchmarks.$$name" >&2; \
		$(PY) -m tests.benchmarks.$$name || exit $$?; \
	done

clean:
	rm -rf $(VENV) tests/azurite/node_modules .pytest_cache .mypy_cache .ruff_cache
