"""jobs/sql/dedup_events_view.sql, verbatim, in a BigQuery API (bqemulator): what GA4's reports count."""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from pathlib import Path

import orjson
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from etl.protocol.ga4_row import ROW_SCHEMA, ga4_row
from tests.support import REPO

VIEW_SQL = REPO / "jobs" / "sql" / "dedup_events_view.sql"
LONDON = zoneinfo.ZoneInfo("Europe/London")
T0 = 1_795_000_000_000_000  # 2026-11-18, µs


def client_for(endpoint: str) -> bigquery.Client:
    return bigquery.Client(project="demo", credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))


def dedup_view_rows(endpoint: str, rows: list[dict], dataset: str) -> list[dict]:
    """Load export rows into `demo.<dataset>.events_*`, create the shipped view beside it, read it back."""
    client = client_for(endpoint)
    client.create_dataset(dataset, exists_ok=True, timeout=30)
    client.create_dataset(f"{dataset}_reports", exists_ok=True, timeout=30)
    schema = [bigquery.SchemaField.from_api_repr(f) for f in ROW_SCHEMA]
    by_day: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_day[row["event_date"]].append(row)
    for day, day_rows in by_day.items():
        table = client.create_table(bigquery.Table(f"demo.{dataset}.events_{day}", schema=schema), exists_ok=True,
                                    timeout=30)
        assert client.insert_rows_json(table, day_rows, timeout=30) == []
    view = (VIEW_SQL.read_text().replace("PROJECT.EXPORT_DATASET.", f"demo.{dataset}.")
            .replace("PROJECT.MPETL_DATASET.", f"demo.{dataset}_reports."))
    client.query(view, timeout=60).result(timeout=60)
    sql = (f"SELECT v.event_name AS event_name, v.dedup_transaction_id AS tid, v.user_pseudo_id AS user, "
           f"v.event_timestamp AS ts, v.ecommerce.purchase_revenue AS revenue, v.ecommerce.refund_value AS refund, "
           f"EXISTS(SELECT 1 FROM UNNEST(v.event_params) AS p WHERE p.key = 'mpetl_resend') AS is_copy "
           f"FROM `demo.{dataset}_reports.mpetl_events_dedup` AS v")
    return [dict(r.items()) for r in client.query(sql, timeout=60).result(timeout=60)]


def store_rows(store: Path) -> list[dict]:
    """Every row of the collector's store files, as the export would hold them."""
    return [orjson.loads(line) for path in sorted(store.glob("events_*.ndjson"))
            for line in path.read_bytes().splitlines() if line.strip()]


def row(name: str, user: str, ts: int, *, tid: str | None = None, value: float | None = None,
        resend: bool = False) -> dict:
    params: dict = {"mpetl_run": "run-1"}
    if tid is not None:
        params.update(transaction_id=tid, value=value, currency="EUR")
    if resend:
        params["mpetl_resend"] = "run-2"
    return ga4_row({"name": name, "timestamp_micros": ts, "params": params}, {"client_id": user},
                   zone=LONDON, stream_id="4242424242", arrival_micros=ts + 1_000_000)


def test_the_view_keeps_one_purchase_per_transaction_id_and_user_and_drops_resent_copies(bigquery_emulator):
    hour = 3_600_000_000
    rows = [
        row("purchase", "A", T0, tid="T1", value=50.0),  # the late original ...
        row("purchase", "A", T0, tid="T1", value=50.0, resend=True),  # ... and the copy mpetl resend sent
        row("purchase", "B", T0, tid="T1", value=50.0),  # another user: GA4 does not merge it either
        row("purchase", "A", T0 + hour, tid="T2", value=20.0),
        row("refund", "A", T0 + 2 * hour, tid="T2", value=5.0),  # two partial refunds: both stay
        row("refund", "A", T0 + 3 * hour, tid="T2", value=3.0),
        row("refund", "A", T0 + 3 * hour, tid="T2", value=3.0, resend=True),  # a resent copy: goes
        row("page_view", "A", T0),  # no transaction id: untouched, even when identical
        row("page_view", "A", T0),
    ]
    kept = dedup_view_rows(bigquery_emulator, rows, "analytics_dedup")

    purchases = sorted((r["tid"], r["user"], r["revenue"], r["is_copy"]) for r in kept if r["event_name"] == "purchase")
    assert purchases == [("T1", "A", 50.0, False), ("T1", "B", 50.0, False), ("T2", "A", 20.0, False)]
    refunds = sorted((r["ts"], r["refund"], r["is_copy"]) for r in kept if r["event_name"] == "refund")
    assert refunds == [(T0 + 2 * hour, 5.0, False), (T0 + 3 * hour, 3.0, False)]
    assert sum(r["event_name"] == "page_view" for r in kept) == 2
