"""Money exactly as Google defines it (issue 21) and bad money rejected with its reason (issue 23).

Google's "Apply a discount to an ecommerce event"
(developers.google.com/analytics/devguides/collection/ga4/apply-discount): item `price` is the unit
price after discount, `discount` the unit discount, value = Σ price × quantity; their example is
3 × 8.00 + 1 × 17.60 = 41.60 after a SAVE20 code. The events asserted here are the JSON the sender
sends, values included.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.accounting import Money
from etl.config import SourceConfig
from etl.protocol import currency as cur
from etl.transform import TransformOptions, transform_chunk
from etl.transform.allocation import Line, allocate, shares
from tests.transform.test_events import NOW_MICROS, PROP, SOURCE, WINDOW, _chunk, _row


def _transform(rows: list[dict], source: SourceConfig = SOURCE, columns: dict[str, str] | None = None):
    chunk = _chunk(rows, columns or {"value": "Subtotal", "total": "Total", "param.tax": "Taxes",
                                     "param.shipping": "Shipping", "items": "Lineitems", "currency": "Currency"})
    return transform_chunk(chunk, TransformOptions(source=source, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))


def _params(result, i: int = 0) -> dict:
    return orjson.loads(result.events["event_json"][i])["params"]


def _items(lines: list[dict]) -> str:
    return orjson.dumps(lines).decode()


def _revenue(params: dict, places: int = 2) -> Decimal:
    return sum((Decimal(str(i["price"])) * i["quantity"] for i in params["items"]), Decimal(0)).quantize(
        Decimal(1).scaleb(-places))


def test_googles_own_example_an_order_code_spread_over_the_units():
    """3 × 10.00 and 1 × 22.00 with SAVE20 (10.40 off the order): 3 × 8.00 + 1 × 17.60 = 41.60."""
    result = _transform([_row(value="41.60", currency="USD", items=_items([
        {"item_id": "SKU_123", "item_name": "Blue Widget", "price": 10.00, "quantity": 3},
        {"item_id": "SKU_456", "item_name": "Red Widget", "price": 22.00, "quantity": 1}]))])
    params = _params(result)
    assert params["value"] == 41.6
    assert params["items"] == [
        {"item_id": "SKU_123", "item_name": "Blue Widget", "price": 8, "quantity": 3, "discount": 2},
        {"item_id": "SKU_456", "item_name": "Red Widget", "price": 17.6, "quantity": 1, "discount": 4.4}]


def test_a_line_discount_becomes_the_unit_price_after_discount_and_the_unit_discount():
    """Issue 21's first problem: 3 × 10.00 with a 6.00 line discount was sent as price 10, discount 6."""
    result = _transform([_row(value="24.00", currency="USD", items=_items([
        {"item_id": "TEE", "price": 10.00, "quantity": 3, "line_discount": 6.00}]))])
    assert _params(result)["items"] == [{"item_id": "TEE", "price": 8, "quantity": 3, "discount": 2}]


def test_a_line_total_that_does_not_divide_by_its_quantity_is_two_entries_that_add_up_to_the_cent():
    result = _transform([_row(value="29.00", currency="USD", items=_items([
        {"item_id": "MUG", "price": 10.00, "quantity": 3, "line_discount": 1.00}]))])
    params = _params(result)
    assert params["items"] == [{"item_id": "MUG", "price": 9.67, "quantity": 2, "discount": 0.33},
                               {"item_id": "MUG", "price": 9.66, "quantity": 1, "discount": 0.34}]
    assert _revenue(params) == Decimal("29.00") == Decimal(str(params["value"])).quantize(Decimal("0.01"))


@pytest.mark.parametrize("code,value,prices", [
    ("JPY", "2000", [667, 667, 666]),  # no minor unit: whole yen
    ("KWD", "2.000", [0.667, 0.667, 0.666]),  # three places: fils
])
def test_minor_units_follow_the_currency(code, value, prices):
    result = _transform([_row(value=value, currency=code, items=_items([{"item_id": "X", "price": 1000 if code == "JPY" else 1,
                                                                          "quantity": 3}]))])
    items = _params(result)["items"]
    assert [i["price"] for i in items for _ in range(i["quantity"])] == prices
    assert cur.exponent(code) == (0 if code == "JPY" else 3)


def test_items_without_an_order_value_set_the_value():
    """A generic `items` column and no value column: value = Σ price × quantity after discounts."""
    result = _transform([_row(value=None, currency="EUR", items=_items([
        {"item_id": "A", "price": 4.50, "quantity": 2, "discount": 0.50}, {"item_id": "B", "price": 3, "quantity": 1}]))])
    params = _params(result)
    assert params["value"] == 11 and params["items"][0] == {"item_id": "A", "price": 4, "quantity": 2, "discount": 0.5}


def test_prices_already_after_discount_are_kept_with_the_option():
    source = SourceConfig(name="crm", kind="csv", path="crm.csv", consent_default="grant",
                          options={"item_price": "after_discount", "item_discount": "per_line"})
    result = _transform([_row(value=None, currency="EUR", items=_items([
        {"item_id": "A", "price": 4.00, "quantity": 2, "discount": 1.00}]))], source)
    assert _params(result)["items"] == [{"item_id": "A", "price": 4, "quantity": 2, "discount": 0.5}]
    assert _params(result)["value"] == 8


