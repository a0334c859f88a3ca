"""Ids are opaque: a transaction id starting with `row:` reconciles like any other (issue 23), and a lead
without a transaction id (keyed by a row digest in the ledger) is matched by its event time, found or
missing, and resent. Through the CLI, on both ledger backends, against the local endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from etl.collector import spawn_collector
from etl.load import open_ledger
from tests.support import ledger_location, samples_config

from .test_evidence_end_to_end import MID, SECRET, mpetl

pytestmark = pytest.mark.usefixtures("ledger_backend")

ROW_LIKE = ["row:0123456789abcdef", "row:x", "ORD-1"]  # the first looks exactly like a row digest


def drop(store: Path, keep) -> None:
    """What Google does to an event it loses: the export simply lacks it (the collector is idle)."""
    for path in store.glob("events_*.ndjson"):
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(line for line in lines if keep(orjson.loads(line))))


def test_row_prefixed_ids_and_id_less_leads_reconcile(tmp_path):
    closed = datetime.now(UTC) - timedelta(hours=4)
    orders, leads = tmp_path / "orders.csv", tmp_path / "leads.csv"
    orders.write_text("id,cookie,closed,amount,cur\n" + "".join(
        f"{tid},GA1.1.{500 + i}.1700000000,{closed:%Y-%m-%d %H:%M},{20 + i}.25,EUR\n" for i, tid in enumerate(ROW_LIKE)))
    leads.write_text("cookie,created,amount,cur\n" + "".join(
        f"GA1.1.{900 + i}.1700000000,{closed + timedelta(minutes=i):%Y-%m-%d %H:%M},{5 + i}.00,EUR\n" for i in range(2)))
    store = tmp_path / "store"
    with spawn_collector(store, measurement_id=MID, api_secret=SECRET, timezone="Europe/London") as collector:
        config = samples_config(tmp_path, endpoint=collector.url, store=store,
                                reconcile={"backend": "duckdb", "arrival_grace_minutes": 0}, sources=[
            {"name": "shop", "kind": "csv", "path": str(orders), "consent_default": "grant",
             "columns": {"transaction_id": "id", "client_id": "cookie", "timestamp": "closed", "value": "amount",
                         "currency": "cur"}},
            {"name": "crm", "kind": "csv", "path": str(leads), "event": "generate_lead", "consent_default": "grant",
             "columns": {"client_id": "cookie", "timestamp": "created", "value": "amount", "currency": "cur"}}])
        run = mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"))
        assert run.returncode == 0, run.stderr
        run_id = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())["run_id"]
        with open_ledger(ledger_location(tmp_path), read_only=True) as ledger:
            sent = ledger.for_reconcile(run_id=run_id)
        assert sorted(sent["transaction_id"].dropna()) == sorted(ROW_LIKE)
        assert sent["transaction_id"].isna().sum() == 2  # the leads: keyed by a digest, no id
        assert sorted(sent["value"]) == [5.0, 6.0, 20.25, 21.25, 22.25] and set(sent["currency"]) == {"EUR"}

        first_lead_ts = int(sent.loc[sent["transaction_id"].isna(), "timestamp_micros"].min())
        drop(store, lambda r: (r["ecommerce"] or {}).get("transaction_id") != ROW_LIKE[0]
             and not (r["event_name"] == "generate_lead" and r["event_timestamp"] == first_lead_ts))
        collector.live_traffic()
        rec = mpetl("reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--run-id", run_id)
        assert rec.returncode == 3, rec.stdout + rec.stderr
        report = orjson.loads((tmp_path / "rec" / "reconciliation.json").read_bytes())
        missing = sorted((m["event_name"], m["transaction_id"] or "") for m in report["missing"])
        assert missing == [("generate_lead", ""), ("purchase", ROW_LIKE[0])]
        assert (report["totals"]["arrived"], report["totals"]["missing"]) == (3, 2)
        assert report["money"]["totals"]["EUR"]["missing_value"] == 25.25  # 20.25 + the 5.00 lead

        resend = mpetl("resend", "--config", str(config), "--run-id", run_id, "--out", str(tmp_path / "resend"))
        assert resend.returncode == 0, resend.stdout + resend.stderr
        assert orjson.loads((tmp_path / "resend" / "resend.json").read_bytes())["resent"] == 2
        after = mpetl("reconcile", "--config", str(config), "--out", str(tmp_path / "after"), "--run-id", run_id)
    assert after.returncode == 0, after.stdout + after.stderr
    final = orjson.loads((tmp_path / "after" / "reconciliation.json").read_bytes())
    assert (final["verdict"], final["totals"]["arrived"], final["totals"]["resend_copies"]) == ("reconciled", 5, 2)


def test_an_unknown_run_id_is_one_line_and_exit_2(tmp_path):
    config = samples_config(tmp_path, endpoint="http://127.0.0.1:9", reconcile={"backend": "duckdb"})
    (tmp_path / "state" / "collector").mkdir(parents=True)
    with open_ledger(ledger_location(tmp_path)) as ledger:
        ledger.bind_property(MID, "http://127.0.0.1:9")
        ledger.begin_run("20261201T000000Z-abcdef", "send")
    rec = mpetl("reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--run-id", "20261201T000000Z-abcdeg")
    assert rec.returncode == 2, rec.stdout + rec.stderr
    assert rec.stderr.strip().count("\n") == 0 and "Traceback" not in rec.stderr
    assert "--run-id '20261201T000000Z-abcdeg': no such run in the ledger" in rec.stderr
    assert "RECONCILED" not in rec.stdout
