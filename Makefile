# Two commands on a fresh machine: `make run` (the whole stack) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: install translations messages run test test-quick lint migrate clean bench chromium nginx compose

install: $(VENV)/.installed

# The pinned dependencies, then the extension itself, editable: the suite imports
# src/flask_email_signin.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

## Compile the message catalogues (.po -> .mo; the .mo files are never committed).
## Run before the app and the suite, so edited catalogues always take effect.
translations: install
	$(BIN)/pybabel compile -D flask_email_signin -d src/flask_email_signin/translations

## After changing a message in the code: refresh the template and every catalogue.
messages:
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output \
	  --project=flask-email-signin --version=1.0.0 --copyright-holder=flask-email-signin \
	  -o src/flask_email_signin/translations/flask_email_signin.pot .
	$(BIN)/pybabel update -D flask_email_signin --no-fuzzy-matching --ignore-obsolete \
	  -i src/flask_email_signin/translations/flask_email_signin.pot -d src/flask_email_signin/translations

migrate: install
	$(BIN)/flask db upgrade

## Redis (started if none answers), SMTP inbox, Celery worker and gunicorn on :8000.
## /metrics adds up both gunicorn workers and the Celery worker: a multiprocess directory,
## emptied at each start.
run: migrate translations
	rm -rf instance/metrics && mkdir -p instance/metrics
	PROMETHEUS_MULTIPROC_DIR="$(abspath instance/metrics)" PATH="$(abspath $(BIN)):$$PATH" \
	  $(BIN)/honcho start -f Procfile

## The whole suite against real Redis, SMTP, Celery and database servers.
test: install translations chromium nginx compose
	$(BIN)/pytest

## The in-process tests only: no gunicorn, worker or browser processes (`live` marker).
test-quick: install translations
	$(BIN)/pytest -m "not live"

# Installs Debian packages when it can (as root, with apt-get): `$(call apt_install,package)`.
apt_install = { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq >/dev/null && apt-get install -y -qq $(1) >/dev/null; }

## Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
chromium:
	@command -v chromium >/dev/null || $(call apt_install,chromium) || { echo "make test needs \
	Chromium for the browser tests: install it (Debian: apt-get install chromium), then rerun." >&2; exit 1; }

## Debian's nginx: the suite runs deploy/nginx.conf in front of gunicorn, as compose does.
nginx:
	@test -x /usr/sbin/nginx || $(call apt_install,nginx) || { echo "make test needs nginx for \
	the deployment tests: install it (Debian: apt-get install nginx), then rerun." >&2; exit 1; }

## docker-compose.yml is always validated against the Compose Specification's schema
## (check-jsonschema, from requirements-dev.txt). A compose command, when there is one,
## also runs `config`; nothing is installed for it.
compose:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
	  || echo "make test: no compose command; docker-compose.yml is checked against the \
	Compose Specification schema only (docker compose config also runs where Docker is)." >&2

## Benchmark (bench/): the real stack on loopback under wrk; writes bench/results/<date>.{json,md,png}.
## Users go to a private database on the local PostgreSQL when one answers (as in production),
## else SQLite; BENCH_DATABASE_URL=postgresql+psycopg://... picks another server.
bench: install translations
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	BENCH_DATABASE_URL="$${BENCH_DATABASE_URL:-$$(pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
	  && echo postgresql+psycopg://postgres@127.0.0.1:5432/postgres)}" $(BIN)/python -m bench

lint: install
	$(BIN)/ruff check src app worker tests examples config.py wsgi.py
	$(BIN)/mypy

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
