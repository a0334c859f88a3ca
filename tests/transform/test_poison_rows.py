"""Poison rows cost only themselves (issue 12): what would fail GA4's checks at send time is rejected in the
transform with its row and column named, and never the value. Plus the Google-exact event shape (issue 14)."""

from __future__ import annotations

import json
from dataclasses import replace

import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.load.sender import check_minimal
from etl.protocol import validate_request
from etl.transform import TransformOptions, transform_chunk
from tests.transform.test_events import NOW_MICROS, PROP, SOURCE, WINDOW, Chunk, _chunk, _fates, _row, _run


def _reasons(result) -> dict[int, list[dict]]:
    return {r["row"]: r["reasons"] for r in result.rejects.to_dict("records")}


def _with_items(rows: list[dict], items: list[str | None], source=SOURCE, **kw):
    frame = _chunk(rows).frame
    frame["items"] = pd.Series(items, dtype="string")
    return transform_chunk(Chunk(frame=frame, columns={"items": "Lineitems", "value": "Total"}), TransformOptions(source=source, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS, **kw))


def _assert_every_event_passes_the_send_gate(result) -> None:
    """What the sender does before a request may leave: the allowlist, then GA4's rules (strict)."""
    for event in result.events.to_dict("records"):
        body = {"client_id": event["client_id"], "events": [orjson.loads(event["event_json"])]}
        check_minimal(body, None)
        assert validate_request(body, now_micros=NOW_MICROS, strict=True) == []


@pytest.mark.parametrize("amount", ["9" * 400, "1" + "0" * 16, "-" + "9" * 40])
def test_an_absurd_amount_rejects_only_its_row(amount):
    result = _run([_row(), _row(transaction_id="T-2", value=amount)], columns={"value": "Total", "transaction_id": "Name"})
    sent, rejected = _fates(result, 2)
    assert sent == {1} and rejected == {2}
    (reason,) = _reasons(result)[2]
    assert reason["validationCode"] == "VALUE_OUT_OF_BOUNDS" and "'Total'" in reason["description"]
    assert amount not in orjson.dumps(result.rejects.to_dict("records")).decode()
    _assert_every_event_passes_the_send_gate(result)


