"""kill -9 (and SIGTERM) in every output phase, then rerun: each deferred event in exactly one whole
deferred.csv and once in the historical table; no partial file under a final name; the equation holds.

Issue 23's reproduction: a run killed before or during its send, or while deferred.csv or the
historical table was written, left its deferred events in no output at all ("deferred 0, duplicate
20000" on the rerun, exit 0), or a partial deferred.csv under its final name.

Each trial runs the real CLI on an export of fresh orders (sent to a collector process with a little
latency) and old ones (deferred), with a local historical table, and stops it in one phase:
* polled from the ledger: while planning (before the send), and mid-send;
* at a failpoint (etl/failpoints.py: the process stops itself there, the trial kills it), because the
  windows between a rename and the ledger's mark last microseconds: after the claim, half-way through
  writing, after the files are recorded whole but before the rename, after the rename but before the
  mark — for deferred.csv and for the historical table (files; BigQuery through bqemulator: the load
  job recorded but not submitted, and loaded but not marked).
Then a rerun into a new folder (and, where a dead run's file was finished rather than rewritten, a
second one, which must write nothing). Every deferred.csv on disk must be the whole output its run's
record says it is (same rows), the union of them all holds each old order once, and so does the
table; no temporary file is left and no output unsettled.
"""

from __future__ import annotations

import csv
import os
import secrets
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from etl.failpoints import ENV as FAILPOINT_ENV
from etl.load import open_ledger
from tests.reliability.harness import (
    NOW,
    RUNNER,
    SECRET,
    assert_no_traceback,
    balanced,
    cli,
    generic_source,
    ledger_counts,
    ledger_path,
    run_args,
    stored_events,
    write_orders,
)
from tests.support import cli_errors, samples_config

pytestmark = pytest.mark.usefixtures("ledger_backend")

CLIENTS, PER_CLIENT = 10, 30  # 300 fresh events in 20 requests
OLD = 1_500  # deferred: more than the 1,000 rows after which the writers' failpoints stop the process
POLL_S = 0.005

KILL, TERM = signal.SIGKILL, signal.SIGTERM
# (phase, signal, whether the stopped run's folder ends with a whole deferred.csv, what the rerun does
# with the dead run's unsettled output): every output phase killed with SIGKILL, some with SIGTERM
# (the run finishes its outputs whole and exits).
TRIALS = [
    ("planning", KILL, False, None),
    ("mid-send", KILL, False, None),
    ("deferred_csv.claimed", KILL, False, "released"),  # nothing under a final name: offered again
    ("data_import.writing", KILL, False, "released"),  # a half-written temporary file: deleted
    ("data_import.writing", TERM, True, None),
    ("deferred_csv.written", KILL, True, "completed"),  # whole but not renamed: the rename is finished
    ("deferred_csv.renamed", KILL, True, "completed"),  # renamed but not marked: marked, not rewritten
    ("historical.claimed", KILL, True, "released"),
    ("historical.writing", KILL, True, "released"),
    ("historical.written", KILL, True, "completed"),
    ("historical.renamed", KILL, True, "completed"),
]


