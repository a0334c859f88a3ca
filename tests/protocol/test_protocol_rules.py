"""The limits and name lists other stages rely on: checked against the documented values."""

from __future__ import annotations

import re

import etl.protocol as mp


def test_documented_limits() -> None:
    assert (mp.MAX_EVENTS_PER_REQUEST, mp.MAX_PARAMS_PER_EVENT, mp.MAX_USER_PROPERTIES) == (25, 25, 25)
    assert (mp.MAX_EVENT_NAME_LEN, mp.MAX_PARAM_NAME_LEN, mp.MAX_PARAM_VALUE_LEN) == (40, 40, 100)
    assert (mp.MAX_USER_PROPERTY_NAME_LEN, mp.MAX_USER_PROPERTY_VALUE_LEN) == (24, 36)
    assert (mp.MAX_ITEMS_PER_EVENT, mp.MAX_BODY_BYTES, mp.MAX_EVENT_AGE_HOURS) == (200, 130_000, 72)
    assert mp.FORBIDDEN_REQUEST_FIELDS == ("user_data", "ip_override")
    assert mp.RESERVED_PREFIXES == ("google_", "ga_", "firebase_")


def test_reserved_names_cover_auto_collected_events_but_not_commerce() -> None:
    # ad_impression: "available only for App streams" (MP event reference); mpetl sends to web streams.
    for name in ("session_start", "first_visit", "user_engagement", "app_remove", "notification_send", "error", "ad_impression"):
        assert name in mp.RESERVED_EVENT_NAMES
    for name in ("purchase", "refund", "generate_lead", "close_convert_lead", "page_view"):
        assert name not in mp.RESERVED_EVENT_NAMES
    assert "firebase_conversion" in mp.RESERVED_PARAM_NAMES
    assert {"user_id", "first_open_time", "first_visit_time"} <= mp.RESERVED_USER_PROPERTY_NAMES


def test_name_pattern() -> None:
    for good in ("purchase", "a", "Lead_2", "x" * 40):
        assert mp.NAME_PATTERN.match(good)
    for bad in ("", "_private", "2fast", "with space", "dash-ed", "dot.ted", "émoji", "purchase\n"):
        assert not mp.NAME_PATTERN.match(bad), bad


def test_iso_4217_list_is_complete_and_clean() -> None:
    codes = mp.ISO_4217_CODES
    assert all(re.fullmatch(r"[A-Z]{3}", c) for c in codes)
    assert {"EUR", "USD", "GBP", "JPY", "CHF", "CNY", "INR", "BRL", "ZAR", "SEK", "XCG", "SLE", "VES", "ZWG"} <= codes
    assert not {"EURO", "gbp", "UKP", "RMB", "NTD", "BTC", "DEM", "FRF"} & codes
    assert 175 <= len(codes) <= 190  # list one holds about 180 codes
