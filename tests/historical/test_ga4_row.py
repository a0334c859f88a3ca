"""etl/protocol/ga4_row.py: an MP event becomes exactly the row GA4's export (and our collector) stores."""

from __future__ import annotations

import zoneinfo

import pytest

from etl.collector.export import export_row
from etl.collector.store import STORE_COLUMNS
from etl.protocol.ga4_row import ROW_SCHEMA, duckdb_columns, ga4_row

LONDON = zoneinfo.ZoneInfo("Europe/London")
TS = 1_795_300_000_000_000  # 2026-11-21T...Z
PURCHASE = {
    "name": "purchase",
    "timestamp_micros": TS,
    "params": {
        "transaction_id": "T-1001", "value": 42.5, "currency": "USD", "tax": 3, "shipping": 4.25,
        "session_id": "1795000123", "engagement_time_msec": 1, "coupon": "WINTER", "paid": True,
        "items": [{"item_id": "SKU-1", "item_name": "Mug", "price": 10.0, "quantity": 2, "index": 0, "colour": "red"},
                  {"item_id": "SKU-2", "price": 22.5}],
    },
}
BODY = {"client_id": "1234567890.1763000000", "user_id": "u-77",
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}}


def params_of(row: dict) -> dict:
    return {p["key"]: p["value"] for p in row["event_params"]}


@pytest.mark.parametrize("event", [
    PURCHASE,
    {"name": "refund", "params": {"transaction_id": 77, "value": 5, "currency": "EUR", "items": [{"item_id": "A"}]}},
    {"name": "generate_lead", "timestamp_micros": TS, "params": {"session_id": "not-a-number", "lead_source": "fair"}},
    {"name": "close_convert_lead", "timestamp_micros": TS, "params": {}},
])
def test_same_row_as_the_collector_stores(event):
    body = {**BODY, "timestamp_micros": TS - 5, "user_properties": {"tier": {"value": "gold"}}}
    arrival = TS + 3_600_000_000
    ours = ga4_row(event, body, zone=LONDON, stream_id="G-TEST1", arrival_micros=arrival)
    assert ours == export_row(event, body, arrival_micros=arrival, zone=LONDON, stream_id="G-TEST1")
    assert list(ours) == [f["name"] for f in ROW_SCHEMA]


def test_typed_values_ecommerce_and_items_as_the_export_types_them():
    row = ga4_row(PURCHASE, BODY, zone=LONDON, stream_id="G-TEST1")
    params = params_of(row)
    assert params["transaction_id"]["string_value"] == "T-1001"
    assert params["value"] == {"string_value": None, "int_value": None, "float_value": None, "double_value": 42.5}
    assert params["tax"]["int_value"] == 3 and params["paid"]["int_value"] == 1
    assert params["ga_session_id"]["int_value"] == 1795000123 and "session_id" not in params
    assert "items" not in params
    assert row["ecommerce"]["transaction_id"] == "T-1001"
    assert row["ecommerce"]["purchase_revenue"] == 42.5 == row["ecommerce"]["purchase_revenue_in_usd"]
    assert (row["ecommerce"]["tax_value"], row["ecommerce"]["shipping_value"]) == (3.0, 4.25)
    assert row["ecommerce"]["total_item_quantity"] == 3 and row["ecommerce"]["unique_items"] == 2
    mug, other = row["items"]
    assert (mug["item_id"], mug["quantity"], mug["item_revenue"], mug["item_list_index"]) == ("SKU-1", 2, 20.0, "0")
    assert mug["item_params"] == [{"key": "colour", "value": {"string_value": "red", "int_value": None,
                                                               "float_value": None, "double_value": None}}]
    assert other["quantity"] == 1
    assert (row["user_pseudo_id"], row["user_id"], row["platform"], row["stream_id"]) == (
        "1234567890.1763000000", "u-77", "WEB", "G-TEST1")
    assert row["privacy_info"]["ads_storage"] == "Yes"


def test_event_date_is_the_property_zone_day_and_a_row_that_never_arrived_has_no_offset():
    # 23:30 UTC on 2026-06-30 is already 1 July in London (BST) and still 30 June in New York.
    ts = 1_782_862_200_000_000
    event = {"name": "purchase", "timestamp_micros": ts, "params": {"transaction_id": "X"}}
    assert ga4_row(event, BODY, zone=LONDON, stream_id="s")["event_date"] == "20260701"
    row = ga4_row(event, BODY, zone=zoneinfo.ZoneInfo("America/New_York"), stream_id="s")
    assert row["event_date"] == "20260630"
    assert row["event_timestamp"] == ts and row["event_server_timestamp_offset"] is None


def test_no_time_at_all_is_an_error_not_a_made_up_date():
    with pytest.raises(ValueError, match="no event date"):
        ga4_row({"name": "purchase", "params": {}}, {"client_id": "1.2"}, zone=LONDON, stream_id="s")


def test_schema_matches_the_collector_store_so_the_two_union():
    assert duckdb_columns() == STORE_COLUMNS
