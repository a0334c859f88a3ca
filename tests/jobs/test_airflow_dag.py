"""The Airflow DAG, run by real Apache Airflow 3 from .venv-airflow (jobs/airflow/setup_venv.sh).

Airflow lives in its own virtualenv, so these tests drive it through its CLI and interpreter in
subprocesses: a DagBag import, then `airflow dags test` end to end on the samples against the local
endpoint, with the API secret given only as an Airflow Variable.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from etl.collector import FaultOptions, spawn_collector
from etl.load import open_ledger
from tests.reconcile.builders import export_row, write_store
from tests.support import (
    REPO,
    SAMPLES_CONFIG,
    SAMPLES_NOW,
    files_containing,
    pinned_clock_env,
    samples_config,
    timed_when_first_seen,
)

pytestmark = pytest.mark.airflow

AIRFLOW_VENV = REPO / ".venv-airflow"
AIRFLOW = AIRFLOW_VENV / "bin" / "airflow"
DAG_ID = "mpetl_offline_conversions"
SECRET = "SENTINEL-SECRET-airflow-9d2e"
LOGICAL_DATE = "2026-11-21"  # its data interval is the day before, in the property's zone
LAST_DAY = "2026-11-20"

if not AIRFLOW.exists():
    pytest.skip(f"{AIRFLOW_VENV} does not exist: create it with `bash jobs/airflow/setup_venv.sh` (make test does)",
                allow_module_level=True)


class AirflowSandbox:
    """An AIRFLOW_HOME with its own SQLite metadata DB, the repo's DAG folder and a samples config copy."""

    def __init__(self, root: Path, **config: Any) -> None:
        self.root = root
        self.config = samples_config(root, **({"endpoint": "local"} | config))
        self.sources = [s["name"] for s in tomllib.loads(self.config.read_text())["sources"]]
        self.out = root / "out"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MPETL"))}
        self.env.pop("MP_API_SECRET", None)  # the secret must come from the Airflow Variable, nowhere else
        self.env.update({
            "AIRFLOW_HOME": str(root / "airflow-home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "jobs" / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_VAR_MPETL_CONFIG": str(self.config),
            "AIRFLOW_VAR_MPETL_API_SECRET": SECRET,
            "MPETL_OUT": str(self.out),
            "MPETL_RETRIES": "0",  # a failure shows at once instead of waiting out a retry delay
        })

    def run(self, *args: str, timeout: float = 150, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=env or self.env, timeout=timeout,
                              cwd=self.root)

    def airflow(self, *args: str, timeout: float = 150, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return self.run(str(AIRFLOW), *args, timeout=timeout, env=env)

    def migrate(self) -> AirflowSandbox:
        migrated = self.airflow("db", "migrate")
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        return self

    def dags_test(self, timeout: float = 420) -> subprocess.CompletedProcess:
        """Parse the DAG into the metadata DB, then run one DAG run in-process (every task, in order)."""
        reserialized = self.airflow("dags", "reserialize")
        assert reserialized.returncode == 0, reserialized.stderr[-2000:]
        # The samples' night is simulated by the process clock (libfaketime), as docs/ledger.md says.
        # Each task costs Airflow ~10 s of start-up on a loaded 2-core machine; the bound is a hang guard, not a speed test.
        return self.airflow("dags", "test", DAG_ID, LOGICAL_DATE, "-c", orjson.dumps({"now": SAMPLES_NOW}).decode(),
                            env=pinned_clock_env(self.env), timeout=timeout)

    def task_states(self) -> tuple[str, dict[str, str]]:
        """The DAG run's state and each task's state."""
        runs = self.airflow_json("dags", "list-runs", DAG_ID)
        assert len(runs) == 1
        states = self.airflow_json("tasks", "states-for-dag-run", DAG_ID, runs[0]["run_id"])
        return runs[0]["state"], {s["task_id"]: s["state"] for s in states}

    def airflow_json(self, *args: str) -> list[dict]:
        result = self.airflow(*args, "-o", "json")
        assert result.returncode == 0, result.stderr[-2000:]
        line = next(line for line in result.stdout.splitlines() if line.startswith("["))
        return orjson.loads(line)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> AirflowSandbox:
    return AirflowSandbox(tmp_path_factory.mktemp("airflow")).migrate()


DAGBAG_PROBE = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag({folder!r})
dag = bag.dags.get({dag_id!r})
print("PROBE" + json.dumps({{
    "errors": {{k: v.splitlines()[-1] for k, v in bag.import_errors.items()}},
    "tasks": [[t.task_id, sorted(t.upstream_task_ids), t.retries] for t in dag.topological_sort()] if dag else None,
    "catchup": dag and dag.catchup,
    "max_active_tasks": dag and dag.max_active_tasks,
    "max_active_runs": dag and dag.max_active_runs,
    "timetable": dag and repr(dag.timetable),
    "owners": dag and sorted({{t.owner for t in dag.tasks}}),
    "callbacks": dag and sorted({{getattr(t.on_failure_callback, "__name__", None) or
                                  str([c.__name__ for c in t.on_failure_callback]) for t in dag.tasks}}),
}}))
"""


def probe_dagbag(box: AirflowSandbox) -> dict:
    probe = box.run(str(AIRFLOW_VENV / "bin" / "python"), "-c",
                    DAGBAG_PROBE.format(folder=str(REPO / "jobs" / "airflow"), dag_id=DAG_ID), timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    return orjson.loads(next(line[5:] for line in probe.stdout.splitlines() if line.startswith("PROBE")))


def test_dag_imports_with_one_serial_group_per_source(sandbox):
    found = probe_dagbag(sandbox)
    assert found["errors"] == {}
    expected_order = (["check_config"] + [f"{s}.{step}" for s in sandbox.sources for step in ("validate", "send")]
                      + ["wait_for_export", "reconcile"])
    tasks = found["tasks"]
    assert [t[0] for t in tasks] == expected_order
    # Serial: each task waits for the one before it (the sources share one ledger).
    assert all(upstream == [tasks[i - 1][0]] for i, (_, upstream, _) in enumerate(tasks) if i > 0)
    assert found["catchup"] is False and found["max_active_tasks"] == 1 and found["max_active_runs"] == 1
    assert "0 0 * * *" in found["timetable"] and "Europe/London" in found["timetable"]
    assert found["owners"] == ["data-engineering"]
    assert "_on_failure" in str(found["callbacks"])


def test_a_broken_config_never_breaks_the_parse_a_task_fails_with_the_reason(tmp_path):
    box = AirflowSandbox(tmp_path)
    box.env["AIRFLOW_VAR_MPETL_CONFIG"] = str(tmp_path / "missing.toml")
    box.env["MPETL_OWNER"] = "crm-team"
    found = probe_dagbag(box)
    assert found["errors"] == {}  # the DAG still imports
    assert [t[0] for t in found["tasks"]] == ["check_config"] and found["owners"] == ["crm-team"]
    # The failure hook point: a user's function, called with the failed task's context.
    (tmp_path / "alerting.py").write_text(
        "from pathlib import Path\n"
        "def page(context):\n"
        f"    Path({str(tmp_path / 'paged.txt')!r}).write_text(context['task_instance'].task_id)\n")
    box.env["MPETL_ON_FAILURE"] = "alerting:page"
    box.env["PYTHONPATH"] = str(tmp_path)
    run = box.migrate().dags_test()
    logs = run.stdout + run.stderr
    assert run.returncode != 0
    assert "missing.toml: [-] config file not found" in logs
    assert "mpetl task check_config failed (try 1)" in logs
    assert (tmp_path / "paged.txt").read_text() == "check_config"


def test_dags_test_sends_the_interval_and_reconciles(sandbox):
    run = sandbox.dags_test()
    logs = run.stdout + run.stderr
    assert run.returncode == 0, logs[-3000:]

    run_state, states = sandbox.task_states()
    assert run_state == "success"
    assert len(states) == 2 * len(sandbox.sources) + 3
    assert set(states.values()) == {"success"}

    day = sandbox.out / "airflow" / LAST_DAY
    sent = 0
    for source_dir in sorted(p for p in day.iterdir() if p.name != "reconcile"):
        # Each try has its own folder (a retry would write try-2 next to it).
        dry = orjson.loads((source_dir / "validate" / "try-1" / "summary.json").read_bytes())
        real = orjson.loads((source_dir / "send" / "try-1" / "summary.json").read_bytes())
        assert dry["mode"] == "dry-run" and real["mode"] == "send"
        assert list(real["sources"]) == [source_dir.name]  # each task sent its own source only
        assert "sent" not in dry and "http_statuses" not in dry["send"]  # a dry run says would_send
        assert real["sent"] == dry["would_send"] and real["failed"] == 0  # the dry run predicted the send
        sent += real["sent"]
    assert sent > 0
    with open_ledger(sandbox.root / "state" / "ledger.sqlite", read_only=True) as ledger:
        events = ledger.for_reconcile(since="19700101")
    # Exactly the data interval's day, every event once; but refunds the export gives no time are timed
    # when first seen (the task's wall clock, issue 21): they are reconciled with that day's events.
    at_wall_clock = timed_when_first_seen(events)
    assert len(events) == sent
    on_the_day = int((events["event_date"] == LAST_DAY.replace("-", "")).sum())
    assert set(events.loc[~at_wall_clock, "event_date"]) == {LAST_DAY.replace("-", "")}
    report = orjson.loads((day / "reconcile" / "try-1" / "reconciliation.json").read_bytes())
    assert report["verdict"] == "reconciled" and report["totals"]["sent"] == on_the_day

    # The secret was only ever in the Variable: not in a log line, an output, the metadata DB or XCom.
    assert SECRET not in logs
    assert files_containing(sandbox.root, SECRET) == []


def test_a_run_that_does_not_reconcile_fails_the_reconcile_task(tmp_path):
    # The endpoint answers 2xx but records nothing (what GA does with events it drops): every send
    # task succeeds, and the reconcile task must turn the run red with a one-line reason.
    pinned = datetime.fromisoformat(SAMPLES_NOW.replace("Z", "+00:00"))
    # The site's own tag was exported that day, so the export can judge it (an empty export is exit 6).
    day = (pinned.date() - timedelta(days=1)).strftime("%Y%m%d")
    write_store(tmp_path / "store", [export_row("WEB-1", day, run_marker=None)])
    with spawn_collector(tmp_path / "store", measurement_id="G-K7QW2ZP9LM", api_secret=SECRET,
                         timezone="Europe/London", now=pinned, faults=FaultOptions(drop_rate=1.0)) as collector:
        box = AirflowSandbox(tmp_path, endpoint=collector.url, store=collector.data_dir)
        box.env["MPETL_EXPORT_WAIT_MINUTES"] = "0"  # a remote endpoint waits 4 h for the export by default
        # This time the secret is an Airflow connection's password, the other supported home for it.
        del box.env["AIRFLOW_VAR_MPETL_API_SECRET"]
        box.env["AIRFLOW_CONN_MPETL_API_SECRET"] = orjson.dumps({"conn_type": "generic", "password": SECRET}).decode()
        run = box.migrate().dags_test()
    logs = run.stdout + run.stderr
    assert run.returncode != 0
    run_state, states = box.task_states()
    assert run_state == "failed"
    assert states.pop("reconcile") == "failed"
    assert set(states.values()) == {"success"}
    assert "mpetl reconcile exited 3: Not reconciled" in logs
    assert SECRET not in logs and files_containing(tmp_path / "out", SECRET) == []


def test_an_unreachable_endpoint_fails_the_send_task_naming_the_error_class_and_count(tmp_path, closed_port):
    box = AirflowSandbox(tmp_path, endpoint=f"http://127.0.0.1:{closed_port}", destination={"max_attempts": 2})
    run = box.migrate().dags_test()
    logs = run.stdout + run.stderr
    assert run.returncode != 0
    first = box.sources[0]
    summary = orjson.loads((box.out / "airflow" / LAST_DAY / first / "send" / "try-1" / "summary.json").read_bytes())
    assert summary["exit_code"] == 4 and summary["failed"] > 0
    cause = summary["send"]["last_error"]
    assert cause["error"] == "ConnectError" and cause["count"] == summary["send"]["errors"]["ConnectError"] > 0
    # The task's failure carries the cause, in the words `mpetl run` prints: not just "events not delivered".
    assert (f"mpetl send of source {first} exited 4: {summary['failed']} events not delivered (they stay pending"
            in logs)
    assert f"last error ConnectError × {cause['count']} attempts" in logs
    assert SECRET not in logs


def test_dags_test_maps_each_send_over_two_shards_on_a_postgresql_ledger(tmp_path, pg_url):
    """`mpetl_shards = 2`: each source's send is a mapped task over shards 1/2 and 2/2 (sharing nothing but
    the PostgreSQL ledger), `aggregate` checks they add up, reconcile runs once after all of them."""
    import psycopg

    two_sources = tomllib.loads(SAMPLES_CONFIG.read_text())["sources"][:2]  # 2 groups of 4 tasks keep it short
    box = AirflowSandbox(tmp_path, ledger={"url": pg_url}, sources=two_sources)
    box.env["AIRFLOW_VAR_MPETL_SHARDS"] = "2"
    run = box.migrate().dags_test(timeout=600)
    logs = run.stdout + run.stderr
    assert run.returncode == 0, logs[-3000:]
    runs = box.airflow_json("dags", "list-runs", DAG_ID)
    instances = box.airflow_json("tasks", "states-for-dag-run", DAG_ID, runs[0]["run_id"])
    assert runs[0]["state"] == "success" and {i["state"] for i in instances} == {"success"}
    for source in box.sources:
        mapped = sorted(str(i.get("map_index")) for i in instances if i["task_id"] == f"{source}.send")
        assert mapped == ["0", "1"], instances
    assert sum(i["task_id"] == "reconcile" for i in instances) == 1

    day = box.out / "airflow" / LAST_DAY
    sent = 0
    for source in box.sources:
        dry = orjson.loads((day / source / "validate" / "try-1" / "summary.json").read_bytes())
        shards = [orjson.loads((day / source / "send" / f"shard-{k}-of-2" / "try-1" / "summary.json").read_bytes())
                  for k in (1, 2)]
        assert [s["shard"] for s in shards] == ["1/2", "2/2"]
        assert sum(s["sent"] for s in shards) == dry["would_send"] and all(s["failed"] == 0 for s in shards)
        assert all(s["rows_in"] == dry["rows_in"] for s in shards)
        sent += dry["would_send"]
    assert sent > 0
    with psycopg.connect(pg_url) as con:
        states = dict(con.execute("SELECT state, count(*) FROM mpetl_events GROUP BY state").fetchall())
    assert states.get("sent") == sent
    report = orjson.loads((day / "reconcile" / "try-1" / "reconciliation.json").read_bytes())
    assert report["verdict"] == "reconciled" and report["totals"]["sent"] == sent
    assert SECRET not in logs
