# Two set-up commands, each self-contained on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint clean airflow-venv postgres-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	bash jobs/run_samples.sh

# Real Apache Airflow in its own venv, for the DAG tests (idempotent: a stamp skips it when unchanged).
airflow-venv:
	bash jobs/airflow/setup_venv.sh

# Debian's PostgreSQL server binaries: the PostgreSQL ledger's tests start a real server (never skipped),
# so a fresh machine gets the package here (as root), or the target fails saying what to install.
postgres-server:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "$${MPETL_TEST_PG_URL:-}" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/dev/null; \
	else echo "error: PostgreSQL server binaries missing: apt-get install -y postgresql (as root)" >&2; exit 1; fi

test: $(STAMP) airflow-venv postgres-server
	$(VENV)/bin/ruff check etl tests bench jobs
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check etl tests bench jobs

clean:
	rm -rf $(VENV) .venv-airflow out state .pytest_cache
