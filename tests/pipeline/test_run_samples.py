"""The job end to end on the samples, through the CLI, against the local endpoint (issue 2)."""

from __future__ import annotations

import csv
from datetime import datetime

import orjson
import pytest

from etl.collector import FaultOptions, read_store, spawn_collector
from etl.load import open_ledger
from tests.datamanager.support import PROPERTY_ID, dm_destination, point_at, service_account
from tests.support import SAMPLES_NOW, files_containing, ledger_location, samples_config

# The whole module runs once per ledger backend: SQLite, then PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("ledger_backend")

SECRET = "SENTINEL-SECRET-e2e-41c9"
MID = "G-K7QW2ZP9LM"
PINNED = datetime.fromisoformat(SAMPLES_NOW.replace("Z", "+00:00"))


@pytest.fixture
def run_mpetl(run_mpetl):
    """This module's secret, on the samples' night."""
    return run_mpetl.using(env={"MP_API_SECRET": SECRET}, clock=SAMPLES_NOW)


def summary(out) -> dict:
    return orjson.loads((out / "summary.json").read_bytes())


def stored_transaction_ids(store) -> list[tuple[str, str]]:
    """(event_name, transaction_id) of every stored event: a refund shares its order's id."""
    frame = read_store(store)
    return [(name, next((p["value"]["string_value"] for p in params if p["key"] == "transaction_id"), None))
            for name, params in zip(frame["event_name"], frame["event_params"], strict=True)]


@pytest.fixture
def api() -> str:
    return "measurement_protocol"


@pytest.fixture
def collector(tmp_path, api):
    """The local endpoint; with `api = "data_manager"` it trusts a test service account, and
    `server.destination` is what a config needs to send to it through that API."""
    dm = {}
    if api == "data_manager":
        credentials = service_account(tmp_path / "dm" / "sa.json")
        dm = {"dm_service_account": credentials, "property_id": PROPERTY_ID}
    with spawn_collector(tmp_path / "store", measurement_id=MID, api_secret=SECRET, timezone="Europe/London",
                         now=PINNED, **dm) as server:
        server.destination = {}
        if dm:
            point_at(credentials, server.url)
            server.destination = dm_destination(server.url, credentials, tmp_path / "dm" / "quota.json")
        yield server


API = pytest.mark.parametrize("api", ["measurement_protocol", "data_manager"])


@API
def test_run_sends_every_planned_event_and_accounts_for_every_row(run_mpetl, tmp_path, collector, api):
    config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir, destination=collector.destination)
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--now", SAMPLES_NOW)
    assert result.returncode == 0, result.stderr
    s = summary(tmp_path / "out")
    assert s["rows_in"] == (s["sent"] + s["filtered"] + s["rejected"] + s["duplicate"] + s["deferred"] + s["expired"]
                            + s["rejected_at_send"] + s["failed"] + s["outside_window"] + s["other_shard"])
    assert s["failed"] == 0 and s["sent"] > 100 and s["rejected"] > 0 and s["deferred"] > 0 and s["duplicate"] > 0
    assert s["filtered"] == sum(s["filtered_codes"].values()) > 0
    ids = stored_transaction_ids(collector.data_dir)
    assert len(ids) == s["sent"] == len(set(ids))
    # Every reject names its source and 1-based row, with debug-shaped reasons.
    rejects = [orjson.loads(line) for line in (tmp_path / "out" / "rejects.ndjson").read_bytes().splitlines()]
    assert len(rejects) == s["rejected"]
    for r in rejects:
        assert r["row"] >= 1 and r["source"] in s["sources"]
        assert r["reasons"] and all(set(x) == {"fieldPath", "description", "validationCode"} for x in r["reasons"])
        assert not {x["validationCode"] for x in r["reasons"]} & set(s["filtered_codes"])  # filtered: not a reject
    # Deferred rows are shaped for GA4 Data Import (offline events).
    header = (tmp_path / "out" / "deferred.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["measurement_id", "client_id", "user_id", "timestamp_micros", "ad_personalization",
                          "ad_user_data", "event_name"]
    assert len((tmp_path / "out" / "deferred.csv").read_text().splitlines()) == s["deferred"] + 1


