"""Issue 21's "Done when": a two-night Shopify "Export orders" CSV sends exactly what Google defines —
asserted on the values GA4 would store (the local collector's GA4-shaped export) and on the exact
request bodies (a dry run's requests.ndjson), on both ledger backends.

Night 1 (wall clock 2026-11-21 06:00 UTC), one export file of the last days' orders:
- #1001 Google's own example: 3 × 10.00 + 1 × 22.00, code SAVE20 (10.40 off the order): Subtotal 41.60.
- #1002 3 × 10.00 with a 6.00 line discount, fully refunded (Cancelled at): Subtotal 24.00, Total 26.40.
- #1003 Subtotal 80.00 + Shipping 8.00 + Taxes 8.00 = Total 96.00, partially refunded: 48.00 so far.
- #1004 an item whose name is 130 characters; #1005 205 lines of 1.00.
A second source exports without `Subtotal`: #2001 Total 54.50, Taxes 3.60, Shipping 5.90.
Night 2 (a day later): the same export, #1003 now fully refunded (Refunded Amount 96.00).
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from etl.collector import CollectorServer, read_store
from etl.config import load_config
from etl.pipeline import RunOptions, run_pipeline
from tests.support import dump_toml, ledger_location

pytestmark = pytest.mark.usefixtures("ledger_backend")

MID, SECRET = "G-MONEY21", "money-nights-secret-21"
NIGHT1 = dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.UTC)
NIGHT2 = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.UTC)
HEADER = ["Name", "Email", "Financial Status", "Paid at", "Currency", "Subtotal", "Shipping", "Taxes", "Total",
          "Discount Code", "Discount Amount", "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price",
          "Lineitem sku", "Lineitem discount", "Note Attributes", "Cancelled at", "Refunded Amount"]
LONG_NAME = ("Hand-thrown stoneware serving bowl with a reactive blue glaze, food and dishwasher safe, "
             "28 centimetres wide, made in Portugal")


def _order(name, status, paid, money, lines, *, cookie, refunded="0.00", cancelled=""):
    subtotal, shipping, taxes, total, code, discount = money
    rows = []
    for j, (qty, item, price, sku, line_discount) in enumerate(lines):
        first = j == 0
        rows.append({
            "Name": name, "Email": "buyer@example.com" if first else "", "Financial Status": status if first else "",
            "Paid at": paid if first else "", "Currency": "USD" if first else "", "Subtotal": subtotal if first else "",
            "Shipping": shipping if first else "", "Taxes": taxes if first else "", "Total": total if first else "",
            "Discount Code": code if first else "", "Discount Amount": discount if first else "",
            "Created at": paid, "Lineitem quantity": str(qty), "Lineitem name": item, "Lineitem price": price,
            "Lineitem sku": sku, "Lineitem discount": line_discount,
            "Note Attributes": f"_ga: GA1.1.{cookie}.1763600000" if first else "", "Cancelled at": cancelled if first else "",
            "Refunded Amount": refunded if first else ""})
    return rows


def _export(path: Path, night: int, header: list[str] = HEADER) -> Path:
    orders = [
        _order("#1001", "paid", "2026-11-20 09:00:00 -0500", ("41.60", "5.00", "4.16", "50.76", "SAVE20", "10.40"),
               [(3, "Blue Widget", "10.00", "SKU_123", "0.00"), (1, "Red Widget", "22.00", "SKU_456", "0.00")], cookie=101),
        _order("#1002", "refunded", "2026-11-20 10:00:00 -0500", ("24.00", "0.00", "2.40", "26.40", "", "6.00"),
               [(3, "Tee", "10.00", "TEE", "6.00")], cookie=102, refunded="26.40", cancelled="2026-11-20 18:00:00 -0500"),
        _order("#1003", "partially_refunded" if night == 1 else "refunded", "2026-11-20 11:00:00 -0500",
               ("80.00", "8.00", "8.00", "96.00", "", "0.00"), [(1, "Lamp", "80.00", "LAMP", "0.00")], cookie=103,
               refunded="48.00" if night == 1 else "96.00", cancelled="" if night == 1 else "2026-11-21 12:00:00 -0500"),
        _order("#1004", "paid", "2026-11-20 12:00:00 -0500", ("40.00", "0.00", "0.00", "40.00", "", "0.00"),
               [(1, LONG_NAME, "40.00", "BOWL", "0.00")], cookie=104),
        _order("#1005", "paid", "2026-11-20 13:00:00 -0500", ("205.00", "0.00", "0.00", "205.00", "", "0.00"),
               [(1, f"Sticker {i}", "1.00", f"ST-{i}", "0.00") for i in range(205)], cookie=105),
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for order in orders:
            writer.writerows(order)
    return path


def _no_subtotal(path: Path) -> Path:
    rows = _order("#2001", "paid", "2026-11-20 14:00:00 -0500", ("", "5.90", "3.60", "54.50", "", "5.00"),
                  [(1, "Kettle", "50.00", "KTL", "5.00")], cookie=201)
    header = [h for h in HEADER if h != "Subtotal"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _config(tmp_path: Path, endpoint: str, night: int) -> Path:
    exports = tmp_path / f"night{night}"
    exports.mkdir(exist_ok=True)
    location = ledger_location(tmp_path)
    data = {
        "property": {"measurement_id": MID, "timezone": "UTC"},
        "destination": {"endpoint": endpoint, "backoff_base_s": 0.05, "backoff_max_s": 1.0},
        "ledger": {"path": str(location)} if isinstance(location, Path) else {"url": location},
        "sources": [
            {"name": "shop", "kind": "shopify", "path": str(_export(exports / "orders_export.csv", night)),
             "timezone": "America/New_York", "consent_default": "omit", "options": {"refunds": True}},
            {"name": "shop_nosub", "kind": "shopify", "path": str(_no_subtotal(exports / "orders_nosub.csv")),
             "timezone": "America/New_York", "consent_default": "omit"},
        ],
    }
    path = tmp_path / f"config{night}.toml"
    path.write_text(dump_toml(data))
    return path


def _night(tmp_path: Path, night: int, now: dt.datetime) -> dict:
    store = tmp_path / "store"
    with CollectorServer(store, measurement_id=MID, api_secret=SECRET, now=now, timezone="UTC") as server:
        config = load_config(_config(tmp_path, server.url, night))
        result = run_pipeline(config, RunOptions(out_dir=tmp_path / f"out{night}-{int(now.timestamp())}", clock=lambda: int(now.timestamp()) * 1_000_000))
    assert result.exit_code == 0, result.summary
    return result.summary


def _stored(store: Path) -> list[dict]:
    frame = read_store(store)
    out = []
    for row in frame.to_dict("records"):
        params = {p["key"]: next((v for v in p["value"].values() if v is not None), None) for p in row["event_params"]}
        out.append({"name": row["event_name"], "tid": params.get("transaction_id"), "value": params.get("value"),
                    "tax": params.get("tax"), "shipping": params.get("shipping"), "coupon": params.get("coupon"),
                    "items": [] if row["items"] is None else list(row["items"]), "ts": row["event_timestamp"]})
    return out


def _micros(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z").timestamp()) * 1_000_000


def test_a_two_night_shopify_export_sends_exactly_what_google_defines(tmp_path, monkeypatch):
    monkeypatch.setenv("MP_API_SECRET", SECRET)
    # The exact bodies of night 1 first (a dry run works on a copy of the ledger: nothing is kept).
    dry = run_pipeline(load_config(_config(tmp_path, "http://127.0.0.1:9", 1)),
                       RunOptions(out_dir=tmp_path / "dry", mode="dry-run", clock=lambda: int(NIGHT1.timestamp()) * 1_000_000))
    bodies = [orjson.loads(line) for line in (tmp_path / "dry" / "requests.ndjson").read_bytes().splitlines()]
    sent = {(e["name"], e["params"]["transaction_id"]): e["params"] for b in bodies for e in b["body"]["events"]} \
        if bodies and "body" in bodies[0] else {(e["name"], e["params"]["transaction_id"]): e["params"]
                                                 for b in bodies for e in b["events"]}
    google = sent[("purchase", "#1001")]
    assert (google["value"], google["tax"], google["shipping"], google["coupon"]) == (41.6, 4.16, 5, "SAVE20")
    assert [(i["item_id"], i["price"], i["discount"], i["quantity"]) for i in google["items"]] == [
        ("SKU_123", 8, 2, 3), ("SKU_456", 17.6, 4.4, 1)]
    assert [(i["price"], i["discount"], i["quantity"]) for i in sent[("purchase", "#1002")]["items"]] == [(8, 2, 3)]
    assert dry.summary["sources"]["shop_nosub"]["value_from_total"] == 1

    first = _night(tmp_path, 1, NIGHT1)
    events = _stored(tmp_path / "store")
    by = {(e["name"], e["tid"]): e for e in events}
    # Purchases: Google's example, the 130-character name cut to 100, 200 of 205 items with the full value.
    assert (by["purchase", "#1001"]["value"], by["purchase", "#1001"]["tax"]) == (41.6, 4.16)
    assert [(i["price"], i["quantity"]) for i in by["purchase", "#1001"]["items"]] == [(8.0, 3), (17.6, 1)]
    (bowl,) = by["purchase", "#1004"]["items"]
    assert bowl["item_name"] == LONG_NAME[:100] and by["purchase", "#1004"]["value"] == 40
    assert len(by["purchase", "#1005"]["items"]) == 200 and by["purchase", "#1005"]["value"] == 205
    assert first["limits"] == {"item_name_truncated": 1, "items_past_200_dropped": 5, "events_with_items_past_200": 1}
    # No Subtotal: Total − Taxes − Shipping, never Total.
    assert by["purchase", "#2001"]["value"] == 45 and first["sources"]["shop_nosub"]["value_from_total"] == 1
    # The full refund mirrors its purchase (value, tax, items) at Cancelled at: the order nets to 0.
    full = by["refund", "#1002"]
    assert (full["value"], full["tax"]) == (by["purchase", "#1002"]["value"], by["purchase", "#1002"]["tax"]) == (24, 2.4)
    assert [(i["price"], i["quantity"]) for i in full["items"]] == [(8.0, 3)]
    assert full["ts"] == _micros("2026-11-20 18:00:00 -0500")
    # The partial refund of 48.00 (tax included) on the pre-tax basis: 48 × 80 / 96 = 40, at the wall clock.
    partial = by["refund", "#1003"]
    assert (partial["value"], partial["tax"], partial["shipping"], partial["items"]) == (40, 4, 4, [])
    assert partial["ts"] == int(NIGHT1.timestamp()) * 1_000_000
    # Money balances per currency like the rows; refunds negative.
    usd = first["money"]["USD"]
    assert Decimal(usd["value_sent"]) == Decimal("41.60") + 24 + 80 + 40 + 205 + 45 - 24 - 40
    assert Decimal(usd["value_in"]) == sum(Decimal(usd[k]) for k in usd if k != "value_in")

    second = _night(tmp_path, 2, NIGHT2)
    night2 = [e for e in _stored(tmp_path / "store") if e not in events]
    # Only the second night's delta: the rest of #1003 (48.00 more: 40 + 4 + 4), nothing else resent.
    assert [(e["name"], e["tid"], e["value"], e["tax"], e["shipping"], e["items"]) for e in night2] == [
        ("refund", "#1003", 40, 4, 4, [])]
    assert night2[0]["ts"] == _micros("2026-11-21 12:00:00 -0500")
    # Every other row is the same event again (the partial refund's row now holds the new level).
    assert second["sent"] == 1 and second["duplicate"] == first["sent"] - 1
    refunds = [e for e in _stored(tmp_path / "store") if e["tid"] == "#1003" and e["name"] == "refund"]
    assert sum(e["value"] for e in refunds) == by["purchase", "#1003"]["value"] == 80  # nets to exactly 0
    assert Decimal(second["money"]["USD"]["value_sent"]) == Decimal(-40)
    assert Decimal(second["money"]["USD"]["value_duplicate"]) == Decimal(usd["value_sent"]) + 40

    # A third night with the same export sends nothing: every level already in the ledger.
    third = _night(tmp_path, 2, NIGHT2 + dt.timedelta(hours=1))
    assert third["sent"] == 0 and len(_stored(tmp_path / "store")) == len(events) + 1
    assert third["balanced"] and Decimal(third["money"]["USD"]["value_sent"]) == 0
