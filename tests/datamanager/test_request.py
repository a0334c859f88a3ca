"""The request builder: Google's field mappings, exact values, 2,000 events and the byte cap, fast-fail rebuilds."""

from __future__ import annotations

import orjson
import pytest

from etl.load.batching import Oversized
from etl.load.datamanager import Destination, build_dm_requests, rfc3339_micros
from etl.load.ledger import PendingEvent, consent_code
from etl.load.sender import check_minimal

DEST = Destination("123456789", "G-K7QW2ZP9LM")
PURCHASE = {"transaction_id": "T-1", "value": 42.5, "currency": "EUR", "coupon": "SUMMER", "session_id": 1795000000,
            "tax": 3.1, "items": [{"item_id": "SKU-1", "item_name": "Tee", "price": 21.25, "quantity": 2, "discount": 1.5}]}


def _event(i: int = 1, *, params: dict | None = None, consent: str | None = None, user_id: str | None = None,
           ts: int = 1_795_022_100_123_456) -> PendingEvent:
    return PendingEvent(i, f"s|purchase|T-{i}", f"1000{i}.1763000000", user_id,
                        consent_code(consent), "purchase", ts, orjson.dumps(params if params is not None else PURCHASE), i + 1)


def _bodies(events, **kw) -> list[dict]:
    return [orjson.loads(r.body) for r in build_dm_requests(events, run_id="R1", destination=DEST,
                                                            max_bytes=kw.pop("max_bytes", 5_000_000), **kw)]


def test_an_event_maps_as_googles_field_mappings_page_says():
    body = _bodies([_event(consent='{"ad_user_data":"GRANTED","ad_personalization":"DENIED"}', user_id="crm-42")])[0]
    account = {"accountType": "GOOGLE_ANALYTICS_PROPERTY", "accountId": "123456789"}
    assert body["destinations"] == [{"operatingAccount": account, "loginAccount": account,
                                     "productDestinationId": "G-K7QW2ZP9LM"}]
    assert "validateOnly" not in body
    assert body["events"] == [{
        "eventName": "purchase",
        "eventTimestamp": "2026-11-18T17:15:00.123456Z",
        "clientId": "10001.1763000000",
        "userId": "crm-42",
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"},
        "transactionId": "T-1",
        "conversionValue": 42.5,
        "currency": "EUR",
        "cartData": {"couponCodes": ["SUMMER"], "items": [{
            "itemId": "SKU-1", "unitPrice": 21.25, "quantity": "2",
            "additionalItemParameters": [{"parameterName": "item_name", "value": "Tee"},
                                         {"parameterName": "discount", "value": "1.5"}]}]},
        # The run marker first, so the export still joins on it; numbers as their exact JSON text.
        "additionalEventParameters": [{"parameterName": "mpetl_run", "value": "R1"},
                                      {"parameterName": "session_id", "value": "1795000000"},
                                      {"parameterName": "tax", "value": "3.1"}],
    }]


def test_timestamps_keep_every_microsecond_and_never_go_through_a_float():
    # 2**53 µs is where a float of seconds stops holding microseconds; these are far past it.
    assert rfc3339_micros(1_795_022_100_000_001) == "2026-11-18T17:15:00.000001Z"
    assert rfc3339_micros(1_795_022_100_999_999) == "2026-11-18T17:15:00.999999Z"
    assert rfc3339_micros(0) == "1970-01-01T00:00:00.000000Z"


def test_absent_consent_and_user_id_stay_absent():
    event = _bodies([_event(params={"transaction_id": "L-1"})])[0]["events"][0]
    assert "consent" not in event and "userId" not in event and "cartData" not in event
    assert event["transactionId"] == "L-1"


def test_2000_events_of_any_clients_in_one_request_then_a_new_one():
    bodies = _bodies([_event(i) for i in range(4001)])
    assert [len(b["events"]) for b in bodies] == [2000, 2000, 1]
    assert len({e["clientId"] for e in bodies[0]["events"]}) == 2000  # one request, many clients


def test_the_byte_cap_closes_a_request_early_and_an_event_alone_too_large_is_refused():
    events = [_event(i) for i in range(50)]
    one = len(orjson.dumps(orjson.loads(next(build_dm_requests(events[:1], run_id="R1", destination=DEST,
                                                                  max_bytes=10**6)).body)))
    cap = one * 10
    requests = list(build_dm_requests(events, run_id="R1", destination=DEST, max_bytes=cap))
    assert all(len(r.body) <= cap for r in requests)
    assert sum(len(r.ids) for r in requests) == 50 and len(requests) >= 4
    # Each request is as full as the cap allows: the next event would not have fitted.
    assert all(len(a.body) + 1 + len(b.parts[0]) > cap for a, b in zip(requests, requests[1:], strict=False))
    huge = _event(99, params={"transaction_id": "T-99", "note": "x" * 20_000})
    out = list(build_dm_requests([huge, _event(1)], run_id="R1", destination=DEST, max_bytes=10_000))
    assert isinstance(out[0], Oversized) and out[0].event.id == 99
    assert out[1].ids == (1,)


