# `make run` serves on the embedded default (SQLite, in-memory channel layer).
# `make test` runs the suite on the embedded default, then again on
# PostgreSQL + Redis when they answer (always under CI=true).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The PostgreSQL/Redis leg; override to point at other servers.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
PYTEST_ARGS ?=
# `make serve-prod`: WEB_PROCESSES daphne processes on ports 8001.. and one clock.
WEB_PROCESSES ?= 2
PROD_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/auction
PROD_REDIS_URL ?= redis://127.0.0.1:6379/0
# `make bench ARGS=--quick`: its own database (dropped and recreated) and Redis db; see README, Performance.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/auction_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/13
ARGS ?=
BENCH_ARGS ?= $(ARGS)

.PHONY: install run serve-prod test test-embedded test-services reliability lint format clean bench screenshots

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --url http://$(HOST):$(PORT)
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

# Production settings (DEBUG off, JSON logs) over plain HTTP on this machine;
# DATABASE_URL / REDIS_URL override the PROD_* defaults. Ctrl-C stops every process.
serve-prod: install
	DATABASE_URL=$${DATABASE_URL:-$(PROD_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(PROD_REDIS_URL)} \
		WEB_PROCESSES=$(WEB_PROCESSES) $(BIN)/python manage.py serve_prod

test: install test-embedded test-services

test-embedded: install
	env -u DATABASE_URL -u REDIS_URL SQLITE_PATH=$(CURDIR)/.venv/test-db.sqlite3 \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

test-services: install
	@if DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python manage.py check_services; then \
		echo "== PostgreSQL + Redis leg =="; \
		DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python -m pytest $(PYTEST_ARGS); \
	elif [ "$$CI" = "true" ]; then \
		echo "PostgreSQL/Redis leg is mandatory under CI=true, and the services did not answer." >&2; exit 1; \
	else \
		echo "PostgreSQL or Redis did not answer: skipped the second leg (set TEST_DATABASE_URL / TEST_REDIS_URL)."; \
	fi

$(BIN)/.bench-installed: bench/requirements.txt $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $@

# The reliability tests (marker `reliability`) at full size on PostgreSQL + Redis; see docs/reliability.md.
reliability: install
	RELIABILITY_FULL=1 DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/python -m pytest -m reliability $(PYTEST_ARGS)

bench: install $(BIN)/.bench-installed
	$(BIN)/python -m bench --database-url $(BENCH_DATABASE_URL) --redis-url $(BENCH_REDIS_URL) $(BENCH_ARGS)

# A picture of every page at 1280 and 390 px wide, into docs/screenshots/ (the README shows two).
screenshots: install
	env -u DATABASE_URL -u REDIS_URL SQLITE_PATH=$(CURDIR)/.venv/screenshots.sqlite3 SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots \
		$(BIN)/python -m pytest -q -p no:cacheprovider webtests/test_screenshots.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python manage.py makemigrations --check --dry-run

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* .pytest_cache .ruff_cache staticfiles