def test_without_subtotal_the_value_is_total_less_taxes_and_shipping_and_it_is_counted():
    result = _transform([_row(value=None, total="54.50", **{"param.tax": "3.60", "param.shipping": "5.90"}, currency="USD")])
    params = _params(result)
    assert (params["value"], params["tax"], params["shipping"]) == (45, 3.6, 5.9)
    assert result.tally.notes.value_from_total == 1


def test_a_crm_amount_that_includes_tax_is_sent_net_with_its_tax():
    by_rate = SourceConfig(name="crm", kind="csv", path="crm.csv", consent_default="grant",
                           options={"value_includes_tax": True, "tax_rate": 0.19})
    params = _params(_transform([_row(value="119.00", currency="EUR")], by_rate))
    assert (params["value"], params["tax"]) == (100, 19)
    by_column = SourceConfig(name="crm", kind="csv", path="crm.csv", consent_default="grant", params={"tax": "VAT"},
                             options={"value_includes_tax": True})
    params = _params(_transform([_row(value="120.00", currency="EUR", **{"param.tax": "20.00"})], by_column))
    assert (params["value"], params["tax"]) == (100, 20)


@pytest.mark.parametrize("cell", ["-10.00", "(10.00)", "10.00-"])
def test_a_negative_purchase_in_any_spelling_is_a_reject_naming_the_column(cell):
    from etl.extract.money import normalise_amounts

    value = normalise_amounts(pd.Series([cell], dtype="string")).iloc[0]
    result = _transform([_row(), _row(transaction_id="T-2", value=value)])
    assert list(result.events["row"]) == [1]
    (reason,) = result.rejects["reasons"][0]
    assert "'Subtotal' is negative" in reason["description"] and cell not in reason["description"]
    # The rejected row's money is counted as written (the sent row's by the pipeline, once planned).
    assert result.tally.money["GBP"] == Money(value_in=Decimal("-10"), value_rejected=Decimal("-10"))


def test_a_currency_sign_that_is_not_the_rows_currency_rejects_the_row():
    """Issue 23: `$10` in a EUR file was sent as 10 EUR."""
    from etl.extract.money import currency_marks, normalise_amounts

    cells = pd.Series(["$10.00", "€10.00", "US$10.00", "10.00 USD", "10.00"], dtype="string")
    rows = [_row(transaction_id=f"T-{i}", value=v, currency="EUR", value_sign=m)
            for i, (v, m) in enumerate(zip(normalise_amounts(cells), currency_marks(cells), strict=True))]
    result = _transform(rows)
    assert sorted(result.events["row"]) == [2, 5]
    assert all("currency sign that is not the row's currency" in r[0]["description"] for r in result.rejects["reasons"])


def test_205_lines_send_200_items_and_the_whole_value_counted_per_rule():
    lines = [{"item_id": f"S{i}", "item_name": f"Sticker {i}", "price": 1.00, "quantity": 1} for i in range(205)]
    result = _transform([_row(value="205.00", currency="USD", items=_items(lines))])
    params = _params(result)
    assert len(params["items"]) == 200 and params["value"] == 205
    assert result.tally.limits == {"items_past_200_dropped": 5, "events_with_items_past_200": 1}


def test_money_is_tallied_per_currency_by_bucket_with_refunds_negative():
    rows = [_row(value="10.00", currency="EUR"), _row(transaction_id="T-2", value="oops", currency="EUR"),
            _row(transaction_id="T-3", value="5.00", currency="USD", event_name="refund"),
            _row(transaction_id="T-4", value="7.00", currency="EUR", client_id="nonsense")]
    result = _transform(rows, columns={"value": "Amount", "currency": "Currency", "event_name": "Kind"})
    eur = result.tally.money["EUR"]
    assert eur == Money(value_in=Decimal("7"), value_rejected=Decimal("7")) and result.tally.value_unreadable == 1
    planned = dict(zip(result.events["transaction_id"], result.events["money_value"], strict=True))
    assert Decimal(planned["T-1001"]) == Decimal("10") and Decimal(planned["T-3"]) == Decimal("-5")
    assert "USD" not in result.tally.money  # planned rows are counted by the pipeline once the ledger gives their fate


def test_shares_add_up_and_follow_the_largest_remainder():
    assert shares(1040, [3000, 2200]) == [600, 440]
    assert shares(100, [1, 1, 1]) == [34, 33, 33]
    assert shares(-5, [2, 1]) == [-3, -2]


orders = st.lists(st.tuples(st.integers(1, 50_000), st.integers(0, 7), st.integers(0, 100)), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders, st.integers(0, 100), st.sampled_from(["USD", "JPY", "KWD"]))
def test_for_any_order_the_items_add_up_to_the_value_to_the_minor_unit(lines, order_off_percent, code):
    """Property (issue 21): Σ price × quantity == value exactly, whatever the discounts and rounding."""
    built = [Line({"item_id": f"L{i}"}, qty, unit * max(qty, 1), min(disc * qty, unit * qty))
             for i, (unit, qty, disc) in enumerate(lines)]
    nets = sum(line.gross - line.discount for line in built if line.quantity)
    target = nets - nets * order_off_percent // 100
    result = allocate(built, target)
    assert result.adds_up and result.value == target
    assert sum(item["price"] * item["quantity"] for item in result.items if "price" in item) == target
    assert all(item["price"] >= 0 and item.get("discount", 0) >= 0 for item in result.items if "price" in item)
    as_sent = sum(Decimal(str(cur.json_number(i["price"], code))) * i["quantity"] for i in result.items if "price" in i)
    assert as_sent == cur.from_minor(target, code)
