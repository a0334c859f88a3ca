"""The BigQuery backend through the real google-cloud-bigquery client against bqemulator: a run's
deferred events are loaded into a table partitioned by `event_day`, read back at their true dates, and
the shipped union view returns them beside the export's own rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from etl.config import HistoricalConfig, PropertyConfig
from etl.load import write_historical
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
    assert s["historical"] == {"backend": "bigquery", "table": f"{MPETL_DATASET}.{TABLE}", "rows": len(old)}

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


def test_an_unreachable_bigquery_is_reported_not_raised_and_nothing_is_lost(tmp_path: Path) -> None:
    settings = HistoricalConfig(table=f"{DATASET}.{TABLE}", backend="bigquery", project="demo",
                                api_endpoint="http://127.0.0.1:9", timeout_s=1.0)
    from etl.load.ledger import DeferredEvent
    event = DeferredEvent(1, "s|purchase|T1", "s", 2, "1.2", None, "purchase", 1_795_000_000_000_000, "20261218",
                          b'{"transaction_id":"T1","value":1.5}', "too_old", "run-1")
    report = write_historical(settings, lambda: iter([event]), PropertyConfig("G-X", "Europe/London"))
    assert report["rows"] == 0 and "error" in report


def test_writing_the_same_run_twice_loads_it_once(bigquery_emulator: str) -> None:
    settings = HistoricalConfig(table="twice.mpetl_historical", backend="bigquery", project="demo",
                                api_endpoint=bigquery_emulator, timeout_s=60.0)
    from etl.load.ledger import DeferredEvent
    events = [DeferredEvent(i, f"s|purchase|T{i}", "s", i, "1.2", None, "purchase", 1_795_000_000_000_000 + i,
                            "20261120", orjson.dumps({"transaction_id": f"T{i}", "value": 1.5}), "too_old",
                            "20261125T060000Z-aaaaaa") for i in range(3)]
    prop = PropertyConfig("G-X", "Europe/London")
    first = write_historical(settings, lambda: iter(events), prop)
    second = write_historical(settings, lambda: iter(events), prop)
    assert first == {"backend": "bigquery", "table": settings.table, "rows": 3}
    assert second == {"backend": "bigquery", "table": settings.table, "rows": 0, "already_loaded": 3}
    stored = query(client_for(bigquery_emulator), "SELECT h.ecommerce.transaction_id AS tid "
                                                  "FROM `demo.twice.mpetl_historical` AS h")
    assert sorted(r["tid"] for r in stored) == ["T0", "T1", "T2"]
