"""`mpetl deferred`: every deferred event reaches a Data Import file once, in Google's template."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from etl.config import load_config
from etl.pipeline import RunOptions, run_pipeline
from tests.support import REPO, samples_config

# Runs once per ledger backend: SQLite, then PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("ledger_backend")

SECRET = "deferred-export-secret-0c1d"
WEEK_LATER = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)  # every sample row is too old by then


@pytest.fixture
def run_mpetl(run_mpetl):
    """This module's secret; the real clock (the ledger was planned a week ahead)."""
    return run_mpetl.using(env={"MP_API_SECRET": SECRET})


def test_deferred_events_are_exported_once_in_the_data_import_template(run_mpetl, tmp_path, monkeypatch):
    monkeypatch.setenv("MP_API_SECRET", SECRET)
    config = samples_config(tmp_path, endpoint="http://127.0.0.1:9")
    run = run_pipeline(load_config(config), RunOptions(out_dir=tmp_path / "run",
                                                       clock=lambda: int(WEEK_LATER.timestamp()) * 1_000_000))
    deferred = run.summary["deferred"]
    # Shopify's refunds have no time in the export (no refund date, no Cancelled at): timed when first
    # seen, the wall clock, they are fresh — the only events left to send (the endpoint is down).
    shopify = csv.DictReader((REPO / "data" / "samples" / "pos" / "shopify_orders_export.csv").open(encoding="utf-8"))
    refunds = sum(r["Financial Status"] in ("refunded", "partially_refunded") for r in shopify)
    assert deferred > 100 and run.summary["sent"] == 0 and run.summary["failed"] == refunds > 0

    first = run_mpetl("deferred", "--config", str(config), "--out", str(tmp_path / "import" / "a.csv"))
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader((tmp_path / "import" / "a.csv").open()))
    assert len(rows) == deferred
    header = list(rows[0])
    # Google's template: the consents right after the time (support.google.com/analytics/answer/10325025).
    assert header[:7] == ["measurement_id", "client_id", "user_id", "timestamp_micros", "ad_personalization",
                          "ad_user_data", "event_name"]
    assert all(h.startswith(("event_param.", "item")) for h in header[7:])
    # Consent follows the data: each deferred event's ad consents, as its request would have carried them.
    assert {r["ad_user_data"] for r in rows} <= {"GRANTED", "DENIED", ""} and any(r["ad_user_data"] for r in rows)
    assert {r["measurement_id"] for r in rows} == {"G-K7QW2ZP9LM"}
    # Numbers stay numbers, ids stay as they were sent.
    assert not any(r.get("item1.quantity", "").endswith(".0") for r in rows)
    assert all(r["timestamp_micros"].isdigit() for r in rows)
    run_rows = list(csv.DictReader((tmp_path / "run" / "deferred.csv").open()))
    assert sorted(r["event_param.transaction_id"] for r in run_rows) == sorted(r["event_param.transaction_id"] for r in rows)

    second = run_mpetl("deferred", "--config", str(config), "--out", str(tmp_path / "import" / "b.csv"))
    assert second.returncode == 0, second.stderr
    assert list(csv.DictReader((tmp_path / "import" / "b.csv").open())) == []  # nothing is exported twice

    # The same --out again: refused in one line, the first file (whose events are exported) untouched.
    first_bytes = (tmp_path / "import" / "a.csv").read_bytes()
    again = run_mpetl("deferred", "--config", str(config), "--out", str(tmp_path / "import" / "a.csv"))
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "exists already" in again.stderr
    assert (tmp_path / "import" / "a.csv").read_bytes() == first_bytes
    assert sorted(p.name for p in (tmp_path / "import").iterdir()) == ["a.csv", "a_index.csv", "b.csv", "b_index.csv"]
