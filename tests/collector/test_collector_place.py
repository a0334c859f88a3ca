"""Issue 26 at the local endpoint: geo.* and device.* as GA fills them, and an app stream's requests.

Google (MP reference, "Geographic information"): `user_location` takes precedence over `ip_override`
("If you send user_location, Google Analytics ignores ip_override"); with `device`, `user_agent` is
ignored. The production endpoint answers 2xx for what it cannot read: an unknown region_id costs
that field, never the event, so only the export (reconciliation's geo share) shows it.
"""

from __future__ import annotations

import httpx

from etl.collector import read_store

APP_ID = "1:1234567890:android:321abc456def7890"
INSTANCE = "0123456789abcdef0123456789abcdef"
MANCHESTER = {"city": "Manchester", "region_id": "GB-MAN", "country_id": "GB", "subcontinent_id": "154",
              "continent_id": "150"}
GEO_MANCHESTER = {"city": "Manchester", "country": "United Kingdom", "continent": "Europe", "region": "Manchester",
                  "sub_continent": "Northern Europe", "metro": None}


def _rows(mp) -> dict[str, dict]:
    frame = read_store(mp.server.data_dir)
    return {r["ecommerce"]["transaction_id"]: r for r in frame.to_dict(orient="records")}


def test_geo_and_device_are_filled_from_the_request_and_ip_override_is_ignored(mp, build):
    device = {"category": "smart TV", "language": "en-GB", "operating_system": "Tizen", "brand": "Samsung",
              "model": "QE55", "browser": "Samsung Internet", "browser_version": "23.0", "screen_resolution": "3840x2160"}
    assert mp.collect(build.request(build.purchase("T-1"), user_location=MANCHESTER, ip_override="8.8.8.8",
                                    device=device, user_agent="Mozilla/5.0 (iPhone)")).status_code == 204
    assert mp.collect(build.request(build.purchase("T-2"))).status_code == 204
    rows = _rows(mp)
    assert rows["T-1"]["geo"] == GEO_MANCHESTER  # not the IP's (Mountain View), not absent
    assert rows["T-1"]["device"] == {"category": "smart tv", "mobile_brand_name": "Samsung", "mobile_model_name": "QE55",
                                     "operating_system": "Tizen", "operating_system_version": None, "language": "en-gb",
                                     "web_info": {"browser": "Samsung Internet", "browser_version": "23.0"}}
    assert rows["T-2"]["geo"] is None and rows["T-2"]["device"] is None  # a server event: geo "(not set)"


def test_an_unreadable_region_id_is_taken_with_204_and_costs_only_that_field(mp, build):
    location = {**MANCHESTER, "region_id": "GB-XYZ"}
    assert mp.collect(build.request(build.purchase("T-1"), user_location=location)).status_code == 204
    geo = _rows(mp)["T-1"]["geo"]
    assert geo["region"] is None and (geo["city"], geo["country"]) == ("Manchester", "United Kingdom")
    assert mp.stats()["events_stored"] == 1  # stored: Google's debug-free endpoint says nothing either
    assert mp.debug(build.request(build.purchase("T-1"), user_location=location)).json() == {"validationMessages": []}
    other_country = {"region_id": "US-CA", "country_id": "GB"}
    assert mp.collect(build.request(build.purchase("T-2"), user_location=other_country)).status_code == 204
    assert _rows(mp)["T-2"]["geo"]["region"] is None and _rows(mp)["T-2"]["geo"]["country"] == "United Kingdom"


def test_a_malformed_user_location_drops_the_request(mp, build):
    assert mp.collect(build.request(build.purchase("T-1"), user_location={"city": 12})).status_code == 204
    assert mp.collect(build.request(build.purchase("T-2"), user_location={"street": "1 High St"})).status_code == 204
    assert _rows(mp) == {} and mp.stats()["dropped"] == {"invalid": 2}


def test_an_app_stream_takes_firebase_app_id_and_app_instance_id_only(make_collector, build):
    mp = make_collector(measurement_id=None, firebase_app_id=APP_ID)
    url = "/mp/collect"
    good = {"app_instance_id": INSTANCE, "events": [build.purchase("T-app")]}
    web_shaped = build.request(build.purchase("T-web-shaped"))  # client_id: not an app request
    for body in (good, web_shaped):
        answer = mp.http.post(url, params={"firebase_app_id": APP_ID, "api_secret": build.API_SECRET}, json=body)
        assert answer.status_code == 204
    assert mp.collect(good).status_code == 204  # a measurement_id this collector does not serve: bad_auth
    rows = _rows(mp)
    assert list(rows) == ["T-app"]
    row = rows["T-app"]
    assert (row["user_pseudo_id"], row["platform"], row["app_info"]["firebase_app_id"]) == (INSTANCE, "ANDROID", APP_ID)
    assert mp.stats()["dropped"] == {"invalid": 1, "bad_auth": 1}
    debug = httpx.post(f"{mp.server.url}/debug/mp/collect", params={"firebase_app_id": APP_ID, "api_secret": "x"},
                       json=web_shaped).json()["validationMessages"]
    assert {m["fieldPath"] for m in debug} >= {"app_instance_id"}
