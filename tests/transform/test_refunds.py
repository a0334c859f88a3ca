"""Refunds measured like the purchase they reverse (issue 21): a full refund mirrors it, a partial one is
put on its pre-tax basis, and cumulative exports send only the delta over what the ledger holds."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.protocol.event_key import LEVEL
from etl.transform import order_ids, refund_deltas
from tests.transform.test_events import NOW_MICROS, _row
from tests.transform.test_money import _params, _transform

ITEMS = orjson.dumps([{"item_id": "TEE", "price": 10.00, "quantity": 3, "line_discount": 6.00},
                      {"item_id": "CAP", "price": 56.00, "quantity": 1}]).decode()


def _order(**kw) -> dict:
    """Subtotal 80.00 (24.00 + 56.00), Shipping 8.00, Taxes 8.00, Total 96.00."""
    base = dict(value="80.00", total="96.00", currency="USD", items=ITEMS, **{"param.tax": "8.00", "param.shipping": "8.00"})
    return _row(**{**base, **kw})


def _refund(refunded: str, **kw) -> dict:
    return _order(event_name="refund", refunded=refunded, time_unknown="1", timestamp=None, **kw)


def test_a_full_refund_mirrors_the_purchase_so_the_order_nets_to_zero():
    result = _transform([_order(), _refund("96.00")])
    purchase, refund = _params(result, 0), _params(result, 1)
    for key in ("value", "tax", "shipping", "items", "transaction_id", "currency"):
        assert refund[key] == purchase[key], key
    assert (purchase["value"], purchase["tax"], purchase["shipping"]) == (80, 8, 8)
    assert [Decimal(v) for v in result.events["money_value"]] == [Decimal(80), Decimal(-80)]


def test_a_partial_refund_of_a_tax_inclusive_amount_is_put_on_the_pre_tax_basis_at_the_wall_clock():
    """48.00 refunded of a 96.00 order: value 48 × 80 / 96 = 40.00, tax 4.00, shipping 4.00; no items
    (which came back is unknown); timed when first seen, never at the purchase's Paid at."""
    result = _transform([_refund("48.00")])
    params = _params(result)
    assert (params["value"], params["tax"], params["shipping"]) == (40, 4, 4) and "items" not in params
    assert result.events["timestamp_micros"][0] == NOW_MICROS
    assert result.events["event_key"][0] == f"crm|refund|T-1001{LEVEL}4800"
    assert result.tally.notes.refunds_on_purchase_basis == 1


def _history(events: pd.DataFrame) -> pd.DataFrame:
    """What a ledger's `order_history` would return after these events were planned."""
    events = events.reset_index(drop=True)
    params = [orjson.loads(e)["params"] for e in events["event_json"]]
    return pd.DataFrame({
        "transaction_id": events["transaction_id"], "event_name": events["event_name"], "event_key": events["event_key"],
        **{k: pd.Series([None if k not in p else str(p[k]) for p in params], dtype="string") for k in ("value", "tax", "shipping")},
        "currency": [p.get("currency") for p in params]})


def test_the_second_night_sends_only_the_delta_and_a_level_seen_again_is_nothing_new():
    night1 = _transform([_order(), _refund("48.00")]).events
    night2 = _transform([_order(), _refund("96.00")]).events
    assert order_ids(night2) == ["T-1001"]
    deltas = refund_deltas(night2, _history(night1))
    refund = orjson.loads(deltas.events["event_json"][1])["params"]
    assert (refund["value"], refund["tax"], refund["shipping"]) == (40, 4, 4) and "items" not in refund
    assert deltas.notes.refund_without_purchase == 0 and deltas.nothing_new.empty
    # A third night with the same cumulative amount: the same key, the ledger's duplicate; a level whose
    # delta is nothing (a lower total after an edit) is not sent at all.
    lower = refund_deltas(_transform([_refund("40.00")]).events, _history(pd.concat([night1, night2])))
    assert lower.events.empty and len(lower.nothing_new) == 1 and lower.notes.refund_nothing_new == 1
    # A refund whose purchase this tool never planned (the site's tag may have sent it) is sent, counted.
    alone = refund_deltas(_transform([_refund("48.00")]).events, _history(night1.iloc[0:0]))
    assert len(alone.events) == 1 and alone.notes.refund_without_purchase == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 9_600), min_size=1, max_size=4, unique=True))
def test_a_purchase_and_all_its_later_refunds_net_to_the_unrefunded_amount_on_the_same_basis(levels):
    """Property: whatever the refunded amounts night after night, purchase + refund deltas == the
    purchase's value less refunded × value / total (within a cent per level)."""
    levels = sorted(levels)
    history = _transform([_order()]).events
    sent = [Decimal(str(_params(_transform([_order()]))["value"]))]
    for minor in levels:
        night = _transform([_refund(str(Decimal(minor) / 100))]).events
        deltas = refund_deltas(night, _history(history))
        history = pd.concat([history, deltas.events], ignore_index=True)
        sent += [-Decimal(str(orjson.loads(e)["params"]["value"])) for e in deltas.events["event_json"]]
    refunded = Decimal(levels[-1]) / 100
    expected = Decimal(80) - (Decimal(80) if refunded >= 96 else refunded * 80 / 96)
    assert abs(sum(sent) - expected) <= Decimal("0.01") * len(levels)
    if levels[-1] >= 9_600:
        assert sum(sent) == 0
