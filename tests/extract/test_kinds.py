"""Vendor kinds, read from the committed samples and from small hand-written exports."""

from __future__ import annotations

import csv
import json

import pandas as pd

from etl.config import IdentityMapConfig
from etl.extract import preview_source
from tests.extract.conftest import SAMPLES, read_all, source


def _raw(path, **kw) -> list[dict[str, str]]:
    with open(path, encoding=kw.get("encoding", "utf-8-sig"), newline="") as fh:
        return list(csv.DictReader(fh, delimiter=kw.get("delimiter", ",")))


def test_salesforce_sample_keeps_every_row_and_explains_non_won():
    path = SAMPLES / "crm" / "salesforce_opportunities.csv"
    frame, chunks = read_all(source(path, "salesforce", event="close_convert_lead"), chunk_rows=16)
    raw = _raw(path)
    assert frame["row"].tolist() == list(range(1, len(raw) + 1))
    assert sum(c.skipped_blank for c in chunks) == 3  # the export's blank trailing rows
    won = frame["event_name"].notna()
    assert set(frame.loc[won, "event_name"]) == {"close_convert_lead"}
    stages = pd.Series([r["Stage"] for r in raw])
    assert won.tolist() == (stages == "Closed Won").tolist()
    # The reason names the column and the rule; the stage text (free text a CRM user typed) is never shown.
    assert (frame.loc[~won, "skip_reason"] == "column 'Stage' is not a won stage (value not shown)").all()
    for stage in set(stages[stages != "Closed Won"]):
        assert not frame["skip_reason"].str.contains(stage, regex=False).any()
    assert frame.loc[won, "skip_reason"].isna().all()
    # "1,234.56" → "1234.56"; the one typo'd amount passes through for the transform to reject
    amounts = pd.Series([r["Amount"] for r in raw])
    assert (frame["value"] == amounts.str.replace(",", "")).sum() == len(raw) - 1
    assert "12,5OO.00" in set(frame["value"])


def test_salesforce_custom_won_stages_and_column_override(write):
    text = "Opportunity ID,Close Date,Amount,Stage,Deal Cookie\nO1,11/20/2026,\"2,000.00\",Signed,GA1.1.1.2\nO2,11/20/2026,5,Closed Won,\n"
    src = source(write("sf.csv", text), "salesforce", event="purchase", options={"won_stages": ["signed"]}, columns={"client_id": "Deal Cookie"})
    frame, chunks = read_all(src)
    assert frame["event_name"].tolist() == ["purchase", pd.NA]
    assert frame.loc[1, "skip_reason"] == "column 'Stage' is not a won stage (value not shown)"
    assert frame.loc[0, "value"] == "2000.00" and chunks[0].columns["client_id"] == "Deal Cookie"


def test_hubspot_sample_maps_cookies_consent_and_lead_source():
    path = SAMPLES / "crm" / "hubspot_deals.csv"
    frame, chunks = read_all(source(path, "hubspot", event="close_convert_lead"))
    raw = _raw(path)
    assert len(frame) == len(raw)
    assert frame["client_id"].tolist() == [r["GA Client ID"] or pd.NA for r in raw]
    assert frame["consent_analytics"].eq("No").sum() >= 1
    assert chunks[0].columns["param.lead_source"] == "Lead Source"
    assert frame["event_name"].notna().tolist() == [r["Deal Stage"] in ("Closed Won", "closedwon") for r in raw]


