"""The BigQuery backend through the real google-cloud-bigquery client against a local emulator."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from etl.reconcile import ExportUnavailableError, find_export_backend, reconcile

from .builders import Scenario, export_row, ids

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DATASET = "analytics_123456"

F = bigquery.SchemaField
GA4_SCHEMA = [
    F("event_date", "STRING"),
    F("event_timestamp", "INTEGER"),
    F("event_name", "STRING"),
    F(
        "event_params",
        "RECORD",
        mode="REPEATED",
        fields=[
            F("key", "STRING"),
            F(
                "value",
                "RECORD",
                fields=[
                    F("string_value", "STRING"),
                    F("int_value", "INTEGER"),
                    F("float_value", "FLOAT"),
                    F("double_value", "FLOAT"),
                ],
            ),
        ],
    ),
    F("user_pseudo_id", "STRING"),
    F("user_id", "STRING"),
    F("privacy_info", "RECORD", fields=[F("ads_storage", "STRING"), F("analytics_storage", "STRING")]),
    F(
        "ecommerce",
        "RECORD",
        fields=[
            F("transaction_id", "STRING"),
            F("purchase_revenue", "FLOAT"),
            F("refund_value", "FLOAT"),
            F("tax_value", "FLOAT"),
            F("shipping_value", "FLOAT"),
            F("currency", "STRING"),
        ],
    ),
    F(
        "items",
        "RECORD",
        mode="REPEATED",
        fields=[F("item_id", "STRING"), F("item_name", "STRING"), F("price", "FLOAT"), F("quantity", "INTEGER")],
    ),
    F("stream_id", "STRING"),
    F("platform", "STRING"),
    F("event_server_timestamp_offset", "INTEGER"),
]


def load_export(endpoint: str, dataset: str, tables: dict[str, list[dict]]) -> None:
    """Create the dataset and `events_*` tables with the GA4 schema, and stream the rows in."""
    client = bigquery.Client(
        project="demo", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )
    client.create_dataset(dataset, exists_ok=True, timeout=30)
    for name, rows in tables.items():
        table = client.create_table(bigquery.Table(f"demo.{dataset}.{name}", schema=GA4_SCHEMA), timeout=30)
        clean = [{k: v for k, v in r.items() if k != "collected_traffic_source"} for r in rows]
        assert client.insert_rows_json(table, clean, timeout=30) == []


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_reconcile_through_the_bigquery_client(bigquery_emulator: str, tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    purchases = s.send("20261115", ids("A", 6))
    leads = s.send("20261116", ids("L", 3), event_name="generate_lead", source="crm")
    young = s.send("20261122", ids("Y", 2))
    s.arrive(purchases, drop=frozenset({"A-0004"}))
    s.arrive(leads)
    s.arrive(leads[:1])  # one lead arrived twice
    s.arrive(young, drop=frozenset({"Y-0001"}))
    s.exported.append(export_row("WEB-7", "20261115", run_marker=None))  # the browser tag's purchase
    tables: dict[str, list[dict]] = defaultdict(list)
    for row in s.exported:
        # The newest day is still only in the intraday table, as in a real export.
        prefix = "events_intraday_" if row["event_date"] == "20261122" else "events_"
        tables[prefix + row["event_date"]].append(row)
    load_export(bigquery_emulator, DATASET, tables)
    config = s.build(backend="bigquery", project="demo", dataset=DATASET, api_endpoint=bigquery_emulator)

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert (result.verdict, result.exit_code) == ("not_reconciled", 3)
    assert [m["transaction_id"] for m in read_csv(tmp_path / "out" / "missing.csv")] == ["A-0004", "Y-0001"]
    assert [d["transaction_id"] for d in read_csv(tmp_path / "out" / "duplicates.csv")] == ["L-0000"]
    assert [e["transaction_id"] for e in read_csv(tmp_path / "out" / "extras.csv")] == ["WEB-7"]
    dates = {d["event_date"]: (d["status"], d["found"]) for d in result.to_dict()["dates"]}
    assert dates == {"20261115": ("final", 5), "20261116": ("final", 4), "20261122": ("provisional", 1)}


def test_bigquery_errors_are_input_errors(bigquery_emulator: str, tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    s.send("20261115", ["A-1"])
    config = s.build(
        backend="bigquery", project="demo", dataset="analytics_does_not_exist", api_endpoint=bigquery_emulator
    )
    with pytest.raises(ExportUnavailableError) as failure:
        reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert failure.value.exit_code == 2
    assert "analytics_does_not_exist" in str(failure.value)


def test_find_export_backend_follows_config(tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    assert find_export_backend(s.build()).name == "duckdb"
    bq = s.build(backend="bigquery", project="demo", dataset=DATASET, api_endpoint="http://127.0.0.1:9")
    assert find_export_backend(bq).name == "bigquery"


def test_bigquery_only_marked_events_are_proof(bigquery_emulator: str, tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    events = s.send("20261115", ids("M", 3))
    s.arrive(events, drop=frozenset({"M-0001"}))
    s.exported.append(export_row("M-0001", "20261115", run_marker=None))  # the site tag, same id
    load_export(bigquery_emulator, "analytics_marked", {"events_20261115": s.exported})
    config = s.build(backend="bigquery", project="demo", dataset="analytics_marked", api_endpoint=bigquery_emulator)

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert (result.verdict, result.exit_code) == ("not_reconciled", 3)
    [missing] = read_csv(tmp_path / "out" / "missing.csv")
    assert (missing["transaction_id"], missing["seen_from_other_sender"]) == ("M-0001", "1")


def test_bigquery_absent_export_tables_give_exit_6(bigquery_emulator: str, tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    s.arrive(s.send("20261115", ids("P", 2)))
    s.send("20261116", ids("Q", 2))  # the export stopped: no table for the 16th
    load_export(bigquery_emulator, "analytics_paused", {"events_20261115": s.exported})
    config = s.build(backend="bigquery", project="demo", dataset="analytics_paused", api_endpoint=bigquery_emulator)

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert (result.verdict, result.exit_code) == ("export_unavailable", 6)
    assert read_csv(tmp_path / "out" / "missing.csv") == []
    assert {d["event_date"]: d["export"] for d in result.to_dict()["dates"]} == {"20261115": "daily", "20261116": "absent"}


def test_bigquery_dataset_without_any_events_table_is_export_unavailable(bigquery_emulator: str, tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    s.send("20261115", ids("E", 2))
    load_export(bigquery_emulator, "analytics_unlinked", {})
    config = s.build(backend="bigquery", project="demo", dataset="analytics_unlinked", api_endpoint=bigquery_emulator)
    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert (result.verdict, result.exit_code) == ("export_unavailable", 6)


TRAFFIC_SCHEMA = [
    F("collected_traffic_source", "RECORD", fields=[F("manual_source", "STRING"), F("gclid", "STRING")]),
    F(
        "session_traffic_source_last_click",
        "RECORD",
        fields=[F("cross_channel_campaign", "RECORD", fields=[F("source", "STRING"), F("medium", "STRING")])],
    ),
]


def test_bigquery_attribution_comes_from_the_exports_traffic_source_fields(bigquery_emulator: str, tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    events = s.send("20261115", ids("T", 4))
    s.arrive(events)
    sources = ["google", "(not set)", None, "newsletter"]
    rows = []
    for row, source in zip(s.exported, sources, strict=True):
        last_click = {"cross_channel_campaign": {"source": source, "medium": "cpc"}} if source else None
        rows.append({**row, "session_traffic_source_last_click": last_click,
                     "collected_traffic_source": {"manual_source": None, "gclid": "g-1"} if source == "google" else None})
    client = bigquery.Client(
        project="demo", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=bigquery_emulator)
    )
    client.create_dataset("analytics_traffic", exists_ok=True, timeout=30)
    table = client.create_table(
        bigquery.Table("demo.analytics_traffic.events_20261115", schema=GA4_SCHEMA + TRAFFIC_SCHEMA), timeout=30
    )
    assert client.insert_rows_json(table, rows, timeout=30) == []
    config = s.build(backend="bigquery", project="demo", dataset="analytics_traffic", api_endpoint=bigquery_emulator)

    totals = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW).to_dict()["totals"]

    assert (totals["session_attributed"], totals["session_attributed_share"]) == (2, 0.5)  # google, newsletter
    assert totals["collected_source_share"] == 0.25


def test_bigquery_export_without_traffic_source_fields_says_so(bigquery_emulator: str, tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    s.arrive(s.send("20261115", ids("U", 2)))
    load_export(bigquery_emulator, "analytics_old", {"events_20261115": s.exported})
    config = s.build(backend="bigquery", project="demo", dataset="analytics_old", api_endpoint=bigquery_emulator)
    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert result.verdict == "reconciled" and result.to_dict()["totals"]["session_attributed_share"] is None
