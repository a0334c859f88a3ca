#!/usr/bin/env bash
# `make run`: the nightly job on data/samples/ against the project's own local MP endpoint (the run
# starts and stops it), then reconciliation of what was sent against the endpoint's GA4-shaped store.
# The samples are historical exports, so the night is simulated the way docs/ledger.md says to: the
# process clock (libfaketime) starts at the morning after their last day. `--now` could not do it:
# it only selects rows, and an event's age is always the wall clock's, as it is Google's.
set -uo pipefail
cd "$(dirname "$0")/.."
MPETL=${MPETL:-.venv/bin/mpetl}
CONFIG=jobs/configs/samples.toml
NOW=${SAMPLES_NOW:-2026-11-21T06:00:00Z}
OUT=out/samples
# The local endpoint's secret: never a real Google secret, whatever the environment holds.
export MP_API_SECRET=local-samples-secret

mkdir -p "$OUT"
bash jobs/system_deps.sh faketime || exit 2
FAKETIME_LIB=$(compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" | head -n 1)
export LD_PRELOAD="$FAKETIME_LIB" FAKETIME="@${NOW//[TZ]/ }" FAKETIME_DONT_FAKE_MONOTONIC=1 TZ=UTC
# --replace: each `make run` shows the latest run (the previous run's deferred rows move into this one's deferred.csv).
"$MPETL" run --config "$CONFIG" --out "$OUT/run" --replace --now "$NOW" >"$OUT/run.log" 2>"$OUT/run.stderr.log"
run_code=$?
python3 - "$OUT/run/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"run {s['run_id']}: {s['equation']}")
for name, src in s["sources"].items():
    print(f"  {name:<11} rows {src['rows_in']:>4}  sent {src['sent']:>4}  filtered {src['filtered']:>3}  "
          f"rejected {src['rejected']:>3}  duplicate {src['duplicate']:>3}  deferred {src['deferred']:>3}  "
          f"outside_window {src['outside_window']:>2}  failed {src['failed']:>3}")
print("  filtered (not conversions, not errors): "
      + (", ".join(f"{code} {rows}" for code, rows in s["filtered_codes"].items()) or "none"))
print(f"  events without session_id: {s['no_session']} (a session cookie we could not read: "
      f"{s['session_cookie_unparsed']}); with a session GA will no longer attribute (started "
      f"> 24 h before sending): {s['session_too_old_to_attribute']}; personal data detectors fired: {s['detectors'] or 'none'}")
PY
"$MPETL" -q reconcile --config "$CONFIG" --out "$OUT/reconcile" --since 2026-11-17 --until 2026-11-21 --now "$NOW"
rec_code=$?
echo "outputs: $OUT/run (summary.json, rejects.ndjson, deferred.csv, privacy_manifest.json), $OUT/reconcile (reconciliation.html …)"
echo "exit codes: run $run_code, reconcile $rec_code"
[ "$run_code" -ne 0 ] && exit "$run_code"
exit "$rec_code"
