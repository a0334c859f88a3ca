# Two set-up commands, each self-contained on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint clean airflow-venv system-deps

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

# Debian packages the tests need (faketime, postgresql, chromium), installed when missing.
system-deps:
	bash jobs/system_deps.sh faketime postgresql chromium

test: $(STAMP) airflow-venv system-deps
	$(VENV)/bin/ruff check etl tests bench jobs
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check etl tests bench jobs

clean:
	rm -rf $(VENV) .venv-airflow out state .pytest_cache
