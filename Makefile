# Two set-up commands, each self-contained on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: `make run` installs only what a run needs (the package and its dependencies); the test
# extras (pytest, moto, bqemulator, ga4mp, papermill, …: most of a fresh machine's install time) only for
# test, lint and bench.
RUN_STAMP := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.test-stamp

.PHONY: run test test-fast lint clean airflow-venv system-deps bench docs

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(RUN_STAMP)
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

# The suite without PostgreSQL, Airflow and Chromium, and without the slow trials (markers in
# pyproject.toml; tests/conftest.py marks every PostgreSQL test from its fixtures). Needs only faketime.
test-fast: $(STAMP)
	bash jobs/system_deps.sh faketime
	$(VENV)/bin/ruff check etl tests bench jobs
	$(PY) -m pytest -q -m "not (pg or airflow or browser or slow)"

# Issue 16's figures beside their goals, measured side by side in one run (not part of `make test`);
# results in out/bench/results.json. BENCH_BIG=1 adds the slow 5M-row dry run.
bench: $(STAMP)
	$(PY) bench/run_all.py

# The reference site (mkdocs.yml, docs/) into site/. `make test` builds it too, with --strict, in a test
# (tests/cli/test_readme.py): a broken link or anchor, or a page missing from the nav, fails the suite.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict -d site

lint: $(STAMP)
	$(VENV)/bin/ruff check etl tests bench jobs

clean:
	rm -rf $(VENV) .venv-airflow out state .pytest_cache build site