def test_shopify_sample_folds_line_items_into_orders():
    path = SAMPLES / "pos" / "shopify_orders_export.csv"
    raw = _raw(path)
    frame, chunks = read_all(source(path, "shopify", options={"refunds": True}), chunk_rows=10)
    purchases = frame[frame["event_name"].fillna("") != "refund"]
    first_lines = [i + 1 for i, r in enumerate(raw) if i == 0 or r["Name"] != raw[i - 1]["Name"]]
    assert purchases["row"].tolist() == first_lines
    assert sum(c.lines for c in chunks) == len(raw)
    for _, order in purchases.iterrows():
        lines = [r for i, r in enumerate(raw) if i + 1 >= order["row"] and r["Name"] == order["transaction_id"]]
        lines = lines[: next((k for k in range(1, len(lines)) if lines[k]["Financial Status"]), len(lines))]
        items = json.loads(order["items"])
        assert [it["item_name"] for it in items] == [r["Lineitem name"] for r in lines]
        assert [it["quantity"] for it in items] == [int(r["Lineitem quantity"]) for r in lines]
        # Google's purchase value: the subtotal, without tax and shipping (their own params).
        assert order["value"] == lines[0]["Subtotal"]
        assert (order["param.tax"], order["param.shipping"]) == (lines[0]["Taxes"], lines[0]["Shipping"])
        # Unit price before discount and the line's own discount: the transform spreads them (allocation).
        assert [it["price"] for it in items] == [float(r["Lineitem price"]) for r in lines]
        assert [it.get("line_discount", 0) for it in items] == [float(r["Lineitem discount"]) for r in lines]
    refunds = frame[frame["event_name"] == "refund"]
    refunded = [r for r in raw if r["Financial Status"] in ("refunded", "partially_refunded")]
    # A refund carries the export's cumulative refunded amount and its purchase's own money (value,
    # tax, shipping, total, items): the transform puts it on the purchase's basis.
    assert refunds["refunded"].tolist() == [r["Refunded Amount"] for r in refunded]
    assert refunds["value"].tolist() == [r["Subtotal"] for r in refunded]
    assert refunds["total"].tolist() == [r["Total"] for r in refunded]
    assert refunds["items"].notna().all()
    skipped = frame[frame["skip_reason"].notna()]
    assert set(skipped["skip_reason"]) == {"column 'Financial Status' is not a paid status (value not shown)"}


def test_shopify_cookies_from_note_attributes_and_timestamp_fallback(write):
    header = "Name,Email,Financial Status,Paid at,Currency,Shipping,Taxes,Total,Discount Code,Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Note Attributes\n"
    body = (
        '#1,a@example.com,paid,,USD,0,1.00,11.00,,2026-11-20 14:03:11 -0500,1,Mug,10.00,MUG,"gift: no\n_ga: GA1.1.111.222\n_ga_ABC123: GS2.1.s1763665000$o1$g0$t1763665100$j0$l0$h0"\n'
        "#1,,,,,,,,,,2,\"Tote, \"\"big\"\"\",5.00,,\n"
        "#2,b@example.com,paid,2026-11-20 15:00:00 -0500,USD,0,0,3,,2026-11-20 14:59:00 -0500,1,Card,3,C1,\n"
    )
    frame, _ = read_all(source(write("s.csv", header + body), "shopify"))
    assert frame["row"].tolist() == [1, 3]
    assert frame.loc[0, "client_id"] == "GA1.1.111.222"
    assert frame.loc[0, "session_id"].startswith("_ga_ABC123=GS2.1.s1763665000")
    assert frame.loc[1, "client_id"] is pd.NA
    assert frame.loc[0, "timestamp"] == "2026-11-20 14:03:11 -0500"  # no Paid at: Created at
    assert json.loads(frame.loc[0, "items"]) == [
        {"item_id": "MUG", "item_name": "Mug", "price": 10.00, "quantity": 1},
        {"item_name": 'Tote, "big"', "price": 5.00, "quantity": 2},
    ]


def test_shopify_orders_are_never_split_across_chunks(write):
    header = "Name,Financial Status,Paid at,Created at,Currency,Total,Lineitem quantity,Lineitem name,Lineitem price\n"
    lines, expected = [], []
    for order in range(1, 41):
        n_items = order % 4 + 1
        expected.append((len(lines) + 1, n_items))
        for k in range(n_items):
            first = k == 0
            lines.append(f"#{order},{'paid' if first else ''},,{'2026-11-20 10:00:00 +0000' if first else ''},{'EUR' if first else ''},{order if first else ''},1,I{k},1.00")
    path = write("o.csv", header + "\n".join(lines) + "\n")
    for chunk_rows in (2, 7, 1000):
        frame, chunks = read_all(source(path, "shopify"), chunk_rows=chunk_rows)
        assert list(zip(frame["row"], frame["items"].map(lambda s: len(json.loads(s))), strict=True)) == expected
        assert sum(c.lines for c in chunks) == len(lines)