@API
def test_a_rerun_sends_nothing_new(run_mpetl, tmp_path, collector, api):
    config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir, destination=collector.destination)
    first = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "a"), "--now", SAMPLES_NOW)
    second = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "b"), "--now", SAMPLES_NOW)
    assert first.returncode == second.returncode == 0
    a, b = summary(tmp_path / "a"), summary(tmp_path / "b")
    assert b["sent"] == 0
    # Sent and deferred rows are duplicates now: nothing is sent or deferred twice.
    assert b["duplicate"] == a["duplicate"] + a["sent"] + a["deferred"]
    assert a["deferred"] > 0 and b["deferred"] == 0 and not (tmp_path / "b" / "deferred.csv").read_text().count("\n") > 1
    assert len(stored_transaction_ids(collector.data_dir)) == a["sent"]


def test_dry_run_writes_exact_bodies_and_leaves_the_ledger_alone(run_mpetl, tmp_path, collector):
    config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir)
    dry = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "dry"), "--dry-run", "--now", SAMPLES_NOW,
                env={"MP_API_SECRET": None})
    assert dry.returncode == 0, dry.stderr
    bodies = [orjson.loads(x) for x in (tmp_path / "dry" / "requests.ndjson").read_bytes().splitlines()]
    dry_summary = summary(tmp_path / "dry")
    assert sum(len(b["events"]) for b in bodies) == dry_summary["would_send"]
    assert collector.stats()["requests"] == 0
    # Nothing was sent, and summary.json says so: no `sent` anywhere, no HTTP statuses, requests written.
    assert "sent" not in dry_summary and all("sent" not in s for s in dry_summary["sources"].values())
    assert "http_statuses" not in dry_summary["send"] and "events_sent" not in dry_summary["send"]
    assert dry_summary["send"]["requests_written"] == len(bodies)
    assert "would_send" in dry_summary["earlier_runs"] and "would_send_for_earlier_runs" in dry_summary
    real = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "real"), "--now", SAMPLES_NOW)
    assert real.returncode == 0
    assert summary(tmp_path / "real")["sent"] == dry_summary["would_send"]
    assert summary(tmp_path / "real")["send"]["http_statuses"] == {"204": len(bodies)}


def test_the_secret_never_lands_in_outputs_state_or_logs(run_mpetl, tmp_path, collector):
    config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir)
    runs = [run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--now", SAMPLES_NOW),
            run_mpetl("-v", "run", "--config", str(config), "--out", str(tmp_path / "dry"), "--dry-run", "--now", SAMPLES_NOW)]
    for r in runs:
        assert SECRET not in r.stdout + r.stderr
    assert files_containing(tmp_path, SECRET) == []  # ledger, outputs, collector store: none holds it


def test_missing_secret_is_a_config_error_naming_the_fix(run_mpetl, tmp_path, collector):
    config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir)
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), env={"MP_API_SECRET": None})
    assert result.returncode == 2
    assert "MP_API_SECRET" in result.stderr and "Traceback" not in result.stderr