def test_an_infinite_tax_rejects_only_its_row():
    frame = _chunk([_row(), _row(transaction_id="T-2")]).frame
    frame["param.tax"] = pd.Series(["1.50", "9" * 400], dtype="string")
    result = transform_chunk(Chunk(frame=frame, columns={"param.tax": "Taxes"}), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    assert list(result.rejects["row"]) == [2]
    assert "'Taxes'" in _reasons(result)[2][0]["description"]
    assert orjson.loads(result.events["event_json"][0])["params"]["tax"] == 1.5


ITEM_CASES = [
    ('{"item_name": {"note": "jane.doe@example.com"}}', "item field item_name holds a list or object"),
    ('{"item_id": "S", "item_category": ["a", "b"]}', "item field item_category holds a list or object"),
    ('{"item_id": "S", "price": "12,50"}', "item field price is not a number"),
    ('{"item_id": "S", "price": 1e300}', "item field price is not a finite number"),
    ('{"item_id": "S", "price": ' + "9" * 400 + "}", "does not hold a list of items"),
    ('{"item_id": "S", "quantity": 2.5}', "item field quantity is not a whole number"),
    ('{"item_id": "S", "quantity": 1e12}', "item field quantity is larger than"),
    ('{"item_id": "S", "quantity": true}', "item field quantity is not a whole number"),
    ('{"item_id": "S", "price": -5, "quantity": 1}', "item field price is negative"),
]


def test_an_item_name_over_100_characters_is_cut_to_100_and_counted_not_rejected():
    """Google does not log the part of a parameter over its limit, not the event (support 9267744)."""
    long = "Limited edition hand-thrown stoneware serving bowl with reactive glaze, dishwasher safe, 28 cm wide"
    result = _with_items([_row()], ['[{"item_id": "S", "item_name": "' + long + ' (blue)", "price": 5, "quantity": 1}]'])
    (item,) = orjson.loads(result.events["event_json"][0])["params"]["items"]
    assert item["item_name"] == (long + " (blue)")[:100] and len(item["item_name"]) == 100
    assert result.tally.limits == {"item_name_truncated": 1}
    assert result.rejects.empty


@pytest.mark.parametrize("item,rule", ITEM_CASES)
def test_a_wrongly_typed_item_field_rejects_only_its_order(item, rule):
    result = _with_items([_row(), _row(transaction_id="T-2")], ['[{"item_id": "OK", "price": 5, "quantity": 1}]', f"[{item}]"])
    sent, rejected = _fates(result, 2)
    assert sent == {1} and rejected == {2}
    descriptions = [r["description"] for r in _reasons(result)[2]]
    assert any(rule in d and "'Lineitems'" in d for d in descriptions), descriptions
    assert "jane.doe" not in orjson.dumps(result.rejects.to_dict("records")).decode()
    _assert_every_event_passes_the_send_gate(result)


def test_a_spreadsheet_quantity_of_2_0_is_sent_as_the_integer_2():
    result = _with_items([_row()], ['[{"item_id": "S", "price": 5, "quantity": 2.0}]'])
    assert orjson.loads(result.events["event_json"][0])["params"]["items"] == [{"item_id": "S", "price": 5, "quantity": 2}]
    _assert_every_event_passes_the_send_gate(result)


def test_an_event_too_big_for_any_request_is_rejected_not_planned():
    keys = ("item_id", "item_name", "item_brand", "item_category", "item_category2", "item_category3", "item_variant",
            "affiliation", "coupon", "location_id")
    big = orjson.dumps([{k: "x" * 100 for k in keys} | {"price": 1, "quantity": 1} for _ in range(120)]).decode()
    small = '[{"item_id": "S", "price": 5, "quantity": 1}]'
    result = _with_items([_row(), _row(transaction_id="T-2")], [small, big])
    sent, rejected = _fates(result, 2)
    assert sent == {1} and rejected == {2}
    (reason,) = _reasons(result)[2]
    assert reason["validationCode"] == "VALUE_OUT_OF_BOUNDS" and "130,000 bytes" in reason["description"]
    assert result.tally.buckets.rejected == 1 and len(result.events) == 1


def test_an_event_with_more_than_25_params_is_rejected_not_planned():
    names = [f"note{i}" for i in range(24)]
    frame = _chunk([_row(), _row(transaction_id="T-2")]).frame
    for i, name in enumerate(names):
        frame[f"param.{name}"] = pd.Series(["x", "x" if i < 19 else None], dtype="string")
    result = transform_chunk(Chunk(frame=frame), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS, extra_params={"purchase": names}))
    sent, rejected = _fates(result, 2)
    # row 1: 24 notes + transaction_id, value, currency, session_id + the run and resend markers = 30;
    # row 2: 19 + 4 + 2 = 25 (room kept for mpetl_resend, or a resent copy would lose a param)
    assert sent == {2} and rejected == {1}
    assert _reasons(result)[1][0]["validationCode"] == "EXCEEDED_MAX_ENTITIES"


def test_a_per_row_event_name_outside_the_allowlist_rejects_only_its_row():
    rows = [_row(), _row(transaction_id="T-2", event_name="jane.doe@example.com"),
            _row(transaction_id="T-3", event_name="my_custom_event"), _row(transaction_id="T-4", event_name="refund")]
    result = _run(rows, columns={"event_name": "Event Type"})
    sent, rejected = _fates(result, 4)
    assert sent == {1, 4} and rejected == {2, 3}
    reasons = _reasons(result)
    assert [r["validationCode"] for r in reasons[2]] == ["NAME_INVALID"]
    assert [r["validationCode"] for r in reasons[3]] == ["NOT_ALLOWED"]
    for row in (2, 3):
        assert "'Event Type'" in reasons[row][0]["description"]
    text = orjson.dumps(result.rejects.to_dict("records")).decode()
    assert "jane" not in text and "my_custom_event" not in text
    _assert_every_event_passes_the_send_gate(result)


def test_an_event_declared_under_extra_params_may_be_sent_per_row():
    rows = [_row(transaction_id="T-3", event_name="my_custom_event")]
    frame = _chunk(rows).frame
    extra = {"my_custom_event": ("transaction_id", "value", "currency")}
    result = transform_chunk(Chunk(frame=frame), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS, extra_params=extra))
    assert list(result.events["event_name"]) == ["my_custom_event"]
    body = {"client_id": result.events["client_id"][0], "events": [orjson.loads(result.events["event_json"][0])]}
    check_minimal(body, extra)