def test_validate_only_is_the_request_flag():
    assert _bodies([_event()], validate_only=True)[0]["validateOnly"] is True


def test_a_request_rebuilt_without_refused_events_keeps_the_rest_byte_for_byte():
    request = next(build_dm_requests([_event(i) for i in range(5)], run_id="R1", destination=DEST, max_bytes=10**6))
    rest = request.without([1, 3])
    assert rest.ids == (0, 2, 4) and rest.rows == (1, 3, 5)
    assert orjson.loads(rest.body)["events"] == [orjson.loads(request.body)["events"][i] for i in (0, 2, 4)]
    assert request.without(range(5)) is None


def test_the_privacy_gate_reads_the_same_params_as_on_mp():
    request = next(build_dm_requests([_event()], run_id="R1", destination=DEST, max_bytes=10**6))
    view = request.gate_body()
    assert view["events"][0]["name"] == "purchase"
    assert set(view["events"][0]["params"]) == {"mpetl_run", *PURCHASE}
    check_minimal(view, None)  # the allowlist passes what the transform allowed
    bad = next(build_dm_requests([_event(params={"transaction_id": "T", "email": "x"})], run_id="R1",
                                 destination=DEST, max_bytes=10**6))
    with pytest.raises(Exception, match="outside the allowlist: purchase.email"):
        check_minimal(bad.gate_body(), None)


# --- issue 26: a store's place, the device and app streams ride as the Event's own fields ------------------------

PLACE = (b'"user_location":{"city":"Manchester","region_id":"GB-MAN","country_id":"GB","subcontinent_id":"154",'
         b'"continent_id":"150"},"device":{"category":"tablet","language":"en-GB","screen_resolution":"1620x2160",'
         b'"operating_system":"iPadOS"}')


def test_a_stores_place_and_device_map_to_event_location_and_event_device_info():
    from dataclasses import replace

    soho = replace(_event(2), place=b'"user_location":{"city":"London","region_id":"GB-WSM","country_id":"GB"}')
    [body] = _bodies([replace(_event(1), place=PLACE), soho, _event(3)])
    first, second, third = body["events"]  # one request: location is per event in Data Manager
    assert first["eventLocation"] == {"city": "Manchester", "subdivisionCode": "GB-MAN", "regionCode": "GB",
                                      "subcontinentCode": "154", "continentCode": "150"}
    assert first["eventDeviceInfo"] == {"category": "tablet", "languageCode": "en-GB", "screenWidth": 1620,
                                        "screenHeight": 2160, "operatingSystem": "iPadOS"}
    assert second["eventLocation"] == {"city": "London", "subdivisionCode": "GB-WSM", "regionCode": "GB"}
    assert "eventDeviceInfo" not in second and "eventLocation" not in third
    assert not {"ipAddress", "userAgent", "storeId"} & {k for e in body["events"] for k in {**e.get("eventDeviceInfo", {}),
                                                                                            **e.get("eventLocation", {})}}
    [request] = list(build_dm_requests([replace(_event(1), place=PLACE)], run_id="R1", destination=DEST, max_bytes=5_000_000))
    gate = request.gate_body()
    assert set(gate["user_location"]) == {"city", "region_id", "country_id", "subcontinent_id", "continent_id"}
    assert set(gate["device"]) == {"category", "language", "screen_resolution", "operating_system"}
    check_minimal(gate, None)  # the same allowlist as MP's request fields


def test_an_app_streams_event_carries_app_instance_id_and_its_firebase_app_id_destination():
    app = Destination("123456789", "1:1234567890:android:321abc456def7890")
    instance = "0123456789abcdef0123456789abcdef"
    [request] = list(build_dm_requests([PendingEvent(1, "s|purchase|T-1", instance, None, 0, "purchase",
                                                     1_795_022_100_123_456, orjson.dumps(PURCHASE))],
                                       run_id="R1", destination=app, max_bytes=5_000_000, app=True))
    body = orjson.loads(request.body)
    assert body["destinations"][0]["productDestinationId"] == "1:1234567890:android:321abc456def7890"
    [event] = body["events"]
    assert event["appInstanceId"] == instance and "clientId" not in event
    assert request.gate_body()["app_instance_id"] is True and "client_id" not in request.gate_body()
