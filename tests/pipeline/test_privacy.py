"""Consent follows the data, and the privacy manifest says exactly what left (issue 9)."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict

import orjson
import pytest

from etl.collector import spawn_collector
from tests.support import REPO, SAMPLES_NOW, samples_config

SECRET = "secret-privacy-5e2"


@pytest.fixture
def run_mpetl(run_mpetl):
    """This module's secret, on the samples' night."""
    return run_mpetl.using(env={"MP_API_SECRET": SECRET}, clock=SAMPLES_NOW)


def bodies(out) -> list[dict]:
    return [orjson.loads(x) for x in (out / "requests.ndjson").read_bytes().splitlines()]


def test_manifest_is_exactly_what_the_requests_hold(run_mpetl, tmp_path):
    config = samples_config(tmp_path, endpoint="http://127.0.0.1:9")
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run", "--now", SAMPLES_NOW)
    assert result.returncode == 0, result.stderr
    manifest = orjson.loads((tmp_path / "out" / "privacy_manifest.json").read_bytes())
    # Derived independently, from the bytes that would leave.
    request_fields: Counter[str] = Counter()
    events: dict[str, dict] = defaultdict(lambda: {"count": 0, "params": Counter(), "item_params": Counter()})
    for body in bodies(tmp_path / "out"):
        request_fields.update(body.keys())
        for event in body["events"]:
            e = events[event["name"]]
            e["count"] += 1
            e["params"].update(event["params"].keys())
            for item in event["params"].get("items", []):
                e["item_params"].update(item.keys())
    assert manifest["request_fields"] == dict(request_fields)
    assert manifest["events"] == {
        name: {"count": e["count"], "params": dict(e["params"]), "item_params": dict(e["item_params"])}
        for name, e in events.items()
    }
    assert "user_data" not in request_fields and "ip_override" not in request_fields
    assert manifest["consent_policy"]["salesforce"]["consent_default"] == "deny"
    assert manifest["detectors_fired"].get("email", 0) >= 1


def test_denied_and_unknown_consent_never_leaves(run_mpetl, tmp_path):
    config = samples_config(tmp_path, endpoint="http://127.0.0.1:9")
    run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run", "--now", SAMPLES_NOW)
    sent_ids = {e["params"]["transaction_id"] for b in bodies(tmp_path / "out") for e in b["events"]}
    rows = list(csv.DictReader((REPO / "data/samples/crm/salesforce_opportunities.csv").open(encoding="utf-8-sig")))
    no_consent = {r["Opportunity ID"] for r in rows
                  if r["Analytics_Consent__c"].strip().lower() not in ("granted", "yes", "true", "1")}
    assert no_consent, "the sample should hold rows without analytics consent"
    assert not (no_consent & sent_ids)
    # Not sending them is consent followed, not bad data: filtered with the consent column named, not rejects.
    rejects = [orjson.loads(x) for x in (tmp_path / "out" / "rejects.ndjson").read_bytes().splitlines()]
    assert not [r for r in rejects if any(x["validationCode"] in ("CONSENT_DENIED", "NO_CONSENT") for x in r["reasons"])]
    summary = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())
    salesforce = summary["sources"]["salesforce"]
    assert salesforce["consent_default"] == "deny"
    consent = {f["code"]: f for f in salesforce["filtered_reasons"] if f["code"] in ("CONSENT_DENIED", "NO_CONSENT")}
    assert set(consent) == {"CONSENT_DENIED", "NO_CONSENT"}
    assert all("'Analytics_Consent__c'" in f["reason"] for f in consent.values())


def test_the_consent_object_matches_each_row(run_mpetl, tmp_path):
    data = tmp_path / "deals.csv"
    data.write_text(
        "id,cookie,closed,amount,cur,analytics,ad_data,ad_pers\n"
        "D1,GA1.1.111.1700000000,2026-11-20 10:00,10,EUR,yes,yes,no\n"
        "D2,GA1.1.222.1700000000,2026-11-20 11:00,20,EUR,yes,no,yes\n"
        "D3,GA1.1.333.1700000000,2026-11-20 12:00,30,EUR,yes,,\n"
        "D4,GA1.1.444.1700000000,2026-11-20 13:00,40,EUR,no,yes,yes\n"
    )
    config = samples_config(tmp_path, endpoint="http://127.0.0.1:9", sources=[{
        "name": "deals", "kind": "csv", "path": str(data), "event": "purchase", "timezone": "UTC",
        "consent_default": "deny",
        "columns": {"transaction_id": "id", "client_id": "cookie", "timestamp": "closed", "value": "amount",
                    "currency": "cur", "consent_analytics": "analytics", "ad_user_data": "ad_data",
                    "ad_personalization": "ad_pers"},
    }])
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run", "--now", SAMPLES_NOW)
    assert result.returncode == 0, result.stderr
    consent = {b["events"][0]["params"]["transaction_id"]: b.get("consent") for b in bodies(tmp_path / "out")}
    assert consent == {
        "D1": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
        "D2": {"ad_user_data": "DENIED", "ad_personalization": "GRANTED"},
        "D3": {"ad_user_data": "DENIED", "ad_personalization": "DENIED"},  # unknown follows the 'deny' policy
    }


def test_a_param_outside_the_allowlist_stops_the_run_before_the_first_request(run_mpetl, tmp_path):
    with spawn_collector(tmp_path / "store", measurement_id="G-K7QW2ZP9LM", api_secret=SECRET) as server:
        config = samples_config(tmp_path, endpoint=server.url, store=tmp_path / "store")
        text = config.read_text().replace('name = "salesforce"', 'name = "salesforce"\nparams = { customer_email = "Contact Email" }', 1)
        config.write_text(text)
        result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--now", SAMPLES_NOW)
        requests = server.stats()["requests"]
    assert result.returncode == 2
    assert "customer_email" in result.stderr and "allowlist" in result.stderr
    assert requests == 0