def test_a_custom_configured_event_without_transaction_id_in_its_allowlist_is_rejected_naming_the_column():
    result = _run([_row()], source=replace(SOURCE, event="sign_up"), columns={"transaction_id": "Deal ID"})
    (reason, *_) = _reasons(result)[1]
    assert reason["validationCode"] == "NOT_ALLOWED" and "'Deal ID'" in reason["description"]


def test_an_over_long_user_id_is_rejected():
    result = _run([_row(user_id="u" * 256), _row(transaction_id="T-2", user_id="u-42")], source=replace(SOURCE, send_user_id=True))
    assert list(result.rejects["row"]) == [1]
    assert list(result.events["user_id"]) == ["u-42"]


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=False),
                    st.text(max_size=120))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)
item_keys = st.sampled_from(["item_id", "item_name", "price", "quantity", "discount", "index", "item_brand", "coupon", "extra"])
items_text = st.lists(st.dictionaries(item_keys, json_values, max_size=5), max_size=4).map(json.dumps)
amounts = st.one_of(st.from_regex(r"-?[0-9]{1,400}(\.[0-9]{0,5})?", fullmatch=True), st.sampled_from(["", "abc", "1e5", "inf"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(amounts, items_text | st.just("not json")), min_size=1, max_size=6))
def test_whatever_the_cells_hold_every_planned_event_passes_the_send_gate(cells):
    rows = [_row(transaction_id=f"T-{i}", value=value) for i, (value, _) in enumerate(cells)]
    result = _with_items(rows, [items for _, items in cells])
    _fates(result, len(cells))  # every row in exactly one bucket
    _assert_every_event_passes_the_send_gate(result)


# --- Google-exact (issue 14) ------------------------------------------------------------------------------------


def test_engagement_time_is_sent_only_when_the_source_opts_in():
    off = _run([_row()])
    on = _run([_row()], source=replace(SOURCE, engagement_time=True))
    assert "engagement_time_msec" not in orjson.loads(off.events["event_json"][0])["params"]
    assert orjson.loads(on.events["event_json"][0])["params"]["engagement_time_msec"] == 1


def test_of_several_ga4_session_cookies_the_configured_propertys_is_used():
    ours = "GS2.1.s1763650000$o3$g1$t1763650100$j0$l0$h0"
    rows = [
        _row(session_id=f"_ga_OTHER99=GS1.1.1763600000.1.0.1763600000.0.0.0 _ga_TEST123={ours}"),
        _row(transaction_id="T-2", session_id="_ga_OTHER99=GS1.1.1763600000.1.0.1763600000.0.0.0"),
    ]
    result = _run(rows)
    sessions = [orjson.loads(e)["params"].get("session_id") for e in result.events["event_json"]]
    assert sessions == ["1763650000", None]  # another property's session is never ours
    assert result.tally.notes.session_cookie_other_property == 1 and result.tally.notes.no_session == 1


def test_purchases_without_items_are_sent_and_counted():
    result = _with_items([_row(), _row(transaction_id="T-2"), _row(transaction_id="T-3", event_name="refund")],
                         ['[{"item_id": "S", "price": 5, "quantity": 1}]', None, None])
    assert len(result.events) == 3
    assert result.tally.notes.purchase_without_items == 1


def test_refunds_outside_the_window_are_counted():
    rows = [_row(), _row(transaction_id="T-2", event_name="refund", timestamp="2026-11-10 10:00:00"),
            _row(transaction_id="T-3", timestamp="2026-11-10 10:00:00")]
    since = NOW_MICROS - 2 * 86_400_000_000
    result = transform_chunk(_chunk(rows), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS, since_micros=since))
    assert result.tally.buckets.outside_window == 2 and result.tally.notes.refunds_outside_window == 1


@pytest.mark.parametrize("name", ["ad_impression", "session_start"])
def test_names_reserved_for_web_streams_are_rejected(name):
    result = _run([_row()], source=replace(SOURCE, event=name))
    assert result.rejects.iloc[0]["reasons"][0]["validationCode"] == "NAME_RESERVED"