def test_square_sample_items_refunds_zone_and_identity_map():
    pos = SAMPLES / "pos"
    idmap = IdentityMapConfig(pos / "customer_identity_map.csv", key="Square Customer ID", client_id="GA Cookie", source_key="Customer ID")
    src = source(pos / "square_transactions.csv", "square", identity_map=idmap, options={"items_path": "square_item_details.csv", "currency": "USD"})
    frame, chunks = read_all(src, chunk_rows=9)
    raw = _raw(pos / "square_transactions.csv")
    mapping = {r["Square Customer ID"]: r["GA Cookie"] for r in _raw(pos / "customer_identity_map.csv")}
    assert frame["row"].tolist() == list(range(1, len(raw) + 1))
    assert frame["client_id"].tolist() == [mapping.get(r["Customer ID"], pd.NA) for r in raw]
    assert set(frame["timezone"]) == {"America/Los_Angeles"}
    assert frame.loc[0, "timestamp"] == f"{raw[0]['Date']} {raw[0]['Time']}"
    refund = frame["event_name"] == "refund"
    assert refund.sum() == sum(r["Event Type"] == "Refund" for r in raw)
    assert not frame.loc[refund, "value"].str.startswith("-").any()
    assert frame["currency"].eq("USD").all() and frame["items"].notna().all()
    items = json.loads(frame.loc[0, "items"])
    assert {"item_id", "item_name", "line_gross", "line_discount", "quantity"} <= set(items[0])
    assert "via identity map" in chunks[0].columns["client_id"]


def test_square_without_identity_never_invents_a_client_id(write, tmp_path):
    text = "Date,Time,Time Zone,Total Collected,Transaction ID,Customer ID,Event Type\n2026-11-20,09:00:00,Eastern Time (US & Canada),\"$1,204.50\",T1,C1,Payment\n2026-11-20,09:05:00,Mars Time,$3.00,T2,,Payment\n2026-11-20,09:06:00,Eastern Time (US & Canada),$3.00,T3,C2,Payment\n"
    write("map.csv", "ref,cookie\nC1,GA1.1.5.6\nC2,GA1.1.7.8\nC2,GA1.1.9.9\n")
    idmap = IdentityMapConfig(tmp_path / "map.csv", key="ref", client_id="cookie", source_key="Customer ID")
    frame, _ = read_all(source(write("sq.csv", text), "square", identity_map=idmap))
    assert frame["client_id"].tolist() == ["GA1.1.5.6", pd.NA, pd.NA]  # C2 is ambiguous in the map
    assert frame["value"].tolist() == ["1204.50", "3.00", "3.00"]
    assert frame["timezone"].tolist() == ["America/New_York", "Mars Time", "America/New_York"]


def test_generic_sample_cp1252_semicolon_decimal_comma():
    path = SAMPLES / "generic" / "closed_deals.csv"
    cols = {"transaction_id": "Auftrags-Nr", "timestamp": "Abschlussdatum", "value": "Betrag", "currency": "Währung",
            "client_id": "GA Client ID", "session_id": "GA Sitzung", "consent_analytics": "Einwilligung Analyse"}
    frame, _ = read_all(source(path, columns=cols, decimal=","))
    raw = _raw(path, encoding="cp1252", delimiter=";")
    expected = [r["Betrag"].replace(".", "").replace(",", ".") for r in raw]
    assert frame["value"].tolist() == expected
    assert set(frame["consent_analytics"]) == {"ja", "nein"}


def test_preview_shows_header_mapping_and_head():
    info = preview_source(source(SAMPLES / "crm" / "hubspot_deals.csv", "hubspot"), n=3)
    assert "Record ID" in info["columns_found"] and info["mapping"]["transaction_id"] == "Record ID"
    assert info["head"]["row"].tolist() == [1, 2, 3]


def test_samples_are_deterministic(tmp_path):
    """The generator is seeded: re-running it reproduces the committed files byte for byte."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.HERE = tmp_path
    module.main()
    for path in tmp_path.rglob("*.csv"):
        assert path.read_bytes() == (SAMPLES / path.relative_to(tmp_path)).read_bytes(), path.name


