"""A run defers rows too old for MP; they land in the local historical store at their TRUE date, and the
documented union query (jobs/sql/historical_union_view.sql) shows them beside what GA4 recorded."""

from __future__ import annotations

import csv
import datetime as dt
import zoneinfo
from pathlib import Path

import orjson
import pytest

from etl.collector import spawn_collector
from etl.config import load_config
from etl.pipeline import RunOptions, run_pipeline
from tests.reliability.harness import MEASUREMENT_ID, SECRET, generic_source, write_orders
from tests.support import REPO, samples_config

from .support import VIEW_SQL, union_rows

WALL = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)
LONDON = zoneinfo.ZoneInfo("Europe/London")  # the samples config's property zone
DOWN = "http://127.0.0.1:9"


def config_for(tmp_path: Path, sources: list[dict], *, endpoint: str, **sections) -> Path:
    dest = {"backoff_base_s": 0.01, "backoff_max_s": 0.02, "max_attempts": 2}
    return samples_config(tmp_path, endpoint=endpoint, sources=sources, destination=dest, **sections)


def micros(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def run(config: Path, out: Path, at: dt.datetime, **options) -> dict:
    result = run_pipeline(load_config(config), RunOptions(out_dir=out, clock=lambda: micros(at), seed=1, **options))
    return result.summary


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("MP_API_SECRET", SECRET)


def orders(path: Path) -> tuple[list[str], list[str], dict[str, tuple[str, float]]]:
    """Fresh orders (2–30 h old) and orders 4–5 days old in one export; tid → (true London date, amount)."""
    old_file, fresh_file = path.with_suffix(".old"), path.with_suffix(".fresh")
    old = write_orders(old_file, prefix="OLD", clients=4, per_client=3, hours_ago=120.0, now=WALL - dt.timedelta(hours=4))
    fresh = write_orders(fresh_file, prefix="NEW", clients=3, per_client=2, hours_ago=30.0, now=WALL)
    lines = old_file.read_text().splitlines() + fresh_file.read_text().splitlines()[1:]
    path.write_text("\n".join(lines) + "\n")
    truth = {}
    for row in csv.DictReader(path.open()):
        moment = dt.datetime.strptime(row["Closed At"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
        truth[row["Order ID"]] = (moment.astimezone(LONDON).strftime("%Y%m%d"), float(row["Amount"]))
    return old, fresh, truth


def test_deferred_rows_reach_the_historical_store_at_their_true_date_and_union_with_the_export(tmp_path, secret):
    csv_path = tmp_path / "orders.csv"
    old, fresh, truth = orders(csv_path)
    hist = tmp_path / "historical"
    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret=SECRET, now=WALL,
                         timezone="Europe/London") as server:
        config = config_for(tmp_path, [generic_source(csv_path)], endpoint=server.url,
                            historical={"table": "historical", "path": str(hist)})
        s = run(config, tmp_path / "out", WALL)
        assert s["sent"] == len(fresh) and s["deferred"] == len(old)
        assert s["historical"] == {"backend": "duckdb", "table": "historical", "rows": len(old), "path": str(hist),
                                   "earlier_runs": 0}

        rows = union_rows(server.data_dir, hist)
        # Rerun an hour later: nothing is deferred again, so nothing is written twice.
        again = run(config, tmp_path / "out2", WALL + dt.timedelta(hours=1))
        assert again["deferred"] == 0 and again["historical"]["rows"] == 0
        assert len(union_rows(server.data_dir, hist)) == len(rows)

    by_source = {"ga4_export": {}, "mpetl_historical": {}}
    for r in rows:
        by_source[r["row_source"]][r["transaction_id"]] = r
    assert sorted(by_source["mpetl_historical"]) == sorted(old)
    assert sorted(by_source["ga4_export"]) == sorted(fresh)
    run_day = WALL.astimezone(LONDON).strftime("%Y%m%d")
    for tid, r in by_source["mpetl_historical"].items():
        true_date, amount = truth[tid]
        assert r["event_date"] == true_date != run_day  # the day it happened, not the day it was handled
        assert r["event_day"].strftime("%Y%m%d") == true_date
        assert r["purchase_revenue"] == pytest.approx(amount)
        assert r["mpetl_run"] == s["run_id"]  # the run that deferred it
    for r in by_source["ga4_export"].values():
        assert r["mpetl_run"] == s["run_id"]
    total = sum(r["purchase_revenue"] for r in rows)
    assert total == pytest.approx(sum(amount for _, amount in truth.values()))
    # Only the ledger's pseudonymous fields: no user id was configured to be sent, so none is stored.
    assert all(r["user_id"] is None for r in rows)
    files = sorted(p.name for p in hist.iterdir())
    assert files and all(name.startswith("historical_") and name.endswith(f".{s['run_id']}.ndjson") for name in files)


def test_without_a_historical_table_nothing_changes_and_dry_run_writes_nothing(tmp_path, secret):
    csv_path = tmp_path / "orders.csv"
    old = write_orders(csv_path, prefix="OLD", clients=2, per_client=2, hours_ago=120.0, now=WALL - dt.timedelta(hours=4))
    plain = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN)
    s = run(plain, tmp_path / "out", WALL)
    assert s["deferred"] == len(old) and "historical" not in s
    assert not (tmp_path / "state" / "historical").exists()

    hist = tmp_path / "hist"
    (tmp_path / "state").rename(tmp_path / "state-before")
    configured = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN,
                            historical={"table": "historical", "path": str(hist)})
    dry = run(configured, tmp_path / "dry", WALL, mode="dry-run")
    assert dry["deferred"] == len(old) and "historical" not in dry and not hist.exists()


