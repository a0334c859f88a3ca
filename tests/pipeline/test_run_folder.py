"""`mpetl run --out D`: nothing a run wrote is overwritten by another run (issue 24).

Rerunning into the same --out used to replace deferred.csv (2 rows) with a header-only file and lose
the first summary. Now a D holding another run's outputs is refused in one line naming that run,
`--replace` removes them first and this run's deferred.csv takes the replaced file's rows, and a D
a live run is writing is never written by a second process.
"""

from __future__ import annotations

import csv
import fcntl
import os
from pathlib import Path

import orjson
import pytest

from tests.reliability.harness import NOW, cli, config_for, generic_source, run_args, write_orders
from tests.support import cli_errors

pytestmark = pytest.mark.usefixtures("ledger_backend")

DOWN = "http://127.0.0.1:9"


def _setup(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two orders five days old (deferred: too old for MP) and nothing to send."""
    tids = write_orders(tmp_path / "orders.csv", prefix="OLD", clients=1, per_client=2, hours_ago=120.0, now=NOW)
    return config_for(tmp_path, [generic_source(tmp_path / "orders.csv")], endpoint=DOWN), tids


def _deferred(folder: Path) -> list[str]:
    with (folder / "deferred.csv").open(newline="") as handle:
        return sorted(row["event_param.transaction_id"] for row in csv.DictReader(handle))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_rerun_into_the_same_out_is_refused_and_replace_keeps_every_deferred_row(tmp_path):
    config, tids = _setup(tmp_path)
    out = tmp_path / "out"
    first = cli(*run_args(config, out))
    assert first.code == 0, first.stderr
    run1 = orjson.loads((out / "summary.json").read_bytes())["run_id"]
    assert _deferred(out) == tids
    before = _files(out)

    again = cli(*run_args(config, out))
    assert again.code == 2
    assert cli_errors(again.stderr) == [
        f"{out}: holds the outputs of run {run1}; choose a new --out folder, or pass --replace to remove them first"]
    assert _files(out) == before  # not one byte changed

    replaced = cli(*run_args(config, out, "--replace"))
    assert replaced.code == 0, replaced.stderr
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["run_id"] != run1 and summary["deferred"] == 0 and summary["duplicate"] == 2
    # The replaced file's rows are not lost: they are this run's deferred.csv, counted as earlier runs'.
    assert _deferred(out) == tids
    assert summary["deferred_csv"] == {"rows": 2, "this_run": 0, "earlier_runs": 2, "other_runs": 0, "recovered": []}
    assert (out / ".mpetl-run").read_text().strip() == summary["run_id"]
    assert '"event":"outputs_replaced"' in replaced.stderr

    elsewhere = cli(*run_args(config, tmp_path / "next"))
    assert elsewhere.code == 0 and _deferred(tmp_path / "next") == []  # each row in exactly one deferred.csv


def test_a_folder_with_other_files_is_never_mixed_into(tmp_path):
    config, _ = _setup(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    for extra in ((), ("--replace",)):
        result = cli(*run_args(config, out, *extra))
        assert result.code == 2
        assert "holds 1 file(s) mpetl did not write (e.g. 'notes.txt')" in result.stderr
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_leftovers_of_a_run_that_never_began_are_cleared(tmp_path):
    # A run refused with exit 5 (or killed before it began) leaves an unnamed marker and maybe an
    # empty rejects.ndjson: outputs from no run, which the next run may clear and use.
    config, tids = _setup(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".mpetl-run").write_text("")
    (out / "rejects.ndjson").write_text("")
    result = cli(*run_args(config, out))
    assert result.code == 0, result.stderr
    assert _deferred(out) == tids


def test_a_folder_a_live_run_is_writing_is_refused_even_with_replace(tmp_path):
    config, _ = _setup(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".mpetl-run", os.O_CREAT | os.O_RDWR)
    try:
        os.write(fd, b"20261121T060000Z-abcdef\n")
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a live run holds while it runs
        result = cli(*run_args(config, out, "--replace"))
    finally:
        os.close(fd)
    assert result.code == 2
    assert "run 20261121T060000Z-abcdef is writing this folder now" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [".mpetl-run"]


def test_a_dry_run_may_not_replace_the_deferred_rows_of_a_send(tmp_path):
    config, tids = _setup(tmp_path)
    out = tmp_path / "out"
    assert cli(*run_args(config, out)).code == 0
    before = _files(out)
    dry = cli(*run_args(config, out, "--dry-run", "--replace"))
    assert dry.code == 2 and "only a send (not a dry run) may replace it" in dry.stderr
    assert _files(out) == before and _deferred(out) == tids
