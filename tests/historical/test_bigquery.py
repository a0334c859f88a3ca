"""The BigQuery backend through the real google-cloud-bigquery client against bqemulator: a run's
deferred events are loaded into a table partitioned by `event_day`, read back at their true dates, and
the shipped union view returns them beside the export's own rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from etl.config import load_config
from etl.load import open_ledger
from tests.reconcile.builders import export_row
from tests.reconcile.test_reconcile_bigquery import GA4_SCHEMA
from tests.reliability.harness import generic_source, write_orders

from .support import VIEW_SQL
from .test_pipeline_duckdb import DOWN, LONDON, WALL, config_for, run

DATASET = "analytics_424242"  # the GA4 export
MPETL_DATASET = "mpetl_reporting"  # the historical table (and the view) beside it, as docs/deferred.md suggests
TABLE = "mpetl_historical"


def client_for(endpoint: str) -> bigquery.Client:
    return bigquery.Client(project="demo", credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))


def query(client: bigquery.Client, sql: str) -> list[dict]:
    job = client.query(sql, timeout=60)
    return [dict(r.items()) for r in job.result(timeout=60)]


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("MP_API_SECRET", "test-secret-historical-9f3")


def test_a_run_loads_deferred_events_into_a_partitioned_table_and_the_view_unions_them(
        bigquery_emulator: str, tmp_path: Path, secret) -> None:
    csv_path = tmp_path / "orders.csv"
    old = write_orders(csv_path, prefix="OLD", clients=3, per_client=3, hours_ago=120.0,
                       now=WALL - dt.timedelta(hours=4))
    config = config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN, historical={
        "table": f"{MPETL_DATASET}.{TABLE}", "backend": "bigquery", "project": "demo", "api_endpoint": bigquery_emulator})
    s = run(config, tmp_path / "out", WALL)
    assert s["deferred"] == len(old)
    assert s["historical"] == {"backend": "bigquery", "table": f"{MPETL_DATASET}.{TABLE}", "rows": len(old),
                               "earlier_runs": 0}

    client = client_for(bigquery_emulator)
    table = client.get_table(f"demo.{MPETL_DATASET}.{TABLE}", timeout=30)
    assert table.time_partitioning is not None and table.time_partitioning.field == "event_day"
    stored = query(client, f"SELECT h.event_date AS event_date, h.event_day AS event_day, h.event_timestamp AS ts, "
                           f"h.ecommerce.transaction_id AS tid, "
                           f"(SELECT p.value.string_value FROM UNNEST(h.event_params) AS p WHERE p.key = 'mpetl_run') "
                           f"AS run FROM `demo.{MPETL_DATASET}.{TABLE}` AS h")
    assert sorted(r["tid"] for r in stored) == sorted(old)
    run_day = WALL.astimezone(LONDON).strftime("%Y%m%d")
    for r in stored:
        true_date = dt.datetime.fromtimestamp(r["ts"] / 1e6, LONDON).strftime("%Y%m%d")
        assert r["event_date"] == true_date != run_day
        assert r["event_day"].strftime("%Y%m%d") == true_date
        assert r["run"] == s["run_id"]

    # GA4's own export beside it: one day table, then the shipped view over both.
    day = "20261124"
    client.create_dataset(DATASET, exists_ok=True, timeout=30)
    export = client.create_table(bigquery.Table(f"demo.{DATASET}.events_{day}", schema=GA4_SCHEMA), timeout=30)
    rows = [{k: v for k, v in export_row(t, day).items() if k != "collected_traffic_source"} for t in ("NEW-1", "NEW-2")]
    assert client.insert_rows_json(export, rows, timeout=30) == []
    view = (VIEW_SQL.read_text().replace("PROJECT.EXPORT_DATASET.", f"demo.{DATASET}.")
            .replace("PROJECT.MPETL_DATASET.", f"demo.{MPETL_DATASET}."))
    # The shipped text, verbatim, in its own dataset: a view the export's `events_*` could match would
    # break every wildcard query on the export (BigQuery refuses wildcards that match a view).
    client.query(view, timeout=60).result(timeout=60)
    union = query(client, f"SELECT v.row_source AS src, v.event_date AS event_date, v.transaction_id AS tid, "
                          f"v.purchase_revenue AS revenue FROM `demo.{MPETL_DATASET}.mpetl_events_with_historical` AS v")
    by_source = {"ga4_export": set(), "mpetl_historical": set()}
    for r in union:
        by_source[r["src"]].add(r["tid"])
    assert by_source == {"ga4_export": {"NEW-1", "NEW-2"}, "mpetl_historical": set(old)}
    historical_dates = {r["event_date"] for r in union if r["src"] == "mpetl_historical"}
    assert historical_dates == {r["event_date"] for r in stored}


def _config(tmp_path: Path, csv_path: Path, endpoint: str, table: str, timeout_s: float = 60.0) -> Path:
    return config_for(tmp_path, [generic_source(csv_path)], endpoint=DOWN, historical={
        "table": table, "backend": "bigquery", "project": "demo", "api_endpoint": endpoint, "timeout_s": timeout_s})


def test_an_unreachable_bigquery_is_reported_then_the_next_run_loads_those_events_once(
        bigquery_emulator: str, tmp_path: Path, secret) -> None:
    csv_path = tmp_path / "orders.csv"
    old = write_orders(csv_path, prefix="OLD", clients=2, per_client=2, hours_ago=120.0, now=WALL - dt.timedelta(hours=4))
    down = run(_config(tmp_path, csv_path, "http://127.0.0.1:9", "later.mpetl_historical", timeout_s=1.0),
               tmp_path / "out1", WALL)
    assert down["historical"]["rows"] == 0 and "error" in down["historical"] and down["exit_code"] == 4
    with open_ledger(load_config(tmp_path / "config.toml").ledger_location, read_only=True) as ledger:
        assert ledger.deferred_claims(down["run_id"], "historical") == {"this_run": 0, "other_runs": 0, "unclaimed": 4}

    config = _config(tmp_path, csv_path, bigquery_emulator, "later.mpetl_historical")
    up = run(config, tmp_path / "out2", WALL + dt.timedelta(hours=1))
    assert up["historical"]["rows"] == up["historical"]["earlier_runs"] == len(old) and up["exit_code"] == 0
    again = run(config, tmp_path / "out3", WALL + dt.timedelta(hours=2))
    assert again["historical"]["rows"] == 0  # nothing left: a second run never loads a row twice
    stored = query(client_for(bigquery_emulator), "SELECT h.ecommerce.transaction_id AS tid, (SELECT p.value.string_value "
                   "FROM UNNEST(h.event_params) AS p WHERE p.key = 'mpetl_run') AS run FROM `demo.later.mpetl_historical` AS h")
    assert sorted(r["tid"] for r in stored) == sorted(old)
    assert {r["run"] for r in stored} == {down["run_id"]}  # the run that deferred them