def test_the_deferred_events_page_documents_the_shipped_view():
    page = (REPO / "docs" / "deferred.md").read_text()
    body = VIEW_SQL.read_text().split("CREATE OR REPLACE VIEW", 1)[1]
    assert "CREATE OR REPLACE VIEW" + body.rstrip() in page
    assert "answer/10325025" in page


def test_a_historical_row_is_the_export_schema_plus_event_day(tmp_path, secret):
    csv_path = tmp_path / "orders.csv"
    write_orders(csv_path, prefix="OLD", clients=1, per_client=1, hours_ago=120.0, now=WALL)
    hist = tmp_path / "hist"
    config = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN,
                        historical={"table": "conversions_history", "path": str(hist)})
    assert run(config, tmp_path / "out", WALL)["historical"]["rows"] == 1
    (file,) = hist.glob("conversions_history_*.ndjson")
    row = orjson.loads(file.read_bytes())
    from etl.load.historical import HISTORICAL_SCHEMA
    assert list(row) == [f["name"] for f in HISTORICAL_SCHEMA]
    params = {p["key"] for p in row["event_params"]}
    assert {"transaction_id", "value", "currency", "mpetl_run", "ga_session_id"} <= params


def test_failures_that_age_out_reach_the_historical_store_at_their_true_date(tmp_path, secret):
    # Night 1 the endpoint is down: the orders fail. Three days later they are too old to retry: the
    # run that expires them defers them, and they land in the historical store at the day they happened.
    csv_path = tmp_path / "orders.csv"
    tids = write_orders(csv_path, prefix="FAIL", clients=2, per_client=3, hours_ago=10.0, now=WALL)
    hist = tmp_path / "hist"
    config = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN,
                        historical={"table": "historical", "path": str(hist)})
    first = run(config, tmp_path / "out1", WALL)
    assert first["failed"] == len(tids) and first["historical"]["rows"] == 0
    later = WALL + dt.timedelta(days=3)
    second = run(config, tmp_path / "out2", later)
    assert second["expired"] + second["earlier_runs"]["expired"] == len(tids)
    assert second["historical"]["rows"] == len(tids)

    (tmp_path / "empty-store").mkdir()
    rows = union_rows(tmp_path / "empty-store", hist)
    assert sorted(r["transaction_id"] for r in rows) == sorted(tids)
    for r in rows:
        true_date = dt.datetime.fromtimestamp(r["event_timestamp"] / 1e6, LONDON).strftime("%Y%m%d")
        assert r["event_date"] == true_date < later.strftime("%Y%m%d")
        assert r["mpetl_run"] == second["run_id"]  # deferred (expired) by the second run


def test_personal_data_in_a_deferred_row_never_reaches_the_historical_store(tmp_path, secret):
    csv_path = tmp_path / "orders.csv"
    tids = write_orders(csv_path, prefix="OLD", clients=2, per_client=2, hours_ago=120.0, now=WALL - dt.timedelta(hours=4))
    sentinel = "jane.sentinel@example.com"
    csv_path.write_text(csv_path.read_text().replace(tids[0], sentinel))
    hist = tmp_path / "hist"
    config = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN,
                        historical={"table": "historical", "path": str(hist)})
    s = run(config, tmp_path / "out", WALL)
    assert s["rejected"] == 1 and s["historical"]["rows"] == len(tids) - 1
    written = b"".join(p.read_bytes() for p in hist.iterdir())
    assert sentinel.encode() not in written and b"jane.sentinel" not in written
    assert all(t.encode() in written for t in tids[1:])


