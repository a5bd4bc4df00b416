# Two commands on a fresh machine: `make run` (the whole stack) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: install run test test-quick lint migrate clean bench chromium compose

install: $(VENV)/.installed

# The pinned dependencies, then the extension itself, editable: the suite imports
# src/flask_email_signin.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

migrate: install
	$(BIN)/flask db upgrade

## Redis (started if none answers), SMTP inbox, Celery worker and gunicorn on :8000.
## /metrics adds up both gunicorn workers and the Celery worker: a multiprocess directory,
## emptied at each start.
run: migrate
	rm -rf instance/metrics && mkdir -p instance/metrics
	PROMETHEUS_MULTIPROC_DIR="$(abspath instance/metrics)" PATH="$(abspath $(BIN)):$$PATH" \
	  $(BIN)/honcho start -f Procfile

## The whole suite against real Redis, SMTP, Celery and database servers.
test: install chromium compose
	$(BIN)/pytest

## The in-process tests only: no gunicorn, worker or browser processes (`live` marker).
test-quick: install
	$(BIN)/pytest -m "not live"

## Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

## A compose command, so the suite validates docker-compose.yml (`config` needs no engine).
compose:
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
	  || (apt-get update && apt-get install -y docker-compose)

## Benchmark (bench/): the real stack on loopback under wrk; writes bench/results/<date>.{json,md,png}.
## Users go to a private database on the local PostgreSQL when one answers (as in production),
## else SQLite; BENCH_DATABASE_URL=postgresql+psycopg://... picks another server.
bench: install
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	BENCH_DATABASE_URL="$${BENCH_DATABASE_URL:-$$(pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
	  && echo postgresql+psycopg://postgres@127.0.0.1:5432/postgres)}" $(BIN)/python -m bench

lint: install
	$(BIN)/ruff check src app worker tests examples config.py wsgi.py
	$(BIN)/mypy

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
