"""transform_chunk: each row's fate, the event JSON, consent, privacy and the 72 h window."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.config import PropertyConfig, SourceConfig, WindowConfig
from etl.transform import TransformOptions, transform_chunk

NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
NOW_MICROS = int(NOW.timestamp()) * 1_000_000
PROP = PropertyConfig(measurement_id="G-TEST123", timezone="Europe/London")
WINDOW = WindowConfig()
SOURCE = SourceConfig(name="crm", kind="csv", path="crm.csv", event="purchase", timezone="America/New_York",
                      consent_default="grant")


@dataclass
class Chunk:
    frame: pd.DataFrame
    source: str = "crm"
    path: str = "crm.csv"
    columns: dict[str, str] = field(default_factory=dict)


def _row(**overrides) -> dict:
    base = {
        "client_id": "GA1.1.1162820436.1749482504",
        "session_id": "GS2.1.s1763650000$o3$g1$t1763650100$j0$l0$h0",
        "timestamp": "2026-11-20 14:03:11",
        "transaction_id": "T-1001",
        "value": "49.99",
        "currency": "gbp",
    }
    base.update(overrides)
    return base


def _chunk(rows: list[dict], columns: dict[str, str] | None = None) -> Chunk:
    frame = pd.DataFrame(rows).astype("string")
    frame.insert(0, "row", pd.Series(range(1, len(rows) + 1), dtype="int64"))
    return Chunk(frame=frame, columns=columns or {c: f"Col {c}" for c in frame.columns})


def _run(rows, source=SOURCE, columns=None):
    return transform_chunk(_chunk(rows, columns), TransformOptions(source=source, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))


def _fates(result, n):
    """(sent, rejected) rows; every other row must be filtered (not a conversion), none twice."""
    sent = set(result.events["row"])
    rejected = set(result.rejects["row"])
    filtered = set(result.filtered["row"])
    assert not (sent & rejected) and not (filtered & (sent | rejected))
    assert sent | rejected | filtered == set(range(1, n + 1))
    b = result.tally.buckets
    assert (b.rejected, b.filtered) == (len(rejected), len(filtered))
    return sent, rejected


def test_a_good_row_becomes_one_exact_minimal_event():
    result = _run([_row()])
    (event,) = result.events.to_dict("records")
    body = orjson.loads(event["event_json"])
    # 2026-11-20 14:03:11 in New York (EST, UTC-5) is 19:03:11 UTC.
    expected = int(datetime(2026, 11, 20, 19, 3, 11, tzinfo=UTC).timestamp()) * 1_000_000
    assert body["timestamp_micros"] == expected == event["timestamp_micros"]
    assert body["name"] == "purchase"
    assert body["params"] == {
        "transaction_id": "T-1001",
        "value": 49.99,
        "currency": "GBP",
        "session_id": "1763650000",
    }
    # No engagement_time_msec: Google would count every offline buyer as an active user.
    assert event["client_id"] == "1162820436.1749482504"
    assert event["event_key"] == "crm|purchase|T-1001"
    assert event["event_date"] == "20261120"


def test_bad_identity_is_rejected_with_debug_shaped_reasons_naming_the_column():
    result = _run([_row(client_id=None), _row(client_id="not-a-cookie"), _row()])
    _fates(result, 3)
    reasons = {r["row"]: r["reasons"] for r in result.rejects.to_dict("records")}
    assert reasons[1] == [{"fieldPath": "client_id", "validationCode": "VALUE_REQUIRED",
                           "description": reasons[1][0]["description"]}]
    assert "Col client_id" in reasons[1][0]["description"]
    assert reasons[2][0]["validationCode"] == "VALUE_INVALID"
    assert "not-a-cookie" not in orjson.dumps(result.rejects.to_dict("records")).decode()


def test_purchase_needs_a_transaction_id_and_value_needs_a_currency():
    result = _run([_row(transaction_id=" "), _row(currency=None), _row(currency="XYZ"), _row(value="12abc")])
    _, rejected = _fates(result, 4)
    assert rejected == {1, 2, 3, 4}
    codes = {r["row"]: [x["validationCode"] for x in r["reasons"]] for r in result.rejects.to_dict("records")}
    assert codes == {1: ["VALUE_REQUIRED"], 2: ["VALUE_REQUIRED"], 3: ["VALUE_INVALID"], 4: ["VALUE_INVALID"]}


def test_old_rows_stay_events_for_the_ledger_to_judge_and_the_future_is_rejected():
    # Age is decided by the ledger on the wall clock when it plans and sends, never here.
    rows = [_row(timestamp="2026-11-17 09:00:00", transaction_id="OLD"),
            _row(timestamp="2026-11-21 09:00:00", transaction_id="FUTURE"),
            _row(transaction_id="OK")]
    result = _run(rows)
    sent, rejected = _fates(result, 3)
    assert (sent, rejected) == ({1, 3}, {2})
    assert result.rejects.iloc[0]["reasons"][0]["validationCode"] == "VALUE_OUT_OF_BOUNDS"


def test_missing_session_is_sent_and_counted():
    result = _run([_row(session_id=None), _row(session_id="GS1.1.1763650000.4.1.1763650200.0.0.0")])
    assert len(result.events) == 2
    assert result.tally.notes.no_session == 1
    assert list(result.events["has_session"]) == [False, True]


def test_consent_denied_is_not_sent_and_says_which_column():
    source = replace(SOURCE, consent_default="deny")
    rows = [_row(consent="no"), _row(consent="Granted"), _row(consent=None), _row(consent="maybe")]
    frame = _chunk(rows).frame.rename(columns={"consent": "consent_analytics"})
    result = transform_chunk(Chunk(frame=frame, columns={"consent_analytics": "Analytics Consent"}), TransformOptions(source=source, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    sent, rejected = _fates(result, 4)
    # A denied or missing consent is not bad data: filtered, with its reason; an unreadable value is.
    assert sent == {2} and rejected == {4}
    reasons = {r["row"]: r["reasons"][0] for r in result.rejects.to_dict("records")}
    assert reasons[4]["validationCode"] == "VALUE_INVALID" and "maybe" not in reasons[4]["description"]
    filtered = {r["row"]: (r["code"], r["reason"]) for r in result.filtered.to_dict("records")}
    assert filtered == {1: ("CONSENT_DENIED", "analytics consent is denied in column 'Analytics Consent'"),
                        3: ("NO_CONSENT", "no analytics consent recorded in column 'Analytics Consent'; "
                                          "consent_default is 'deny'")}
    assert result.tally.filtered_codes() == {"CONSENT_DENIED": 1, "NO_CONSENT": 1}


def test_default_deny_applies_when_a_source_maps_no_consent_column():
    result = _run([_row()], source=replace(SOURCE, consent_default="deny"))
    assert result.events.empty and result.rejects.iloc[0]["reasons"][0]["validationCode"] == "CONSENT_DENIED"


def test_ad_consent_rides_in_the_consent_object():
    frame = _chunk([_row(), _row()]).frame
    frame["ad_user_data"] = pd.Series(["yes", None], dtype="string")
    frame["ad_personalization"] = pd.Series(["0", "false"], dtype="string")
    # With analytics consent granted by policy, ad consent defaults follow the same policy ("grant").
    result = transform_chunk(Chunk(frame=frame), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    consents = [orjson.loads(c) for c in result.events["consent_json"]]
    assert consents == [{"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
                        {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"}]


def test_personal_data_in_a_sent_field_rejects_the_row_without_echoing_it():
    frame = _chunk([_row(), _row(transaction_id="T-2")]).frame
    frame["param.coupon"] = pd.Series(["jane.doe@example.com", "SUMMER10"], dtype="string")
    chunk = Chunk(frame=frame, columns={"param.coupon": "Discount Code"})
    result = transform_chunk(chunk, TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    sent, rejected = _fates(result, 2)
    assert sent == {2} and rejected == {1}
    reason = result.rejects.iloc[0]["reasons"][0]
    assert reason["validationCode"] == "PERSONAL_DATA" and "Discount Code" in reason["description"]
    assert "jane" not in orjson.dumps(result.rejects.to_dict("records")).decode()
    assert orjson.loads(result.events.iloc[0]["event_json"])["params"]["coupon"] == "SUMMER10"
    assert result.tally.detectors == {"email": 1}

    dropping = transform_chunk(chunk, TransformOptions(source=replace(SOURCE, on_pii="drop"), prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    assert len(dropping.events) == 2
    assert "coupon" not in orjson.loads(dropping.events.iloc[0]["event_json"])["params"]


def test_rows_outside_the_incremental_window_are_not_part_of_the_run():
    rows = [_row(timestamp="2026-11-19 10:00:00", transaction_id="A"), _row(timestamp="2026-11-20 10:00:00", transaction_id="B"),
            _row(timestamp="garbage", transaction_id="C")]
    since = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp()) * 1_000_000
    result = transform_chunk(_chunk(rows), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS, since_micros=since))
    assert result.tally.buckets.outside_window == 1
    assert list(result.events["transaction_id"]) == ["B"]
    assert list(result.rejects["row"]) == [3]  # an unreadable time never hides a row


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_event_json_is_valid_whatever_the_transaction_id_holds(text):
    result = _run([_row(transaction_id=text)])
    if len(result.events):
        body = orjson.loads(result.events.iloc[0]["event_json"])
        sent = body["params"]["transaction_id"]
        assert sent == text.strip()  # exactly, escaped as JSON needs
    else:
        assert len(result.rejects) == 1
        if any(ord(c) < 32 or ord(c) == 127 for c in text.strip()):
            assert result.rejects.iloc[0]["reasons"][0]["description"].endswith("holds control characters")


@pytest.mark.parametrize("name,code", [("session_start", "NAME_RESERVED"), ("ga_custom", "NAME_RESERVED"),
                                       ("9lives", "NAME_INVALID"), ("x" * 41, "VALUE_OUT_OF_BOUNDS")])
def test_bad_event_names_are_rejected(name, code):
    result = _run([_row()], source=replace(SOURCE, event=name))
    assert result.rejects.iloc[0]["reasons"][0]["validationCode"] == code


def test_an_unknown_zone_blames_the_zone_column_not_the_time():
    frame = _chunk([_row(), _row(transaction_id="T-2")]).frame
    frame["timezone"] = pd.Series(["Atlantis/Capital", "Europe/Paris"], dtype="string")
    result = transform_chunk(Chunk(frame=frame, columns={"timezone": "Time Zone", "timestamp": "Date + Time"}), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    (reasons,) = list(result.rejects["reasons"])
    assert [r["description"] for r in reasons] == ["column 'Time Zone' is not a time zone this tool knows"]
    assert list(result.events["transaction_id"]) == ["T-2"]


def test_user_id_leaves_only_when_configured_and_not_personal():
    frame = _chunk([_row(), _row(transaction_id="T-2"), _row(transaction_id="T-3")]).frame
    frame["user_id"] = pd.Series(["CUST-1001", "ann@example.com", "44bd8a9c3f1e2d7b6a5c4f3e2d1c0b9a"], dtype="string")
    chunk = Chunk(frame=frame, columns={"user_id": "Customer No"})
    off = transform_chunk(chunk, TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    assert off.events["user_id"].isna().all() and len(off.events) == 3
    on = transform_chunk(chunk, TransformOptions(source=replace(SOURCE, send_user_id=True), prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    assert list(on.events["user_id"]) == ["CUST-1001"]
    detectors = sorted(r[0]["description"].split("detector: ")[1].split(")")[0] for r in on.rejects["reasons"])
    assert detectors == ["email", "hashed_identifier"]


_local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._", min_size=1, max_size=12).filter(
    lambda s: s[0] not in "._" and s[-1] not in "._" and ".." not in s)
_emails = st.builds(lambda a, b: f"{a}@{b}.com", _local, st.from_regex(r"[a-z]{2,10}", fullmatch=True))
_phones = st.builds(lambda a, b, c: f"+44 {a} {b} {c}", st.integers(20, 99), st.integers(1000, 9999), st.integers(1000, 9999))
_ipv4 = st.builds(lambda *o: ".".join(map(str, o)), *[st.integers(0, 255)] * 4)


@settings(max_examples=120, deadline=None)
@given(secret=st.one_of(_emails, _phones, _ipv4), prefix=st.sampled_from(["", "promo ", "code: "]),
       on_pii=st.sampled_from(["reject", "drop"]))
def test_a_value_holding_personal_data_never_reaches_an_event(secret, prefix, on_pii):
    frame = _chunk([_row(), _row(transaction_id="T-2")]).frame
    frame["param.coupon"] = pd.Series([prefix + secret, "SAVE5"], dtype="string")
    result = transform_chunk(Chunk(frame=frame), TransformOptions(source=replace(SOURCE, on_pii=on_pii), prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    sent = "".join(result.events["event_json"])
    assert secret not in sent
    assert secret not in orjson.dumps(result.rejects.to_dict("records")).decode()
    assert "SAVE5" in sent


def test_sessions_ga_will_not_attribute_are_counted_but_still_sent():
    now_s = NOW_MICROS // 1_000_000
    rows = [
        _row(transaction_id="FRESH", session_id=str(now_s - 3600), timestamp="2026-11-21 00:30:00"),
        _row(transaction_id="STALE", session_id=str(now_s - 2 * 86_400)),  # session began two days ago
        _row(transaction_id="BEFORE", session_id=str(now_s - 600), timestamp="2026-11-20 10:00:00"),
    ]
    result = _run(rows)
    assert len(result.events) == 3
    assert result.tally.notes.session_too_old_to_attribute == 1
    assert result.tally.notes.timestamp_before_session_start == 1


def test_personal_data_inside_an_item_rejects_the_order():
    frame = _chunk([_row(), _row(transaction_id="T-2")]).frame
    frame["items"] = pd.Series([
        '[{"item_id": "SKU1", "item_name": "Gift card for ann@example.com", "price": 5, "quantity": 1}]',
        '[{"item_id": "SKU2", "item_name": "Candle", "price": 5, "quantity": 1, "vendor_note": "x"}]',
    ], dtype="string")
    result = transform_chunk(Chunk(frame=frame, columns={"items": "Lineitem name"}), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW, wall_micros=NOW_MICROS))
    assert list(result.rejects["row"]) == [1]
    assert result.rejects.iloc[0]["reasons"][0]["validationCode"] == "PERSONAL_DATA"
    assert "ann@" not in orjson.dumps(result.rejects.to_dict("records")).decode()
    (sent,) = [orjson.loads(e) for e in result.events["event_json"]]
    assert sent["params"]["items"] == [{"item_id": "SKU2", "item_name": "Candle", "price": 5, "quantity": 1}]
    assert result.tally.detectors == {"email": 1} and result.tally.item_keys_not_sent == {"vendor_note": 1}


def test_a_row_later_than_the_wall_clock_is_rejected_even_after_until_and_other_nights_are_counted():
    rows = [_row(transaction_id="IN", timestamp="2026-11-19 10:00:00"),  # New York time: inside the night
            _row(transaction_id="LATER", timestamp="2026-11-20 14:03:11"),  # after --until, before the wall clock
            _row(transaction_id="AHEAD", timestamp="2026-11-24 09:00:00")]  # three days after the wall clock
    until = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp()) * 1_000_000
    result = transform_chunk(_chunk(rows), TransformOptions(source=SOURCE, prop=PROP, window=WINDOW,
                                                            wall_micros=NOW_MICROS, until_micros=until))
    assert list(result.events["transaction_id"]) == ["IN"]
    (reasons,) = list(result.rejects["reasons"])
    assert list(result.rejects["row"]) == [3] and reasons == [{
        "fieldPath": "events[0].timestamp_micros", "validationCode": "VALUE_OUT_OF_BOUNDS",
        "description": "column 'Col timestamp' is in the future (beyond 5 min of clock skew)"}]
    b = result.tally.buckets
    assert (b.rows_in, b.rejected, b.outside_window, len(result.events)) == (3, 1, 1, 1)


def test_an_event_within_the_clock_skew_tolerance_leaves_timed_at_the_wall_clock_with_a_stable_key():
    # Google wants timestamp_micros <= the request time; every request leaves after the transform's wall clock.
    ahead = datetime(2026, 11, 21, 6, 3, tzinfo=UTC)  # 3 min after the wall clock (tolerance: 5)
    lead = replace(SOURCE, event="close_convert_lead", timezone="UTC")
    rows = [_row(transaction_id=None, value=None, currency=None, timestamp=f"{ahead:%Y-%m-%d %H:%M:%S}"),
            _row(transaction_id=None, value=None, currency=None, timestamp="2026-11-20 10:00:00")]
    keys = []
    for wall in (NOW_MICROS, NOW_MICROS + 60_000_000, NOW_MICROS + 10 * 60_000_000):
        result = transform_chunk(_chunk(rows), TransformOptions(source=lead, prop=PROP, window=WINDOW, wall_micros=wall))
        sent = [orjson.loads(e)["timestamp_micros"] for e in result.events["event_json"]]
        assert sent == list(result.events["timestamp_micros"])
        assert sent[0] == min(wall, int(ahead.timestamp()) * 1_000_000) <= wall
        assert result.tally.notes.timestamp_clamped == (1 if wall < int(ahead.timestamp()) * 1_000_000 else 0)
        keys.append(list(result.events["event_key"]))
    # The key of an event without transaction id holds the row's own time: a rerun finds the same event.
    assert keys[0] == keys[1] == keys[2] and keys[0][0].startswith("crm|close_convert_lead|row:")