def test_config_errors_name_file_key_and_expectation(run_mpetl, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[property]\nmeasurement_id = "G-1"\ntimezone = "Mars/Olympus"\n')
    result = run_mpetl("run", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "property.timezone" in result.stderr and "IANA" in result.stderr
    bad.write_text('[property]\nmeasurement_id = "G-1"\ntimezone = "UTC"\n[destination]\napi_secret = "x"\n')
    result = run_mpetl("run", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "must not be in the config file" in result.stderr


def test_an_unreadable_source_is_reported_and_the_others_still_go(run_mpetl, tmp_path, collector):
    broken = tmp_path / "broken.csv"
    broken.write_text("order;when\n1;2026-11-20\n")
    config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir)
    text = config.read_text() + (
        f'\n[[sources]]\nname = "broken"\nkind = "csv"\npath = "{broken}"\nconsent_default = "grant"\n'
        '[sources.columns]\ntransaction_id = "order"\ntimestamp = "when"\nclient_id = "ga_cookie"\n'
    )
    config.write_text(text)
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--now", SAMPLES_NOW)
    assert result.returncode == 2
    s = summary(tmp_path / "out")
    assert s["sent"] > 100 and "broken" not in s["sources"]
    (error,) = s["source_errors"]
    assert error["source"] == "broken" and "broken.csv" in error["error"] and "ga_cookie" in error["error"]


def test_reconcile_names_exactly_the_transactions_the_endpoint_dropped(run_mpetl, tmp_path):
    store = tmp_path / "store"
    with spawn_collector(store, measurement_id=MID, api_secret=SECRET, timezone="Europe/London", now=PINNED,
                         faults=FaultOptions(drop_rate=0.15, seed=11)) as server:
        config = samples_config(tmp_path, endpoint=server.url, store=store,
                                reconcile={"backend": "duckdb", "provisional_hours": 0})
        run = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--now", SAMPLES_NOW)
        assert run.returncode == 0  # GA answers 2xx to what it drops: the sender cannot know
        assert server.stats()["dropped"]["injected_drop"] > 0
    with open_ledger(ledger_location(tmp_path), read_only=True) as ledger:
        ledger_sent = ledger.for_reconcile(run_id=summary(tmp_path / "out")["run_id"])
    sent = set(zip(ledger_sent["event_name"], ledger_sent["transaction_id"], strict=True))
    dates = {(n, t): d for n, t, d in zip(ledger_sent["event_name"], ledger_sent["transaction_id"],
                                          ledger_sent["event_date"], strict=True)}
    arrived = set(stored_transaction_ids(store))
    dropped = sent - arrived
    assert dropped
    rec = run_mpetl("reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--since", "2026-11-17",
                "--until", "2026-11-20", "--now", "2026-11-25T00:00:00Z")
    assert rec.returncode == 3, rec.stdout + rec.stderr
    missing = {(r["event_name"], r["transaction_id"].lstrip("'"))
               for r in csv.DictReader((tmp_path / "rec" / "missing.csv").open())}
    in_range = {(n, t) for n, t in dropped if dates[(n, t)] <= "20261120"}
    assert missing == in_range
    report = orjson.loads((tmp_path / "rec" / "reconciliation.json").read_bytes())
    assert report["verdict"] == "not_reconciled"


def test_an_unknown_source_name_is_a_config_error(run_mpetl, tmp_path):
    config = samples_config(tmp_path, endpoint="http://127.0.0.1:9")
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run", "--source", "hubspto")
    assert result.returncode == 2 and "hubspto" in result.stderr and "hubspot" in result.stderr


def test_a_source_broken_deep_in_the_file_leaves_nothing_behind(run_mpetl, tmp_path, collector):
    good = "\n".join(f"D{i},GA1.1.{1000 + i}.1700000000,2026-11-20 10:00,12.5,EUR" for i in range(180_000))
    path = tmp_path / "deep.csv"
    # A rejected row first (written to rejects.ndjson in the first chunk), a row with too many fields
    # after ~11 MB (past two 4 MB read blocks): the source fails only after chunks were planned.
    path.write_text("id,cookie,closed,amount,cur\nX1,not-a-cookie,2026-11-20 10:00,1,EUR\n" + good
                    + "\nD-BAD,GA1.1.1.1700000000,2026-11-20 10:00,1,EUR,extra,fields\n")
    config = samples_config(tmp_path, endpoint=collector.url, store=collector.data_dir, sources=[{
        "name": "deep", "kind": "csv", "path": str(path), "consent_default": "grant",
        "columns": {"transaction_id": "id", "client_id": "cookie", "timestamp": "closed", "value": "amount",
                    "currency": "cur"}}])
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--now", SAMPLES_NOW,
                   "--chunk-rows", "1000")
    assert result.returncode == 2
    s = summary(tmp_path / "out")
    assert s["rows_in"] == 0 and s["sent"] == 0 and s["source_errors"][0]["source"] == "deep"
    assert (tmp_path / "out" / "rejects.ndjson").read_bytes() == b""
    assert collector.stats()["requests"] == 0
