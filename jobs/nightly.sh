#!/usr/bin/env bash
# Nightly job for cron: a thin wrapper around the installed command `mpetl nightly`.
#
# Usage: jobs/nightly.sh CONFIG [--now ISO] [--days N] [--out-root DIR] [-q|-v]
#
# Everything (yesterday in the property's zone, the lock, run, reconcile, the worst exit code) lives
# in `mpetl nightly --config CONFIG …` (etl/nightly.py); prefer calling that directly from cron
# (jobs/crontab.example). This script only finds `mpetl`: the checkout's .venv when there is one,
# else the one on PATH, and keeps the old "CONFIG first" calling convention.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/mpetl" ]]; then
    MPETL="$ROOT/.venv/bin/mpetl"
else
    MPETL="$(command -v mpetl || true)"
fi
if [[ -z "$MPETL" ]]; then
    echo "nightly: error: the mpetl command is not installed (pip install the package, or run make)" >&2
    exit 2
fi
if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: $(basename "$0") CONFIG [--now ISO] [--days N] [--out-root DIR]" >&2
    exit 2
fi
config="$1"
shift
exec "$MPETL" nightly --config "$config" "$@"
