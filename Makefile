# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
# The newest Python 3.11+ on PATH that actually runs (pyenv shims may exist without a version).
PYTHON ?= $(shell for candidate in python3.14 python3.13 python3.12 python3.11 python3; do \
	$$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$candidate; break; }; done)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install migrate lint clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

## make run: install, migrate, create an admin and an ingest password if none, serve web + workers.
run: migrate
	$(BIN)/python manage.py bootstrap
	$(BIN)/python manage.py serve

## make test: the whole test suite (DATABASE_URL picks PostgreSQL; SQLite by default).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make lint: ruff (lint + format check), mypy, no missing migration, a valid OpenAPI schema.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

clean:
	rm -rf $(VENV) var .pytest_cache
