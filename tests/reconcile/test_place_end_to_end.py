"""Issue 26 through the CLI: store locations and an app stream, sent to the local endpoint and reconciled.

The samples (data/samples/make_samples.py) are a night's exports: the wall clock is pinned to the
morning after them (SAMPLES_NOW), as `make run` does, and the run starts the project's collector
(`endpoint = "local"`), which places each event as GA does from its request's user_location.
"""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import orjson
import pytest

from etl.collector import read_store
from tests.support import REPO, SAMPLES_NOW, dump_toml

SECRET = "local-place-secret-5d1c"
PLACES = {"Soho": ("London", "Westminster", "United Kingdom"),
          "Manchester Arndale": ("Manchester", "Manchester", "United Kingdom")}


@pytest.fixture
def run_mpetl(run_mpetl):
    return run_mpetl.using(env={"MP_API_SECRET": SECRET}, clock=SAMPLES_NOW)


API = pytest.mark.parametrize("api", ["mp", "data_manager"])


def _config(tmp_path: Path, name: str, api: str = "mp") -> Path:
    data = tomllib.loads((REPO / "jobs" / "configs" / f"{name}.toml").read_text())
    data["base_dir"] = str(REPO)
    if api == "data_manager":  # the same night through Google's Data Manager API (docs/data-manager.md)
        data["property"]["property_id"] = "123456789"
        data["destination"] = {**data["destination"], "api": "data_manager",
                               "data_manager": {"quota_file": str(tmp_path / "quota.json")}}
    data["ledger"] = {"path": str(tmp_path / "ledger.sqlite")}
    data["reconcile"] = {**data["reconcile"], "store": str(tmp_path / "collector")}
    path = tmp_path / f"{name}.toml"
    path.write_text(dump_toml(data))
    return path


def _run_and_reconcile(run_mpetl, tmp_path: Path, config: Path) -> tuple[dict, dict]:
    result = run_mpetl("-q", "run", "--config", str(config), "--out", str(tmp_path / "run"), "--now", SAMPLES_NOW)
    assert result.returncode == 0, result.stderr
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    result = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--now", SAMPLES_NOW)
    assert result.returncode == 0, result.stdout + result.stderr
    return summary, orjson.loads((tmp_path / "rec" / "reconciliation.json").read_bytes())


def _stores_of_orders() -> dict[str, str]:
    """Order name → the store the export says (blank: an online order), read from the sample itself."""
    with (REPO / "data/samples/pos/shopify_two_stores.csv").open(newline="") as handle:
        return {row["Name"]: row["Location"] for row in csv.DictReader(handle) if row["Financial Status"]}


@API
def test_two_stores_orders_arrive_each_with_its_stores_city_region_and_country(run_mpetl, tmp_path, api):
    summary, rec = _run_and_reconcile(run_mpetl, tmp_path, _config(tmp_path, "stores", api))
    stores = _stores_of_orders()
    online = sorted(name for name, store in stores.items() if not store)
    assert summary["sent"] == len(stores) == 14 and summary["balanced"]
    assert (summary["with_location"], summary["without_location"]) == (14 - len(online), len(online))
    frame = read_store(tmp_path / "collector")
    seen = {}
    for ecommerce, geo, device in zip(frame["ecommerce"], frame["geo"], frame["device"], strict=True):
        tid = ecommerce["transaction_id"]
        seen[tid] = (geo["city"], geo["region"], geo["country"]) if isinstance(geo, dict) else None
        assert device["category"] == "tablet" and device["operating_system"] == "iPadOS"
    assert seen == {name: PLACES.get(store) for name, store in stores.items()}
    assert {store for store in stores.values() if store} == set(PLACES)  # both stores are in the sample
    totals = rec["totals"]
    assert rec["verdict"] == "reconciled" and totals["arrived"] == 14
    assert totals["with_geo"] == 14 - len(online) and totals["with_geo_share"] == round((14 - len(online)) / 14, 6)


@API
def test_an_app_stream_sends_with_firebase_app_id_and_reconciles(run_mpetl, tmp_path, api):
    summary, rec = _run_and_reconcile(run_mpetl, tmp_path, _config(tmp_path, "app", api))
    with (REPO / "data/samples/app/app_purchases.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    good = {r["Order ID"]: r["App Instance ID"] for r in rows if len(r["App Instance ID"]) == 32}
    assert (summary["sent"], summary["rejected"]) == (len(good), len(rows) - len(good)) == (9, 1)
    [reject] = [orjson.loads(line) for line in (tmp_path / "run" / "rejects.ndjson").read_bytes().splitlines()]
    assert reject["reasons"][0]["fieldPath"] == "app_instance_id" and "'App Instance ID'" in reject["reasons"][0]["description"]
    frame = read_store(tmp_path / "collector")
    assert {e["transaction_id"]: u for e, u in zip(frame["ecommerce"], frame["user_pseudo_id"], strict=True)} == good
    assert set(frame["platform"]) == {"ANDROID"}
    assert {a["firebase_app_id"] for a in frame["app_info"]} == {"1:1234567890:android:321abc456def7890"}
    assert rec["verdict"] == "reconciled" and rec["totals"]["arrived"] == 9 and rec["totals"]["missing"] == 0
