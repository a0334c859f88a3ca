#!/usr/bin/env bash
# Nightly job for cron: send yesterday's conversions, then reconcile the dates that became final.
#
# Usage: jobs/nightly.sh CONFIG [--now ISO] [--days N] [--out-root DIR]
#
#   CONFIG        the mpetl TOML config (property, destination, ledger, sources, reconcile)
#   --now ISO     pin the clock (tests, re-runs of a past night); default: the wall clock
#   --days N      send the last N complete days instead of 1 (1..3: GA4 takes events up to 72 h old);
#                 safe to overlap, the ledger never sends an event twice
#   --out-root D  where the dated folders go (default: $MPETL_OUT, else ./out); outputs land in
#                 D/nightly/YYYY-MM-DD/{run,reconcile}/ (the date is the last day sent) and
#                 D/nightly/latest points at the newest one
#
# Why a shell script: cron needs one command with one exit code. The window is "yesterday" in the
# property's reporting zone (GA4 reports and the export are cut in that zone, not in UTC), so a
# night's run and the export's daily table line up. A lock next to the ledger (flock, released by the
# kernel even on kill -9) keeps two nightly runs from overlapping; the second one exits 5 at once.
# The ledger has its own lock too (a manual `mpetl run` at the same time also gets exit 5).
#
# Exit code: the worst (highest) of the run's and the reconcile's: 0 ok, 2 bad input/config,
# 3 not reconciled, 4 send failures remain (the next night retries them), 5 another run is active.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXIT_BAD_INPUT=2
EXIT_LOCKED=5

usage() {
    echo "usage: $(basename "$0") CONFIG [--now ISO] [--days N] [--out-root DIR]" >&2
    exit "$EXIT_BAD_INPUT"
}

# One JSON line per step on stderr, like the rest of mpetl's logs (no secret, no personal data).
log() {
    local event="$1"
    shift
    local fields=""
    while (($#)); do
        if [[ "$2" =~ ^[0-9]+$ ]]; then fields+=",\"$1\":$2"; else fields+=",\"$1\":\"$2\""; fi
        shift 2
    done
    printf '{"ts":"%s","event":"nightly_%s"%s}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$event" "$fields" >&2
}

config="" now="" days=1 out_root="${MPETL_OUT:-out}"
while (($#)); do
    case "$1" in
        --now) [[ $# -ge 2 ]] || usage; now="$2"; shift 2 ;;
        --days) [[ $# -ge 2 ]] || usage; days="$2"; shift 2 ;;
        --out-root) [[ $# -ge 2 ]] || usage; out_root="$2"; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "nightly: unknown option $1" >&2; usage ;;
        *) [[ -z "$config" ]] || usage; config="$1"; shift ;;
    esac
done
[[ -n "$config" ]] || usage
[[ "$days" =~ ^[1-3]$ ]] || { echo "nightly: --days must be 1, 2 or 3 (GA4 takes events up to 72 h old)" >&2; exit "$EXIT_BAD_INPUT"; }

# The project's venv when there is one (cron has a bare PATH), else whatever is installed.
if [[ -x "$ROOT/.venv/bin/mpetl" ]]; then
    MPETL="$ROOT/.venv/bin/mpetl"
    PYTHON="$ROOT/.venv/bin/python"
else
    MPETL="$(command -v mpetl || true)"
    PYTHON="$(command -v python3 || true)"
fi
[[ -n "$MPETL" && -n "$PYTHON" ]] || { echo "nightly: mpetl not found (run make, or install the package)" >&2; exit "$EXIT_BAD_INPUT"; }

# The window, computed by the same config loader the run uses (relative paths, zone checks):
# [since, until) = the last N whole days in the reporting zone; reconcile from the newest date whose
# export is final (its end + provisional_hours has passed) up to the last day sent.
plan="$("$PYTHON" - "$config" "$now" "$days" <<'PY'
import sys
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from etl.config import load_config
from etl.errors import MpetlError

config_path, now_text, days = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    config = load_config(config_path)
except MpetlError as exc:
    print(f"nightly: error: {exc}", file=sys.stderr)
    sys.exit(2)
try:
    now = datetime.fromisoformat(now_text.replace("Z", "+00:00")) if now_text else datetime.now(UTC)
except ValueError:
    print("nightly: error: --now expects ISO-8601 such as 2026-11-21T06:00:00Z", file=sys.stderr)
    sys.exit(2)
now = now if now.tzinfo else now.replace(tzinfo=UTC)
zone = ZoneInfo(config.property.timezone)
today = now.astimezone(zone).date()
first_day, last_day = today - timedelta(days=days), today - timedelta(days=1)
since = datetime.combine(first_day, time(), zone).astimezone(UTC)
until = datetime.combine(today, time(), zone).astimezone(UTC)
settled = (now - timedelta(hours=config.reconcile.provisional_hours)).astimezone(zone).date()
newest_final = settled - timedelta(days=1)
reconcile_since = min(newest_final - timedelta(days=days - 1), last_day)
for value in (config.property.timezone, since.isoformat(), until.isoformat(), last_day.isoformat(),
              reconcile_since.isoformat(), str(config.ledger_path)):
    print(value)
PY
)" || exit "$EXIT_BAD_INPUT"
mapfile -t fields <<<"$plan"
zone="${fields[0]}" since="${fields[1]}" until="${fields[2]}" day="${fields[3]}"
reconcile_since="${fields[4]}" ledger="${fields[5]}"

mkdir -p "$(dirname "$ledger")"
lock="$ledger.nightly.lock"
exec 9>>"$lock"
if ! flock -n 9; then
    echo "nightly: error: another nightly run holds $lock; refusing to start (nothing sent)" >&2
    exit "$EXIT_LOCKED"
fi

day_dir="$out_root/nightly/$day"
mkdir -p "$day_dir"
now_args=()
[[ -n "$now" ]] && now_args=(--now "$now")

log started config "$config" timezone "$zone" since "$since" until "$until" out "$day_dir"
"$MPETL" run --config "$config" --out "$day_dir/run" --since "$since" --until "$until" "${now_args[@]}"
run_code=$?
log run_finished exit_code "$run_code"

"$MPETL" reconcile --config "$config" --out "$day_dir/reconcile" --since "$reconcile_since" --until "$day" "${now_args[@]}"
reconcile_code=$?
log reconcile_finished exit_code "$reconcile_code" since "$reconcile_since" until "$day"

# Swap the link in one rename, so a reader never sees it missing.
ln -sfn "$day" "$out_root/nightly/.latest.tmp" && mv -Tf "$out_root/nightly/.latest.tmp" "$out_root/nightly/latest"

code=$((run_code > reconcile_code ? run_code : reconcile_code))
log finished exit_code "$code"
exit "$code"
