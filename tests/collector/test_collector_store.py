"""Accepted events land in the right daily file, in the BigQuery export's shape, readable by DuckDB."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import pytest

from etl.collector import STORE_COLUMNS, read_json_sql, read_store
from etl.collector.endpoint import DEFAULT_STREAM_ID
from etl.collector.faults import FaultOptions


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_purchase_is_stored_with_export_columns_and_typing(mp, build) -> None:
    event = build.purchase(
        "T-1001",
        session_id="1746825440",
        engagement_time_msec=1,
        mpetl_run="run-7",
        is_test=True,
        tax=4.5,
        shipping=3,
        items=[
            {"item_id": "SKU1", "item_name": "Shirt", "price": 20.0, "quantity": 2, "item_category": "Tops", "color": "red"},
            {"item_name": "Socks", "price": 9.99},
        ],
    )
    body = build.request(event, user_id="crm-9", consent={"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"})
    assert mp.collect(body).status_code == 204

    [row] = _lines(mp.server.data_dir / "events_20261122.ndjson")
    assert set(row) == set(STORE_COLUMNS)
    assert row["event_name"] == "purchase"
    assert row["event_date"] == "20261122"
    assert row["event_timestamp"] == build.NOW_MICROS - build.HOUR
    assert row["event_server_timestamp_offset"] == build.HOUR
    assert row["user_pseudo_id"] == "1162820436.1749482504"
    assert row["user_id"] == "crm-9"
    # The export's stream_id is the numeric data-stream id, never the measurement id.
    assert (row["platform"], row["stream_id"]) == ("WEB", DEFAULT_STREAM_ID)
    assert row["stream_id"].isdigit()
    assert row["privacy_info"]["ads_storage"] == "Yes"

    params = {p["key"]: {k: v for k, v in p["value"].items() if v is not None} for p in row["event_params"]}
    assert params["transaction_id"] == {"string_value": "T-1001"}
    assert params["value"] == {"double_value": 49.99}
    assert params["ga_session_id"] == {"int_value": 1746825440}
    assert "session_id" not in params
    assert params["engagement_time_msec"] == {"int_value": 1}
    assert params["is_test"] == {"int_value": 1}
    assert params["shipping"] == {"int_value": 3}
    assert params["mpetl_run"] == {"string_value": "run-7"}
    assert "items" not in params

    ecommerce = row["ecommerce"]
    assert ecommerce["transaction_id"] == "T-1001"
    assert ecommerce["purchase_revenue"] == 49.99
    assert ecommerce["refund_value"] is None
    assert (ecommerce["tax_value"], ecommerce["shipping_value"], ecommerce["currency"]) == (4.5, 3.0, "GBP")
    assert (ecommerce["total_item_quantity"], ecommerce["unique_items"]) == (3, 2)
    assert ecommerce["purchase_revenue_in_usd"] is None  # GBP: no exchange rates offline

    first, second = row["items"]
    assert (first["item_id"], first["item_name"], first["price"], first["quantity"]) == ("SKU1", "Shirt", 20.0, 2)
    assert first["item_category"] == "Tops"
    assert first["item_revenue"] == 40.0
    assert first["item_params"] == [
        {"key": "color", "value": {"string_value": "red", "int_value": None, "float_value": None, "double_value": None}}
    ]
    assert (second["item_id"], second["item_name"], second["quantity"]) == (None, "Socks", 1)


def test_refund_fills_refund_value_and_denied_consent_reads_no(mp, build) -> None:
    refund = {"name": "refund", "timestamp_micros": build.NOW_MICROS, "params": {"transaction_id": "T-1", "currency": "USD", "value": 10}}
    mp.collect(build.request(refund, consent={"ad_user_data": "GRANTED", "ad_personalization": "DENIED"}))
    [row] = read_store(mp.server.data_dir).to_dict("records")
    assert row["ecommerce"]["refund_value"] == 10.0
    assert row["ecommerce"]["refund_value_in_usd"] == 10.0
    assert row["ecommerce"]["purchase_revenue"] is None
    assert row["privacy_info"]["ads_storage"] == "No"


def test_lead_event_without_commerce_params_has_no_ecommerce(mp, build) -> None:
    lead = {"name": "generate_lead", "timestamp_micros": build.NOW_MICROS, "params": {"lead_source": "crm"}}
    mp.collect(build.request(lead))
    [row] = read_store(mp.server.data_dir).to_dict("records")
    assert row["ecommerce"] is None or all(v is None for v in row["ecommerce"].values())
    assert list(row["items"]) == []
    assert row["privacy_info"]["ads_storage"] is None  # no consent sent: unknown, not "granted"


def test_event_date_follows_the_collector_timezone(make_collector, build) -> None:
    # 2026-11-22 05:00 UTC is still the 21st in Los Angeles and already the 22nd in Tokyo.
    ts = build.NOW_MICROS - 7 * build.HOUR
    los_angeles = make_collector(timezone="America/Los_Angeles")
    tokyo = make_collector(timezone="Asia/Tokyo")
    for mp in (los_angeles, tokyo):
        assert mp.collect(build.request(build.purchase("T-9", ts=ts))).status_code == 204
    assert [p.name for p in los_angeles.server.data_dir.glob("events_*.ndjson")] == ["events_20261121.ndjson"]
    assert [p.name for p in tokyo.server.data_dir.glob("events_*.ndjson")] == ["events_20261122.ndjson"]
    assert _lines(los_angeles.server.data_dir / "events_20261121.ndjson")[0]["event_timestamp"] == ts


def test_event_timestamp_falls_back_to_request_then_arrival(mp, build) -> None:
    request_ts = build.NOW_MICROS - 30 * build.HOUR  # 2026-11-21 06:00 UTC
    body = build.request(
        {"name": "with_own", "timestamp_micros": build.NOW_MICROS - build.HOUR},
        {"name": "from_request"},
        timestamp_micros=request_ts,
    )
    mp.collect(body)
    mp.collect(build.request({"name": "from_arrival"}))
    rows = {r["event_name"]: r for r in read_store(mp.server.data_dir).to_dict("records")}
    assert rows["with_own"]["event_timestamp"] == build.NOW_MICROS - build.HOUR
    assert (rows["from_request"]["event_timestamp"], rows["from_request"]["event_date"]) == (request_ts, "20261121")
    assert rows["from_arrival"]["event_timestamp"] == build.NOW_MICROS  # the pinned clock


def test_duckdb_queries_the_store_like_the_export(mp, build) -> None:
    mp.collect(build.request(build.purchase("T-1", value=10.0), build.purchase("T-2", value=5.5)))
    mp.collect(build.request(build.purchase("T-3", value=1.0, ts=build.NOW_MICROS - 20 * build.HOUR)))
    files = sorted(mp.server.data_dir.glob("events_*.ndjson"))
    assert [f.name for f in files] == ["events_20261121.ndjson", "events_20261122.ndjson"]
    sql = f"""
        SELECT event_date,
               (SELECT p.value.string_value FROM UNNEST(event_params) AS t(p) WHERE p.key = 'transaction_id') AS tid,
               ecommerce.purchase_revenue AS revenue
        FROM {read_json_sql(files)}
        ORDER BY tid
    """
    assert duckdb.sql(sql).fetchall() == [("20261122", "T-1", 10.0), ("20261122", "T-2", 5.5), ("20261121", "T-3", 1.0)]


def test_read_store_copes_with_an_empty_or_missing_store(tmp_path) -> None:
    frame = read_store(tmp_path / "nothing-here")
    assert frame.empty
    assert list(frame.columns) == list(STORE_COLUMNS)
    (tmp_path / "events_20261122.ndjson").write_bytes(b"")
    assert read_store(tmp_path).empty


def test_stream_id_is_configurable_and_numeric(make_collector, build, tmp_path) -> None:
    mp = make_collector(stream_id="9876543210")
    mp.collect(build.request(build.purchase("T-1")))
    assert read_store(mp.server.data_dir)["stream_id"].tolist() == ["9876543210"]
    with pytest.raises(ValueError, match="numeric"):
        make_collector(stream_id=build.MEASUREMENT_ID)


def test_intraday_file_first_then_the_daily_file_after_the_lag(make_collector, build) -> None:
    mp = make_collector(daily_lag_s=0.6)
    data = mp.server.data_dir
    mp.collect(build.request(build.purchase("T-1")))
    assert sorted(p.name for p in data.glob("events_*")) == ["events_intraday_20261122.ndjson"]
    assert read_store(data)["event_name"].tolist() == ["purchase"]

    deadline = time.monotonic() + 10
    while not (data / "events_20261122.ndjson").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(p.name for p in data.glob("events_*")) == ["events_20261122.ndjson"]  # intraday table gone

    mp.collect(build.request(build.purchase("T-2")))  # a late event joins the existing daily table
    assert sorted(p.name for p in data.glob("events_*")) == ["events_20261122.ndjson"]
    assert sorted(r["transaction_id"] for r in read_store(data)["ecommerce"]) == ["T-1", "T-2"]


def test_live_traffic_is_stamped_now_without_our_marker_and_bypasses_faults(make_collector, build) -> None:
    mp = make_collector(faults=FaultOptions(drop_rate=1.0))  # every /mp/collect request is dropped; the site's own traffic is not ours
    answer = mp.http.post("/__live", json={"events": 3})
    assert answer.status_code == 200 and answer.json() == {"stored": 3, "event_timestamp": build.NOW_MICROS + 2}
    rows = _lines(mp.server.data_dir / "events_20261122.ndjson")
    assert [(r["event_name"], r["event_timestamp"]) for r in rows] == [("page_view", build.NOW_MICROS + i) for i in range(3)]
    assert not any(p["key"] == "mpetl_run" for r in rows for p in r["event_params"])
    stats = mp.stats()
    assert stats["live_traffic"] == 3 and stats["events_stored"] == 0  # events_received = stored + dropped still holds
    assert mp.http.post("/__live", json={"events": 0}).status_code == 400


def test_withheld_rows_leave_the_table_and_a_release_puts_them_back(mp, build) -> None:
    ours = [build.purchase(f"T-{i}", mpetl_run="run-1") for i in range(4)]
    site = build.purchase("T-1")  # the site's own tag, same id, no marker: never withheld
    assert mp.collect(build.request(*ours)).status_code == 204
    assert mp.collect(build.request(site, client_id="555.1")).status_code == 204
    daily = mp.server.data_dir / "events_20261122.ndjson"

    held = mp.http.post("/__withhold", json={"transaction_ids": ["T-1", "T-2"]}).json()
    assert held == {"withheld": 2}
    def marked() -> list[str]:
        return sorted(r["ecommerce"]["transaction_id"] for r in _lines(daily)
                      if any(p["key"] == "mpetl_run" for p in r["event_params"]))
    assert marked() == ["T-0", "T-3"] and len(_lines(daily)) == 3
    assert mp.collect(build.request(build.purchase("T-9", mpetl_run="run-1"))).status_code == 204  # still appends
    assert marked() == ["T-0", "T-3", "T-9"]

    assert mp.http.post("/__release").json() == {"released": 2}  # Google's late update of the daily table
    assert marked() == ["T-0", "T-1", "T-2", "T-3", "T-9"]
    assert mp.http.post("/__release").json() == {"released": 0}
    assert mp.http.post("/__withhold", json={"transaction_ids": "T-1"}).status_code == 400
