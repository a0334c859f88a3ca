"""Settling what a dead run's output left, file by file (etl/load/outputs.py), on real files.

The crash trials (tests/reliability/test_output_crash.py) kill real processes at each step; these
cover the branches no kill reaches: a whole file moved away by hand before the next run looked, and
something else put under a final name. The file handling is the same on both ledger backends (their
claims are tested in test_ledger_outputs.py), so these use the embedded one.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from etl.load import SqliteLedger, deliver_data_import, write_data_import
from etl.load.outputs import Staging
from tests.load.conftest import ENDPOINT, MID, T0, Clock, events_frame

HOUR = 3_600_000_000


@pytest.fixture
def ledger(tmp_path):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite", lock=True, clock=Clock())
    ledger.bind_property(MID, ENDPOINT)
    ledger.begin_run("run-dead", "send")
    keys = [f"crm|purchase|OLD{i}" for i in range(5)]
    ledger.plan(events_frame(keys, ts=T0 - 90 * HOUR), "run-dead", oldest_sendable_micros=T0 - 71 * HOUR)
    yield ledger
    ledger.close()


def _die_after_written(ledger, folder: Path) -> list[dict]:
    """What run-dead did before it was killed: claimed, wrote both files whole, recorded them."""
    folder.mkdir()
    ledger.claim_deferred("run-dead", "deferred_csv", str(folder))
    staging = Staging("run-dead")
    index = staging.file(folder / "deferred_index.csv")
    write_data_import(staging.file(folder / "deferred.csv"), index,
                      lambda: ledger.claimed_events("run-dead", "deferred_csv"), MID)
    files = staging.seal()
    ledger.output_written("run-dead", "deferred_csv", files)
    return files


def _tids(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return sorted(r["event_param.transaction_id"] for r in csv.DictReader(handle))


def test_a_whole_file_moved_away_before_anyone_looked_is_written_again_once(ledger, tmp_path):
    files = _die_after_written(ledger, tmp_path / "dead")
    Path(files[0]["tmp"]).rename(files[0]["path"])  # the index was renamed, then the kill
    Path(files[1]["tmp"]).unlink()  # ... and someone deleted the CSV's temporary file
    ledger.begin_run("run-next", "send")
    out = tmp_path / "next"
    out.mkdir()
    delivery = deliver_data_import(ledger, "run-next", out / "deferred.csv", out / "deferred_index.csv", MID)
    assert [r["outcome"] for r in delivery.recovered] == ["released"]
    assert (delivery.rows, delivery.earlier_runs) == (5, 5)
    assert _tids(out / "deferred.csv") == [f"OLD{i}" for i in range(5)]
    # The dead run's half (its index) is gone with it: no file says those events are elsewhere.
    assert sorted(p.name for p in (tmp_path / "dead").iterdir()) == []


def test_a_rename_never_replaces_what_someone_else_put_under_the_final_name(ledger, tmp_path):
    files = _die_after_written(ledger, tmp_path / "dead")
    Path(files[1]["path"]).write_text("someone's own file\n")
    ledger.begin_run("run-next", "send")
    out = tmp_path / "next"
    out.mkdir()
    delivery = deliver_data_import(ledger, "run-next", out / "deferred.csv", out / "deferred_index.csv", MID)
    assert [r["outcome"] for r in delivery.recovered] == ["released"] and delivery.rows == 5
    assert Path(files[1]["path"]).read_text() == "someone's own file\n"  # left as it was, never replaced
    assert not Path(files[1]["tmp"]).exists() and not Path(files[0]["tmp"]).exists()


def test_a_dead_runs_whole_temporary_files_are_renamed_and_marked_not_written_twice(ledger, tmp_path):
    files = _die_after_written(ledger, tmp_path / "dead")
    ledger.begin_run("run-next", "send")
    out = tmp_path / "next"
    out.mkdir()
    delivery = deliver_data_import(ledger, "run-next", out / "deferred.csv", out / "deferred_index.csv", MID)
    assert [r["outcome"] for r in delivery.recovered] == ["completed"] and delivery.rows == 0
    assert _tids(Path(files[1]["path"])) == [f"OLD{i}" for i in range(5)] and _tids(out / "deferred.csv") == []
    assert ledger.output_claim("run-dead", "deferred_csv").state == "taken"
