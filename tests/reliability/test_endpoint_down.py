"""The endpoint is down for a whole run: the run says so in one line, exits 4, and loses nothing.

The failed events stay in the ledger as `failed`; the next run (endpoint up) sends them, whether or not
its own input still holds those rows, and a later rerun of the same input sends nothing twice.
"""

from __future__ import annotations

import orjson
import pytest

from tests.reliability.harness import (
    SECRET,
    assert_no_traceback,
    balanced,
    cli,
    config_for,
    generic_source,
    ledger_path,
    ledger_rows,
    run_args,
    stored_events,
    write_orders,
)
from tests.support import cli_errors

# The whole module runs once per ledger backend: SQLite, then PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("ledger_backend")


def test_endpoint_down_exits_4_then_next_run_delivers_everything_once(tmp_path, collector, closed_port):
    first = write_orders(tmp_path / "night1.csv", prefix="N1", clients=10, per_client=3)
    down = config_for(tmp_path, [generic_source(tmp_path / "night1.csv")],
                      endpoint=f"http://127.0.0.1:{closed_port}", max_attempts=3)
    run = cli(*run_args(down, tmp_path / "out1"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 4
    stdout = run.stdout.strip().splitlines()
    assert len(stdout) == 1, "the outcome is one line a scheduler log can show"
    line = orjson.loads(stdout[0])
    assert line["failed"] == len(first) and line["sent"] == 0 and line["exit_code"] == 4
    summary = run.summary(tmp_path / "out1")
    assert balanced(summary) and summary["failed"] == len(first)
    # It says why, by error class and count: 10 requests × 3 attempts, each refused.
    assert summary["send"]["last_error"]["error"] == "ConnectError"
    assert summary["send"]["last_error"]["count"] == summary["send"]["errors"]["ConnectError"] == 30
    (error,) = cli_errors(run.stderr)
    assert error.startswith(f"{len(first)} events not delivered (they stay pending") and "last error ConnectError × 30 attempts" in error
    logged = [orjson.loads(x) for x in run.stderr.splitlines() if x.startswith("{")]
    assert all("level" in x for x in logged)
    (problem,) = [x for x in logged if x["event"] == "events_not_delivered"]
    assert problem["level"] == "error" and problem["errors"] == {"ConnectError": 30}
    assert SECRET not in run.stdout + run.stderr + (tmp_path / "out1" / "summary.json").read_text()
    assert {row["status"] for row in ledger_rows(ledger_path(tmp_path)).values()} == {"failed"}

    # Next night: the endpoint is up and the input has moved on; last night's failures go out with it.
    server = collector()
    second = write_orders(tmp_path / "night2.csv", prefix="N2", clients=4, per_client=2)
    up = config_for(tmp_path, [generic_source(tmp_path / "night2.csv")], endpoint=server.url)
    run = cli(*run_args(up, tmp_path / "out2"))
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 0, run.stderr[-2000:]
    summary = run.summary(tmp_path / "out2")
    assert balanced(summary)
    assert summary["sent"] == len(second) and summary["sent_for_earlier_runs"] == len(first)
    assert summary["send"]["events_sent"] == len(first) + len(second)
    stored = stored_events(server.data_dir)
    assert stored == {("purchase", tid): 1 for tid in first + second}
    assert {row["status"] for row in ledger_rows(ledger_path(tmp_path)).values()} == {"sent"}

    # Rerunning the first night's file now sends nothing: every row is a duplicate of a sent event.
    again = config_for(tmp_path, [generic_source(tmp_path / "night1.csv")], endpoint=server.url)
    run = cli(*run_args(again, tmp_path / "out3"))
    assert run.code == 0, run.stderr[-2000:]
    summary = run.summary(tmp_path / "out3")
    assert summary["sent"] == 0 and summary["duplicate"] == len(first) and balanced(summary)
    assert stored_events(server.data_dir) == stored
