"""jobs/nightly.sh as cron runs it: yesterday in the property's zone, one run at a time, a folder per run."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
import pytest

from etl.collector import FaultOptions, read_store, spawn_collector
from etl.load import open_ledger
from tests.reconcile.builders import export_row, write_store
from tests.support import REPO, SAMPLES_NOW, files_containing, pinned_clock_env, samples_config, timed_when_first_seen

NIGHTLY = REPO / "jobs" / "nightly.sh"
SECRET = "SENTINEL-SECRET-nightly-7f3a"
MID = "G-K7QW2ZP9LM"
PINNED = datetime.fromisoformat(SAMPLES_NOW.replace("Z", "+00:00"))


def nightly_env(secret: str | None = SECRET) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MP_API_SECRET", "MPETL_OUT")}
    if secret:
        env["MP_API_SECRET"] = secret
    return pinned_clock_env(env)  # the night is simulated by the process clock, as docs/ledger.md says


def nightly(config: Path, out_root: Path, *extra: str, secret: str | None = SECRET) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(NIGHTLY), str(config), "--now", SAMPLES_NOW, "--out-root", str(out_root), *extra],
                          capture_output=True, text=True, env=nightly_env(secret), timeout=120)


def yesterday_window(zone: str) -> tuple[str, datetime, datetime]:
    """What "yesterday" means at the pinned clock in `zone`: the folder name and the UTC bounds."""
    tz = ZoneInfo(zone)
    today = PINNED.astimezone(tz).date()
    day = today - timedelta(days=1)
    return (day.isoformat(), datetime.combine(day, dtime(), tz).astimezone(UTC),
            datetime.combine(today, dtime(), tz).astimezone(UTC))


def read_json(path: Path) -> dict:
    return orjson.loads(path.read_bytes())


def sent_events(ledger: Path) -> pd.DataFrame:
    with open_ledger(ledger, read_only=True) as db:
        return db.for_reconcile(since="19700101")


def test_nightly_sends_yesterday_reconciles_and_a_rerun_sends_nothing_twice(tmp_path):
    config = samples_config(tmp_path, endpoint="local")
    out = tmp_path / "out"
    day, since, until = yesterday_window("Europe/London")  # the samples property's reporting zone

    first = nightly(config, out)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = read_json(out / "nightly" / day / "latest" / "run" / "summary.json")
    first_dir = out / "nightly" / day / f"run-{summary['run_id']}"  # the folder is named by the run it holds
    assert summary["window"] == {"since": since.isoformat(), "until": until.isoformat()}
    assert summary["sent"] > 0 and summary["failed"] == 0
    # Only yesterday's events were sent: the ledger's dates (property zone) are that one day, but for
    # refunds timed when first seen.
    sent = sent_events(tmp_path / "state" / "ledger.sqlite")
    assert set(sent.loc[~timed_when_first_seen(sent), "event_date"]) == {day.replace("-", "")}
    report = read_json(first_dir / "reconcile" / "reconciliation.json")
    # Refunds timed at the wall clock are today's: tomorrow night reconciles them with today's events.
    assert report["verdict"] == "reconciled" and report["totals"]["sent"] == int((sent["event_date"] == day.replace("-", "")).sum())
    assert (out / "nightly" / "latest").resolve() == first_dir.resolve()
    assert '"event":"nightly_finished","exit_code":0' in first.stderr
    first_summary = (first_dir / "run" / "summary.json").read_bytes()
    # One summary format on stdout (not a terminal): a JSON line for the run, one for the reconciliation.
    lines = [orjson.loads(line) for line in first.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["summary", "reconcile"]
    assert lines[0]["sent"] == summary["sent"] and lines[1]["verdict"] == "reconciled"
    assert all(line.get("level") for line in map(orjson.loads, first.stderr.splitlines()))  # every log line

    # cron retried the same night: the ledger has it all, nothing is sent again, and the first run's
    # outputs are still there as they were (the retry has a folder of its own).
    second = nightly(config, out)
    assert second.returncode == 0, second.stderr[-2000:]
    again = read_json(out / "nightly" / "latest" / "run" / "summary.json")
    assert again["sent"] == 0 and again["duplicate"] == summary["sent"]
    assert (first_dir / "run" / "summary.json").read_bytes() == first_summary
    assert sorted(p.name for p in (out / "nightly" / day).iterdir()) == sorted(
        ["latest", first_dir.name, f"run-{again['run_id']}"])
    assert (out / "nightly" / day / "latest").resolve() == (out / "nightly" / day / f"run-{again['run_id']}").resolve()
    assert len(read_store(tmp_path / "state" / "collector")) == summary["sent"]
    assert files_containing(tmp_path, SECRET) == []
    assert SECRET not in first.stdout + first.stderr + second.stdout + second.stderr


def test_second_nightly_refuses_to_start_while_the_first_runs(tmp_path):
    # A slow endpoint (3 s a request) keeps the first run busy while the second one starts.
    zone = "America/New_York"  # also checks that "yesterday" is the property's day, not UTC's
    with spawn_collector(tmp_path / "store", measurement_id=MID, api_secret=SECRET, timezone=zone, now=PINNED,
                         faults=FaultOptions(latency_ms=3000)) as collector:
        config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir,
                                property={"timezone": zone})
        out = tmp_path / "out"
        first_log = tmp_path / "first.log"
        with first_log.open("w") as log:
            first = subprocess.Popen(["bash", str(NIGHTLY), str(config), "--now", SAMPLES_NOW, "--out-root", str(out)],
                                     stdout=log, stderr=subprocess.STDOUT, env=nightly_env())
        try:
            deadline = time.monotonic() + 30
            while '"nightly_started"' not in first_log.read_text() and time.monotonic() < deadline:
                assert first.poll() is None, first_log.read_text()
                time.sleep(0.05)
            started = time.monotonic()
            second = nightly(config, out)
            assert first.poll() is None, "the first run ended before the second started: the test proves nothing"
            assert second.returncode == 5
            assert "another nightly run holds" in second.stderr and "refusing to start" in second.stderr
            assert time.monotonic() - started < 10  # refused at once, did not queue behind the first
            assert first.wait(timeout=90) == 0, first_log.read_text()[-2000:]
        finally:
            if first.poll() is None:
                first.kill()
    day, since, _ = yesterday_window(zone)
    summary = read_json(out / "nightly" / day / "latest" / "run" / "summary.json")
    assert summary["window"]["since"] == since.isoformat()
    assert summary["sent"] > 0 and summary["failed"] == 0
    assert '"nightly_started"' not in second.stderr  # it never began a run


def test_exit_code_is_the_worst_of_run_and_reconcile(tmp_path):
    # The endpoint answers 2xx but records nothing (what GA does with events it drops): the run itself
    # succeeds, reconciliation on the final date finds them missing, and cron must see exit 3.
    # The site's own tag kept being exported that day, so the export can judge the date (an export
    # with no table for it would be "export not available", exit 6, not a list of missing events).
    day, _, _ = yesterday_window("Europe/London")
    write_store(tmp_path / "store", [export_row("WEB-1", day.replace("-", ""), run_marker=None)])
    with spawn_collector(tmp_path / "store", measurement_id=MID, api_secret=SECRET, timezone="Europe/London",
                         now=PINNED, faults=FaultOptions(drop_rate=1.0)) as collector:
        config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir)
        result = nightly(config, tmp_path / "out")
    assert result.returncode == 3, result.stderr[-2000:]
    assert '"nightly_run_finished","exit_code":0' in result.stderr
    assert '"nightly_reconcile_finished","exit_code":3' in result.stderr
    assert read_json(tmp_path / "out" / "nightly" / day / "latest" / "reconcile" / "reconciliation.json")["verdict"] == \
        "not_reconciled"


@pytest.mark.parametrize(("args", "message"), [
    ((), "config file not found"),
    (("--days", "4"), "--days must be 1, 2 or 3"),
])
def test_bad_invocation_exits_2_before_taking_the_lock(tmp_path, args, message):
    missing = tmp_path / "nope.toml"
    result = nightly(missing if not args else samples_config(tmp_path, endpoint="local"), tmp_path / "out", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.rglob("*.nightly.lock"))


def test_no_secret_means_exit_2_and_nothing_sent(tmp_path):
    config = samples_config(tmp_path, endpoint="local")
    result = nightly(config, tmp_path / "out", secret=None)
    assert result.returncode == 2
    assert "no API secret" in result.stderr
    assert not (tmp_path / "state" / "collector").exists() or read_store(tmp_path / "state" / "collector").empty


def test_the_installed_command_runs_outside_a_checkout_with_only_mpetl_on_path(tmp_path):
    # cron outside the repo: no .venv next to the script, no python3 on PATH, just the installed command.
    bin_dir, jobs = tmp_path / "bin", tmp_path / "elsewhere" / "jobs"
    bin_dir.mkdir()
    jobs.mkdir(parents=True)
    (bin_dir / "mpetl").symlink_to(REPO / ".venv" / "bin" / "mpetl")
    (jobs / "nightly.sh").write_text(NIGHTLY.read_text())
    config = samples_config(tmp_path, endpoint="local")
    env = {**nightly_env(), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    env.pop("VIRTUAL_ENV", None)
    out = tmp_path / "out"
    wrapped = subprocess.run(["bash", str(jobs / "nightly.sh"), str(config), "--now", SAMPLES_NOW, "--out-root", str(out)],
                             capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert wrapped.returncode == 0, wrapped.stderr[-2000:]
    direct = subprocess.run(["mpetl", "nightly", "--config", str(config), "--now", SAMPLES_NOW, "--out-root", str(out)],
                            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert direct.returncode == 0, direct.stderr[-2000:]
    day, _, _ = yesterday_window("Europe/London")
    assert read_json(out / "nightly" / day / "latest" / "run" / "summary.json")["sent"] == 0  # the second: all duplicates
