"""Vendor exports mapped the way Google's purchase reference defines the event (issue 14)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson
import pandas as pd

from etl.config import PropertyConfig, WindowConfig
from etl.transform import TransformOptions, transform_chunk
from tests.extract.conftest import read_all, source

NOW_MICROS = int(datetime(2026, 11, 21, 6, 0, tzinfo=UTC).timestamp()) * 1_000_000
SHOPIFY_HEADER = ("Name,Email,Financial Status,Paid at,Currency,Subtotal,Shipping,Taxes,Total,Discount Code,Created at,"
                  "Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Note Attributes,Refunded Amount,Refunded at\n")


def _events(src, measurement_id="G-BBB222", **kw):
    """The whole file through the transform: (events, summed counters)."""
    prop = PropertyConfig(measurement_id=measurement_id, timezone="UTC")
    frames, counters = [], Counter()
    for chunk in read_all(src)[1]:
        result = transform_chunk(chunk, TransformOptions(source=src, prop=prop, window=WindowConfig(), wall_micros=NOW_MICROS, **kw))
        frames.append(result.events)
        counters.update({**result.tally.buckets.to_dict(), **result.tally.notes.to_dict()})
    return pd.concat(frames, ignore_index=True), counters


def test_shopify_session_is_the_configured_propertys_cookie_of_several(write):
    notes = ("_ga: GA1.1.111.1763600000\n_ga_AAA111: GS1.1.1763600001.1.0.1763600001.0.0.0\n"
             "_ga_BBB222: GS2.1.s1763650000$o3$g1$t1763650100$j0$l0$h0\n_ga_CCC333: GS1.1.1763600003.1.0.1763600003.0.0.0")
    body = (f'#1,,paid,2026-11-20 14:03:11 -0500,USD,10.00,0,0,10.00,,2026-11-20 14:03:11 -0500,1,Mug,10.00,MUG,"{notes}",,\n')
    src = source(write("s.csv", SHOPIFY_HEADER + body), "shopify", consent_default="omit")
    for mid, expected in (("G-BBB222", "1763650000"), ("G-AAA111", "1763600001"), ("G-ZZZ999", None)):
        events, _ = _events(src, mid)
        (event,) = [orjson.loads(e) for e in events["event_json"]]
        assert event["params"].get("session_id") == expected, mid


def test_shopify_purchase_value_is_the_subtotal_with_tax_and_shipping_in_their_own_params(write):
    body = ("#1,,paid,2026-11-20 14:03:11 -0500,USD,45.00,5.90,3.60,54.50,WELCOME10,2026-11-20 14:03:11 -0500,1,Mug,"
            '50.00,MUG,"_ga: GA1.1.111.1763600000",,\n'
            "#2,,paid,2026-11-20 15:03:11 -0500,USD,12.00,0,0,12.00,,2026-11-20 15:03:11 -0500,1,Card,12,,"
            '"_ga: GA1.1.112.1763600000",,\n')
    src = source(write("s.csv", SHOPIFY_HEADER + body), "shopify", consent_default="omit")
    events, _ = _events(src)
    first, second = [orjson.loads(e)["params"] for e in events["event_json"]]
    assert (first["value"], first["tax"], first["shipping"], first["coupon"]) == (45.0, 3.6, 5.9, "WELCOME10")
    assert second["value"] == 12.0


def test_shopify_refund_uses_the_refunds_own_time_and_is_counted_outside_the_window(write):
    body = ("#1,,refunded,2026-11-20 14:03:11 -0500,USD,10.00,0,0,10.00,,2026-11-20 14:03:11 -0500,1,Mug,10.00,MUG,"
            '"_ga: GA1.1.111.1763600000",10.00,2026-11-21 01:00:00 -0500\n'
            "#2,,refunded,2026-11-20 15:03:11 -0500,USD,12.00,0,0,12.00,,2026-11-20 15:03:11 -0500,1,Card,12,,"
            '"_ga: GA1.1.112.1763600000",12.00,2026-11-19 09:00:00 -0500\n')
    src = source(write("s.csv", SHOPIFY_HEADER + body), "shopify", consent_default="omit", options={"refunds": True})
    events, _ = _events(src)
    refunds = events[events["event_name"] == "refund"]
    assert sorted(refunds["timestamp_micros"]) == [
        int(datetime(2026, 11, 19, 14, 0, tzinfo=UTC).timestamp()) * 1_000_000,
        int(datetime(2026, 11, 21, 6, 0, tzinfo=UTC).timestamp()) * 1_000_000,
    ]
    # A nightly run for 20 Nov (UTC) leaves out the refund of the 19th: the summary counts it.
    since = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp()) * 1_000_000
    _, counters = _events(src, since_micros=since, until_micros=since + 86_400_000_000)
    assert counters["refunds_outside_window"] == 2  # the 19th's and the 21st's (06:00 UTC)
    assert counters["outside_window"] == 2  # the purchases of the 20th are in


def test_square_value_is_net_sales_and_tax_its_own_param(write):
    header = "Date,Time,Time Zone,Gross Sales,Discounts,Net Sales,Tax,Tip,Total Collected,Transaction ID,Event Type\n"
    body = ("2026-11-20,06:50:47,Pacific Time (US & Canada),$5.25,$0.00,$5.25,$0.49,$0.94,$6.68,TX1,Payment\n"
            "2026-11-20,07:50:47,Pacific Time (US & Canada),-$5.25,$0.00,-$5.25,-$0.49,$0.00,-$5.74,TX1,Refund\n")
    src = source(write("sq.csv", header + body), "square", consent_default="omit", options={"currency": "USD"},
                 columns={"client_id": "Transaction ID"})
    frame, _ = read_all(src)
    assert frame["value"].tolist() == ["5.25", "5.25"]
    assert frame["param.tax"].tolist() == ["0.49", "0.49"]  # a refund's tax is positive, like its value


def test_validate_and_sources_never_print_cell_values(run_mpetl, tmp_path):
    csv = tmp_path / "deals.csv"
    csv.write_text(
        "Opportunity ID,Close Date,Amount,Stage,GA Client ID\n"
        "O1,2026-11-20,100.00,Zq9Stage Jane Doe private,123.456\n"
        "O3,2026-11-20," + "9" * 400 + ",Closed Won,123.456\n"
    )
    generic = tmp_path / "events.csv"
    generic.write_text("id,time,amount,currency,cid,Event\n"
                       "G1,2026-11-20 10:00:00,5,EUR,123.456,Zq9jane.doe@example.com\n"
                       "G2,2026-11-20 10:00:00,5,EUR,123.456,Zq9custom_event\n")
    config = tmp_path / "c.toml"
    config.write_text(f"""
