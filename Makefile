# clipyard — every target creates what it needs (.venv, node_modules) idempotently.
# Needs only Python 3.11+, Node 20+ and make.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
AZURITE_STAMP := tests/azurite/node_modules/.installed
FRONTEND_STAMP := frontend/node_modules/.installed
FRONTEND_BUILD := frontend/dist/index.html
FRONTEND_SOURCES := $(filter-out %.test.ts,$(shell find frontend/src frontend/public -type f 2>/dev/null)) \
	$(addprefix frontend/,index.html vite.config.ts tsconfig.json package-lock.json)
CHROMIUM := /usr/bin/chromium
BENCHMARKS := $(basename $(notdir $(filter-out %/__init__.py,$(wildcard tests/benchmarks/*.py))))

.PHONY: setup demo test lint format bench clean frontend frontend-test chromium

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

$(FRONTEND_STAMP): frontend/package.json frontend/package-lock.json
	npm ci --prefix frontend --no-audit --no-fund --loglevel=error
	touch $@

$(FRONTEND_BUILD): $(FRONTEND_STAMP) $(FRONTEND_SOURCES)
	npm run --prefix frontend build

setup: $(VENV_STAMP) $(AZURITE_STAMP) $(FRONTEND_STAMP)

# The web app, built into frontend/dist (served by the API at /).
frontend: $(FRONTEND_BUILD)

frontend-test: $(FRONTEND_STAMP)
	npm test --prefix frontend

# Debian's chromium for the browser tests (CI runs as root); fails loudly when it cannot.
chromium:
	@test -x $(CHROMIUM) || { apt-get update && apt-get install -y --no-install-recommends chromium; }
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) is still missing: install Debian's chromium" >&2; exit 1; }

demo: $(VENV_STAMP) frontend
	$(VENV)/bin/clipyard up

test: setup lint frontend frontend-test chromium
	$(PY) -m pytest

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

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
	rm -rf $(VENV) tests/azurite/node_modules frontend/node_modules frontend/dist .pytest_cache .mypy_cache .ruff_cache
