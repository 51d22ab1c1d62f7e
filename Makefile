# Agent Mesh — `make run` serves the embedded demo, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: run test install install-dev migrate seed lint format schema clean smoke-prod

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

## Embedded mode: SQLite under var/, filesystem broker, API + worker + beat. Ctrl-C stops all.
run: seed
	$(BIN)/python manage.py serve

## The whole suite (SQLite by default; PostgreSQL/Redis when DATABASE_URL/CELERY_BROKER_URL are set).
test: install-dev
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

## The production topology from a fresh venv (requirements.txt alone) on the local PostgreSQL and
## Redis: drops and re-creates the database agentmesh_smoke, flushes Redis DBs 13 and 14 (override
## with SMOKE_DATABASE_URL / SMOKE_BROKER_URL / SMOKE_CACHE_URL). See scripts/smoke_prod.sh.
smoke-prod:
	PYTHON=$(PYTHON) scripts/smoke_prod.sh

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: install
	DJANGO_SETTINGS_MODULE=agentmesh.settings.test $(BIN)/python manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

clean:
	rm -rf var/broker var/cache var/test-db*.sqlite3
