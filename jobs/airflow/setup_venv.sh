#!/usr/bin/env bash
# Create .venv-airflow: real Apache Airflow 3.x plus this project, for the DAG and its tests.
#
# Why a second venv: Airflow pins a large dependency set of its own; keeping it apart means the
# main .venv (what `make run` and the fast tests use) never moves because of Airflow. The project is
# installed editable, so the DAG always runs the code in this work tree.
#
# Idempotent: a stamp file records the inputs (Airflow version + pyproject.toml digest); a second run
# with the same inputs returns at once. Quiet: pip's output goes to a log file, shown only on failure.
#
# Usage: bash jobs/airflow/setup_venv.sh            (from anywhere; paths are relative to the repo)
#        AIRFLOW_VENV=/path PYTHON=python3.11 bash jobs/airflow/setup_venv.sh
set -euo pipefail

AIRFLOW_VERSION="3.3.2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${AIRFLOW_VENV:-$ROOT/.venv-airflow}"
# python3.11 when installed, else python3 if both can use its version: mpetl needs 3.11+, Airflow 3.3
# is tested with 3.10-3.14 (apache/airflow README, "Apache Airflow is tested with").
if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
STAMP="$VENV/.installed-stamp"
LOG="$VENV/.install.log"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "setup_venv: $PYTHON not found (set PYTHON to a Python 3.11-3.14 interpreter)" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 14))'; then
    echo "setup_venv: $PYTHON is $("$PYTHON" -V 2>&1); Airflow $AIRFLOW_VERSION with mpetl needs Python 3.11-3.14 (set PYTHON)" >&2
    exit 2
fi

want="airflow=$AIRFLOW_VERSION pyproject=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/airflow" ]]; then
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
{
    "${pip[@]}" --upgrade pip
    # One resolve for both, so pip finds versions that satisfy Airflow and the project together
    # (a conflict fails here, loudly, instead of silently downgrading one of them later).
    "${pip[@]}" "apache-airflow==$AIRFLOW_VERSION" -e "$ROOT"
} >"$LOG" 2>&1 || {
    echo "setup_venv: installing apache-airflow==$AIRFLOW_VERSION and mpetl into $VENV failed; last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
}
"$VENV/bin/python" -m pip check >>"$LOG" 2>&1 || {
    echo "setup_venv: pip check found broken requirements in $VENV (see $LOG)" >&2
    tail -n 30 "$LOG" >&2
    exit 1
}
echo "$want" >"$STAMP"