def test_a_failed_write_exits_4_and_mpetl_historical_writes_those_events_once(run_mpetl, tmp_path, secret):
    csv_path = tmp_path / "orders.csv"
    old = write_orders(csv_path, prefix="OLD", clients=2, per_client=2, hours_ago=120.0, now=WALL - dt.timedelta(hours=4))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the historical folder should be")
    broken = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN,
                        historical={"table": "historical", "path": str(blocker / "hist")})
    s = run(broken, tmp_path / "out", WALL)
    assert s["deferred"] == len(old) and s["exit_code"] == 4  # the events are not in the table: the run says so
    assert s["historical"]["rows"] == 0
    assert s["historical"]["error"].startswith(("FileExistsError", "NotADirectoryError"))
    assert len(list((tmp_path / "out" / "deferred.csv").open())) == len(old) + 1  # still in deferred.csv

    hist = tmp_path / "hist"
    fixed = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN,
                       historical={"table": "historical", "path": str(hist)})
    written = []
    for _ in range(2):
        result = run_mpetl("-q", "historical", "--config", str(fixed), "--run-id", s["run_id"])
        assert result.returncode == 0, result.stderr
        written.append(orjson.loads(result.stdout)["rows"])
    assert written == [len(old), 0]  # the second finds nothing left to write
    (tmp_path / "empty-store").mkdir()
    rows = union_rows(tmp_path / "empty-store", hist)
    assert sorted(r["transaction_id"] for r in rows) == sorted(old)
    assert {r["mpetl_run"] for r in rows} == {s["run_id"]}  # the marker still names the run that deferred them

    unknown = run_mpetl("-q", "historical", "--config", str(fixed), "--run-id", "nope")
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr


def test_the_next_run_writes_what_a_failed_historical_write_left(tmp_path, secret):
    csv_path = tmp_path / "orders.csv"
    old = write_orders(csv_path, prefix="OLD", clients=2, per_client=3, hours_ago=120.0, now=WALL - dt.timedelta(hours=4))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the historical folder should be")
    broken = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN,
                        historical={"table": "historical", "path": str(blocker / "hist")})
    first = run(broken, tmp_path / "out1", WALL)
    assert first["exit_code"] == 4 and "error" in first["historical"]

    hist = tmp_path / "hist"
    fixed = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN,
                       historical={"table": "historical", "path": str(hist)})
    second = run(fixed, tmp_path / "out2", WALL + dt.timedelta(hours=1))
    assert second["deferred"] == 0 and second["duplicate"] == len(old) and second["exit_code"] == 0
    assert second["historical"]["rows"] == second["historical"]["earlier_runs"] == len(old)
    (tmp_path / "empty-store").mkdir()
    rows = union_rows(tmp_path / "empty-store", hist)
    assert sorted(r["transaction_id"] for r in rows) == sorted(old)
    # The file is named by the run that wrote it; each row's marker by the run that deferred it.
    assert [p.name.split(".")[1] for p in hist.glob("historical_*.ndjson")] == [second["run_id"]] * len(
        list(hist.glob("historical_*.ndjson")))
    assert {r["mpetl_run"] for r in rows} == {first["run_id"]}
    third = run(fixed, tmp_path / "out3", WALL + dt.timedelta(hours=2))
    assert third["historical"]["rows"] == 0 and len(union_rows(tmp_path / "empty-store", hist)) == len(old)


def test_historical_rows_carry_the_consent_the_ledger_holds(tmp_path, secret):
    # privacy_info.ads_storage as the export would have it had the event been sent: both ad signals
    # granted → "Yes", either denied → "No" (etl/protocol/ga4_row.py, the collector's own rule).
    csv_path = tmp_path / "orders.csv"
    tids = write_orders(csv_path, prefix="OLD", clients=3, per_client=1, hours_ago=120.0, now=WALL)
    header, *rows = csv_path.read_text().splitlines()
    consent = {"OLD-00000": "granted", "OLD-00001": "denied", "OLD-00002": "granted"}
    csv_path.write_text("\n".join([header + ",Ads,Personalisation"] + [
        f"{row},{consent[tid]},{'denied' if tid == 'OLD-00002' else 'granted'}" for row, tid in zip(rows, tids, strict=True)
    ]) + "\n")
    source = generic_source(csv_path)
    source["columns"] = {**source["columns"], "ad_user_data": "Ads", "ad_personalization": "Personalisation"}
    hist = tmp_path / "hist"
    config = config_for(tmp_path, [source], endpoint=DOWN, historical={"table": "historical", "path": str(hist)})
    assert run(config, tmp_path / "out", WALL)["historical"]["rows"] == 3
    stored = {}
    for file in hist.glob("historical_*.ndjson"):
        for line in file.read_bytes().splitlines():
            row = orjson.loads(line)
            stored[row["ecommerce"]["transaction_id"]] = row["privacy_info"]["ads_storage"]
    assert stored == {"OLD-00000": "Yes", "OLD-00001": "No", "OLD-00002": "No"}
def test_historical_rows_carry_the_numeric_stream_id_so_they_union_with_the_export(tmp_path, secret):
    """The export's `stream_id` is the data stream's number, not the measurement id (issue 21)."""
    csv_path = tmp_path / "orders.csv"
    old, _, _ = orders(csv_path)
    hist = tmp_path / "historical"
    config = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN, property={"stream_id": "4321098765"},
                        historical={"table": "historical", "path": str(hist)})
    s = run(config, tmp_path / "out", WALL)
    assert s["historical"]["rows"] == len(old)
    rows = [orjson.loads(line) for path in sorted(hist.iterdir()) for line in path.read_bytes().splitlines()]
    assert len(rows) == len(old) and {r["stream_id"] for r in rows} == {"4321098765"}