[property]
measurement_id = "G-TEST123"
timezone = "UTC"
[destination]
endpoint = "http://127.0.0.1:9"
[ledger]
path = "{tmp_path / 'ledger.sqlite'}"
[[sources]]
name = "sf"
kind = "salesforce"
path = "{csv}"
event = "purchase"
consent_default = "grant"
options = {{ currency = "EUR" }}
[[sources]]
name = "gen"
kind = "csv"
path = "{generic}"
event = "purchase"
consent_default = "grant"
[sources.columns]
transaction_id = "id"
timestamp = "time"
value = "amount"
currency = "currency"
client_id = "cid"
event_name = "Event"
""")
    outputs = []
    for args in (["validate", "--config", str(config), "--now", "2026-11-21T06:00:00Z", "--out", str(tmp_path / "v")],
                 ["sources", "--config", str(config), "--now", "2026-11-21T06:00:00Z"]):
        done = run_mpetl(*args, env={"MP_API_SECRET": "s"})
        # Every row of both sources is rejected on purpose: validate says so with exit 2 ("nothing usable").
        assert done.returncode == (2 if args[0] == "validate" else 0), done.stderr
        outputs.append(done.stdout + done.stderr)
    outputs.append((tmp_path / "v" / "rejects.ndjson").read_text())
    outputs.append((tmp_path / "v" / "summary.json").read_text())
    for text in outputs:
        assert "Zq9" not in text and "jane" not in text.lower() and "9" * 20 not in text
    assert "'Event'" in outputs[2] and "'Amount'" in outputs[2]
    # A stage that is not won is filtered, not rejected: named (the column, never the stage) where filters are.
    assert "'Stage'" not in outputs[2] and "'Stage'" in outputs[0] and "'Stage'" in outputs[3]