def _orders(work: Path, tag: str = "") -> tuple[set[str], set[str]]:
    """One export: OLD orders five days old first (planned in the first chunks), then the fresh ones."""
    old = write_orders(work / "old.csv", prefix=f"OLD{tag}", clients=OLD // 10, per_client=10, hours_ago=120.0)
    fresh = write_orders(work / "fresh.csv", prefix=f"NEW{tag}", clients=CLIENTS, per_client=PER_CLIENT, hours_ago=20.0)
    lines = (work / "old.csv").read_text().splitlines() + (work / "fresh.csv").read_text().splitlines()[1:]
    (work / "orders.csv").write_text("\n".join(lines) + "\n")
    return set(old), set(fresh)


def _config(work: Path, endpoint: str, historical: dict | None = None, **destination) -> Path:
    """The samples config with only `work/orders.csv`, fast backoff, and the given [historical] table."""
    dest = {"backoff_base_s": 0.02, "backoff_max_s": 0.2, **destination}
    return samples_config(work, endpoint=endpoint, sources=[generic_source(work / "orders.csv")], destination=dest,
                          **({"historical": historical} if historical else {}))


def _start(args: list[str], failpoint: str | None) -> subprocess.Popen[bytes]:
    extra = {FAILPOINT_ENV: failpoint} if failpoint else {}
    return RUNNER.popen(*args, env={"MP_API_SECRET": SECRET, **extra})


def _stopped(pid: int) -> bool:
    """The process stopped itself at its failpoint (state T in /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def _stop_in(proc: subprocess.Popen[bytes], phase: str, ledger, sig: signal.Signals, total: int) -> str:
    deadline = time.monotonic() + 60
    if phase == "planning":
        ready = lambda: ledger_counts(ledger).get("deferred", 0) >= 1000  # noqa: E731
    elif phase == "mid-send":
        ready = lambda: 25 <= ledger_counts(ledger).get("sent", 0) < total  # noqa: E731
    else:
        ready = lambda: _stopped(proc.pid)  # noqa: E731
    while not ready():
        assert proc.poll() is None, f"{phase}: the run ended first ({proc.returncode}): {proc.stderr.read()[-1500:]}"
        assert time.monotonic() < deadline, f"{phase}: never reached"
        time.sleep(POLL_S)
    proc.send_signal(sig)
    if sig != signal.SIGKILL:
        proc.send_signal(signal.SIGCONT)  # a stopped process takes its SIGTERM when it runs again
    _, stderr = proc.communicate(timeout=60)
    return stderr.decode(errors="replace")


def _marker_run(folder: Path) -> str | None:
    marker = folder / ".mpetl-run"
    return marker.read_text().strip() or None if marker.exists() else None


def _check_deferred_files(work: Path, ledger_location, old: set[str]) -> dict[str, int]:
    """Every deferred.csv is whole (its run's record: taken, same rows, index beside it); each old order
    is in exactly one of them. Returns rows per folder."""
    seen: Counter[str] = Counter()
    rows_per_folder = {}
    with open_ledger(ledger_location, read_only=True) as ledger:
        for path in sorted(work.rglob("deferred.csv")):
            with path.open(newline="") as handle:
                tids = [row["event_param.transaction_id"] for row in csv.DictReader(handle)]
            with (path.parent / "deferred_index.csv").open(newline="") as handle:
                assert len(list(csv.DictReader(handle))) == len(tids), f"{path}: index and file disagree"
            run_id = _marker_run(path.parent)
            claim = ledger.output_claim(run_id, "deferred_csv")
            assert claim is not None and claim.state == "taken" and claim.rows == len(tids), (
                f"{path}: not the whole output of run {run_id} ({claim})")
            seen.update(tids)
            rows_per_folder[path.parent.name] = len(tids)
    assert set(seen) == old, f"{len(old - set(seen))} deferred events in no deferred.csv"
    assert max(seen.values()) == 1, f"{sum(n - 1 for n in seen.values())} deferred events written twice"
    return rows_per_folder


def _historical_tids(folder: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for file in folder.glob("historical_*.ndjson"):
        for line in file.read_bytes().splitlines():
            counts[orjson.loads(line)["ecommerce"]["transaction_id"]] += 1
    return counts


def _partials(work: Path) -> list[Path]:
    return [p for p in work.rglob(".*.partial")]


def _rerun(config: Path, out: Path) -> dict:
    result = cli(*run_args(config, out, "--chunk-rows", "1000"))
    assert_no_traceback(result.stdout, result.stderr)
    assert result.code == 0, f"rerun exit {result.code}: {result.stderr[-1500:]}"
    summary = result.summary(out)
    assert balanced(summary)
    csv_counts = summary["deferred_csv"]
    assert summary["deferred_csv_rows"] == csv_counts["rows"] == csv_counts["this_run"] + csv_counts["earlier_runs"]
    return summary


def _trial(trial: int, phase: str, sig: signal.Signals, whole_in_killed: bool, settled: str | None, work: Path,
           config: Path, server_dir: Path) -> Counter[str]:
    """One kill and its reruns; the figures it adds (assertion errors name the trial)."""
    figures: Counter[str] = Counter()
    old, fresh = _orders(work, f"{trial:02d}-")
    hist = work / "hist"
    ledger = ledger_path(work)
    proc = _start(run_args(config, work / "killed", "--chunk-rows", "1000"), phase if "." in phase else None)
    stderr = _stop_in(proc, phase, ledger, sig, len(fresh))
    assert_no_traceback(stderr)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, f"trial {trial} ({phase}): exit {proc.returncode}"
        figures["kills"] += 1
    else:  # SIGTERM: in-flight requests finish, the outputs are written whole, the run says so
        assert proc.returncode in (0, 8), f"trial {trial} ({phase}, SIGTERM): exit {proc.returncode}: {stderr[-1500:]}"
        assert (work / "killed" / "summary.json").exists()
        figures["sigterms"] += 1
    first = _rerun(config, work / "rerun")
    if settled == "completed":  # a dead run's file was finished, not rewritten: a later run writes nothing
        second = _rerun(config, work / "rerun2")
        assert second["deferred_csv_rows"] == 0 and second["historical"]["rows"] == 0
    with open_ledger(ledger, read_only=True) as db:
        assert db.unsettled_outputs("deferred_csv") == [] and db.unsettled_outputs("historical") == []
    rows = _check_deferred_files(work, ledger, old)
    assert rows.get("killed", 0) + rows["rerun"] == len(old) and rows.get("rerun2", 0) == 0
    # The equation: what the rerun wrote = what it deferred itself (rows the killed run never planned)
    # + what the killed run deferred and no file took.
    assert first["deferred_csv"]["this_run"] == first["deferred"]
    assert first["deferred_csv"]["earlier_runs"] == len(old) - rows.get("killed", 0) - first["deferred"]
    assert ("killed" in rows) == whole_in_killed, f"trial {trial} ({phase}): {rows}"
    recovered = first["deferred_csv"]["recovered"] + first["historical"].get("recovered", [])
    assert [r["outcome"] for r in recovered] == ([settled] if settled else []), f"trial {trial} ({phase})"
    table = _historical_tids(hist)
    assert set(table) == old and max(table.values()) == 1, f"trial {trial} ({phase}): historical table {table.total()}"
    assert _partials(work) == [], f"trial {trial} ({phase}): temporary files left behind"
    sent = {tid for _, tid in stored_events(server_dir, f"NEW{trial:02d}-")}
    assert sent == fresh, f"trial {trial} ({phase}): {len(fresh - sent)} fresh events lost"
    figures["deferred_events"] += len(old)
    if settled:
        figures[f"dead_outputs_{settled}"] += 1
    return figures


@pytest.mark.slow
def test_kill_in_every_output_phase_then_rerun_each_deferred_event_is_written_once(tmp_path, collector,
                                                                                   record_property):
    server = collector(latency_ms=60, latency_jitter_ms=40, seed=23)
    started = time.monotonic()
    jobs = []
    for trial, spec in enumerate(TRIALS):  # configs (and PostgreSQL databases) made one at a time
        work = tmp_path / f"trial{trial:02d}"
        work.mkdir()
        config = _config(work, server.url, {"table": "historical", "path": str(work / "hist")}, concurrency=2)
        jobs.append((trial, *spec, work, config, server.data_dir))
    # Three trials at a time: each is mostly waiting on its own processes (the suite's time budget).
    with ThreadPoolExecutor(max_workers=3) as pool:
        figures = sum((f.result() for f in [pool.submit(_trial, *job) for job in jobs]), Counter())
    result = {"trials": len(TRIALS), **figures, "lost": 0, "written_twice": 0, "seconds": round(time.monotonic() - started, 1)}
    record_property("output_crash_figures", result)
    print("output crash figures:", result)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["historical.written", "historical.renamed"])
def test_kill_around_the_bigquery_load_job_then_rerun_loads_each_event_once(tmp_path, phase, bigquery_emulator):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    old = write_orders(tmp_path / "orders.csv", prefix="OLD", clients=30, per_client=10, hours_ago=120.0, now=NOW)
    table = f"crash_{phase.split('.')[1]}_{secrets.token_hex(3)}.mpetl_historical"  # the emulator is the session's
    config = _config(tmp_path, "http://127.0.0.1:9", {"table": table, "backend": "bigquery", "project": "demo",
                                                       "api_endpoint": bigquery_emulator, "timeout_s": 60.0})
    proc = _start(run_args(config, tmp_path / "killed"), phase)
    _stop_in(proc, phase, ledger_path(tmp_path), signal.SIGKILL, 0)
    assert proc.returncode == -signal.SIGKILL
    first = _rerun(config, tmp_path / "rerun")
    (settled,) = first["historical"]["recovered"]
    # Recorded but never submitted: BigQuery has no such job, its events are offered again. Loaded but
    # not marked: BigQuery says the job landed, the record is completed and nothing is loaded again.
    assert settled["outcome"] == ("released" if phase == "historical.written" else "completed")
    assert first["historical"]["rows"] == (len(old) if phase == "historical.written" else 0)
    assert _rerun(config, tmp_path / "rerun2")["historical"]["rows"] == 0
    client = bigquery.Client(project="demo", credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=bigquery_emulator))
    rows = client.query(f"SELECT h.ecommerce.transaction_id AS tid FROM `demo.{table}` AS h", timeout=60).result(timeout=60)
    assert sorted(r["tid"] for r in rows) == sorted(old)


def test_a_full_out_folder_stops_the_run_in_one_line_and_the_next_run_writes_every_deferred_row(tmp_path):
    """--out on a 64 KiB tmpfs: deferred.csv (about 300 KB) cannot be written. One line, exit 2, nothing
    marked taken (no partial file either); the next run into a roomy folder writes every row."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    old = set(write_orders(tmp_path / "orders.csv", prefix="OLD", clients=150, per_client=10, hours_ago=120.0, now=NOW))
    config = _config(tmp_path, "http://127.0.0.1:9")
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = cli(*run_args(config, full))
        assert result.code == 2
        assert cli_errors(result.stderr) == [
            f"{full}/deferred.csv: cannot write (No space left on device); choose a writable --out folder"]
        assert [p.name for p in full.iterdir() if p.name.endswith((".csv", ".partial"))] == []
    finally:
        subprocess.run(["umount", str(full)], check=True)
    ledger = ledger_path(tmp_path)
    with open_ledger(ledger, read_only=True) as db:
        (run_id,) = [r for r in db.run_ids()]
        assert db.output_claim(run_id, "deferred_csv").state == "released"
        assert db.deferred_claims(run_id, "deferred_csv")["unclaimed"] == len(old)
    summary = _rerun(config, tmp_path / "roomy")
    assert summary["deferred_csv"]["earlier_runs"] == len(old)
    assert _check_deferred_files(tmp_path, ledger, old) == {"roomy": len(old)}


@pytest.mark.slow
def test_issue_23_reproduction_killed_mid_send_then_the_rerun_writes_the_20000_old_rows(tmp_path, collector):
    """3,000 fresh + 20,000 old rows, killed mid-send: the rerun used to say "deferred 0, duplicate
    20000", exit 0, and no file ever held them."""
    server = collector(latency_ms=40, seed=7)
    old = set(write_orders(tmp_path / "old.csv", prefix="OLD", clients=2_000, per_client=10, hours_ago=120.0, now=NOW))
    fresh = set(write_orders(tmp_path / "fresh.csv", prefix="NEW", clients=120, per_client=25, hours_ago=20.0))
    lines = (tmp_path / "old.csv").read_text().splitlines() + (tmp_path / "fresh.csv").read_text().splitlines()[1:]
    (tmp_path / "orders.csv").write_text("\n".join(lines) + "\n")
    config = _config(tmp_path, server.url, concurrency=2)
    proc = _start(run_args(config, tmp_path / "killed"), None)
    _stop_in(proc, "mid-send", ledger_path(tmp_path), signal.SIGKILL, len(fresh))
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "deferred.csv").exists()
    rerun = _rerun(config, tmp_path / "rerun")
    assert rerun["deferred"] == 0 and rerun["duplicate"] >= len(old)  # deferred by the killed run, once
    assert rerun["deferred_csv"] == {"rows": len(old), "this_run": 0, "earlier_runs": len(old), "other_runs": 0,
                                     "recovered": []}
    assert _check_deferred_files(tmp_path, ledger_path(tmp_path), old) == {"rerun": len(old)}
