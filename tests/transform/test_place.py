"""Issue 26 in the transform: each row's store location and device, app identity, and what never leaves.

A store's city, region and country are data about a place; a street address or a postcode in a
location column is personal data: the row is rejected by the privacy detectors and nothing of it is
sent. A bad code is a one-line reject naming the row and the column, never the value.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pandas as pd
import pytest

from etl.config import DeviceConfig, PlaceConfig, PropertyConfig, SourceConfig, SourceLocation, WindowConfig
from etl.transform import TransformOptions, transform_chunk
from tests.transform.test_events import Chunk

NOW_MICROS = int(datetime(2026, 11, 21, 6, 0, tzinfo=UTC).timestamp()) * 1_000_000
WEB = PropertyConfig(measurement_id="G-TEST123", timezone="Europe/London")
APP = PropertyConfig(firebase_app_id="1:1234567890:android:321abc456def7890", timezone="Europe/London")
LOCATIONS = {
    "Soho": PlaceConfig(city="London", region_id="GB-WSM", country_id="GB", subcontinent_id="154", continent_id="150"),
    "Manchester Arndale": PlaceConfig(city="Manchester", region_id="GB-MAN"),
}
SOHO = {"city": "London", "region_id": "GB-WSM", "country_id": "GB", "subcontinent_id": "154", "continent_id": "150"}
ARNDALE = {"city": "Manchester", "region_id": "GB-MAN", "country_id": "GB"}  # country filled from the region
INSTANCE = "0123456789abcdef0123456789ABCDEF"


def _rows(n: int, **columns: list) -> pd.DataFrame:
    frame = pd.DataFrame({
        "row": pd.Series(range(1, n + 1), dtype="int64"),
        "client_id": [f"GA1.1.{1000 + i}.1749482504" for i in range(n)],
        "timestamp": ["2026-11-20 14:03:11"] * n,
        "transaction_id": [f"T-{i}" for i in range(n)],
        "value": ["10.00"] * n,
        "currency": ["GBP"] * n,
        **columns,
    })
    return frame.astype({c: "string" for c in frame.columns if c != "row"})


def _run(frame: pd.DataFrame, *, prop=WEB, place=None, device=None, labels=None):
    source = SourceConfig(name="pos", kind="csv", path="pos.csv", event="purchase", timezone="Europe/London",
                          consent_default="grant", location=place, device=device)
    labels = labels or {"place.store": "Location", "place.city": "Store City", "place.region_id": "Region",
                        "place.country_id": "Country", "place.subcontinent_id": "Subcontinent",
                        "app_instance_id": "App Instance"}
    return transform_chunk(Chunk(frame=frame, source="pos", path="pos.csv", columns=labels), TransformOptions(
        source=source, prop=prop, window=WindowConfig(), wall_micros=NOW_MICROS, locations=LOCATIONS))


def _places(result) -> dict[int, dict | None]:
    """Row → the request members the event carries, parsed (None: it carries none)."""
    return {int(r): None if pd.isna(p) else orjson.loads("{" + p + "}")
            for r, p in zip(result.events["row"], result.events["place_json"], strict=True)}


def _reasons(result) -> dict[int, list[dict]]:
    return {int(r): reasons for r, reasons in zip(result.rejects["row"], result.rejects["reasons"], strict=True)}


def test_each_order_carries_its_store_looked_up_in_locations_and_online_orders_none():
    stores = ["Soho", " manchester ARNDALE ", None, "soho"]
    result = _run(_rows(4, **{"place.store": stores}), place=SourceLocation())
    assert _places(result) == {1: {"user_location": SOHO}, 2: {"user_location": ARNDALE}, 3: None,
                               4: {"user_location": SOHO}}
    assert (result.tally.notes.with_location, result.tally.notes.without_location) == (3, 1)


def test_an_unknown_store_is_a_one_line_reject_naming_row_and_column_not_the_value():
    result = _run(_rows(3, **{"place.store": ["Soho", "Leeds Trinity", "Soho"]}), place=SourceLocation())
    assert sorted(_places(result)) == [1, 3]
    [reason] = _reasons(result)[2]
    assert reason["fieldPath"] == "user_location" and "'Location'" in reason["description"]
    assert "Leeds" not in reason["description"] and "\n" not in reason["description"]


def test_unknown_store_omit_sends_the_row_without_a_location_and_counts_it():
    result = _run(_rows(2, **{"place.store": ["Leeds Trinity", "Soho"]}), place=SourceLocation(unknown_store="omit"))
    assert _places(result) == {1: None, 2: {"user_location": SOHO}}
    assert result.rejects.empty and result.tally.notes.without_location == 1


def test_a_fixed_store_and_a_fixed_device_go_on_every_row():
    device = DeviceConfig(category="smart TV", language="en-GB", operating_system="Tizen")
    result = _run(_rows(2), place=SourceLocation(fixed_store="Manchester Arndale"), device=device)
    expected = {"user_location": ARNDALE, "device": {"category": "smart TV", "language": "en-GB", "operating_system": "Tizen"}}
    assert _places(result) == {1: expected, 2: expected}


def test_columns_with_codes_are_checked_per_row_and_a_bad_code_names_row_and_column():
    place = SourceLocation(city="Store City", region_id="Region", country_id="Country", subcontinent_id="Subcontinent")
    frame = _rows(5, **{
        "place.city": ["Lyon", "Lyon", "Lyon", "Lyon", None],
        "place.region_id": ["FR-ARA", "FR-ARA", "GB-MAN", "FR-ARA", None],
        "place.country_id": ["FR", "UK", "FR", "FR", None],
        "place.subcontinent_id": ["155", "155", "155", "150", None],
    })
    result = _run(frame, place=place)
    assert _places(result) == {1: {"user_location": {"city": "Lyon", "region_id": "FR-ARA", "country_id": "FR",
                                                     "subcontinent_id": "155"}}, 5: None}
    reasons = _reasons(result)
    assert {r["fieldPath"] for r in reasons[2]} >= {"user_location.country_id"}
    assert "'Country'" in reasons[2][0]["description"] and "ISO 3166-1" in reasons[2][0]["description"]
    assert [r["fieldPath"] for r in reasons[3]] == ["user_location.region_id"]
    assert "is a region of another country than the row's country_id" in reasons[3][0]["description"]
    assert [r["fieldPath"] for r in reasons[4]] == ["user_location.subcontinent_id"]  # 150 is a continent
    for row in reasons.values():
        assert all(not {"Lyon", "UK", "FR-ARA", "GB-MAN"} & set(r["description"].replace("'", " ").split()) for r in row)


@pytest.mark.parametrize(("cell", "detector"), [
    ("12 Baker Street", "street_address"), ("221B Baker St", "postcode"), ("SW1A 1AA", "postcode"),
    ("M1 1AE", "postcode"), ("94103", "postcode"), ("Hauptstraße 5", "street_address"),
    ("5 rue de Rivoli", "street_address"), ("jane@example.com", "email"), ("+44 20 7946 0958", "phone"),
])
def test_a_street_address_or_postcode_in_a_location_column_is_caught_and_never_sent(cell, detector):
    place = SourceLocation(city="Store City", country_id="Country")
    result = _run(_rows(2, **{"place.city": [cell, "London"], "place.country_id": ["GB", "GB"]}), place=place)
    assert _places(result) == {2: {"user_location": {"city": "London", "country_id": "GB"}}}
    [reason] = [r for r in _reasons(result)[1] if r["validationCode"] == "PERSONAL_DATA"]
    assert reason["fieldPath"] == "user_location.city" and f"detector: {detector}" in reason["description"]
    assert cell not in reason["description"] and result.tally.detectors[detector] == 1
    assert all(cell not in text for text in result.events["event_json"]) and cell not in "".join(
        p for p in result.events["place_json"].dropna())


def test_an_app_stream_takes_the_app_instance_id_and_rejects_anything_else():
    frame = _rows(4, app_instance_id=[INSTANCE, f" {INSTANCE.lower()} ", INSTANCE[:31], None],
                  session_id=["1795000000", None, None, None]).drop(columns=["client_id"])
    result = _run(frame, prop=APP)
    events = result.events.set_index("row")
    assert events.loc[1, "client_id"] == INSTANCE and events.loc[2, "client_id"] == INSTANCE.lower()
    assert orjson.loads(events.loc[1, "event_json"])["params"]["session_id"] == "1795000000"
    reasons = _reasons(result)
    assert reasons[3][0]["fieldPath"] == "app_instance_id" and reasons[3][0]["validationCode"] == "VALUE_INVALID"
    assert "'App Instance'" in reasons[3][0]["description"] and INSTANCE[:31] not in reasons[3][0]["description"]
    assert reasons[4][0]["validationCode"] == "VALUE_REQUIRED"
