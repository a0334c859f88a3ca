"""Issue 22 end to end: a proof that waits for the export's evidence, counts money, and never doubles.

Against the project's own endpoint on the real clock, dropping ~10 % of requests silently with a
2xx (what Google does to what it drops), and the CLI as an operator runs it. The arrival grace is
0 minutes on purpose: a clock-based rule would call every dropped event missing at once; only the
export's evidence (hits received after the send) may.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from etl.collector import FaultOptions, read_store, spawn_collector
from tests.reconcile.test_dedup_view import dedup_view_rows, store_rows
from tests.support import samples_config

SECRET = "SENTINEL-SECRET-evidence-3c1d"
MID = "G-K7QW2ZP9LM"
ORDERS = 1200


def mpetl(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MP_API_SECRET"} | {"MP_API_SECRET": SECRET}
    return subprocess.run([sys.executable, "-m", "etl.cli", "-q", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def write_orders(path: Path, n: int, currency: str) -> dict[str, Decimal]:
    """n purchases closed 5 h ago, each from its own client (one request each), values 10.00..99.99."""
    closed = (datetime.now(UTC) - timedelta(hours=5)).strftime("%Y-%m-%d %H:%M")
    values = {f"ORD-{i:05d}": Decimal(1000 + (i * 7919) % 9000) / 100 for i in range(n)}
    lines = ["id,cookie,closed,amount,cur"]
    lines += [f"{tid},GA1.1.{100000 + i}.1700000000,{closed},{value},{currency}" for i, (tid, value) in
              enumerate(values.items())]
    path.write_text("\n".join(lines) + "\n")
    return values


def config_for(tmp_path: Path, url: str, store: Path, n: int, currency: str) -> tuple[Path, dict[str, Decimal]]:
    orders = tmp_path / "orders.csv"
    values = write_orders(orders, n, currency)
    config = samples_config(
        tmp_path, endpoint=url, store=store,
        # GA4's 72 h of updates (the samples' store is final at once): a young date must not be judged
        # final, whatever the time of day this runs.
        reconcile={"backend": "duckdb", "arrival_grace_minutes": 0, "provisional_hours": 72},
        sources=[{"name": "shop", "kind": "csv", "path": str(orders), "consent_default": "grant",
                  "columns": {"transaction_id": "id", "client_id": "cookie", "timestamp": "closed",
                              "value": "amount", "currency": "cur"}}],
    )
    return config, values


def ours_in_store(store: Path) -> list[tuple[str, str | None]]:
    """(transaction_id, mpetl_resend marker) of every purchase carrying our mpetl_run marker."""
    frame = read_store(store)
    out = []
    for name, ecommerce, params in zip(frame["event_name"], frame["ecommerce"], frame["event_params"], strict=True):
        markers = {p["key"]: p["value"]["string_value"] for p in params if p["key"] in ("mpetl_run", "mpetl_resend")}
        if name == "purchase" and markers.get("mpetl_run"):
            out.append((ecommerce["transaction_id"], markers.get("mpetl_resend")))
    return out


def reconcile(config: Path, out: Path, run_id: str) -> tuple[int, dict]:
    rec = mpetl("reconcile", "--config", str(config), "--out", str(out), "--run-id", run_id)
    assert rec.returncode in (0, 3), rec.stdout + rec.stderr
    (out / "summary.txt").write_text(rec.stdout)  # what the operator read (docs/reconcile.md quotes one)
    return rec.returncode, orjson.loads((out / "reconciliation.json").read_bytes())


def resend(config: Path, out: Path, run_id: str) -> dict:
    done = mpetl("resend", "--config", str(config), "--run-id", run_id, "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return orjson.loads((out / "resend.json").read_bytes())


def money(report: dict, currency: str) -> dict[str, Decimal]:
    return {k: Decimal(str(v)) for k, v in report["money"]["totals"][currency].items()}


def missing_ids(folder: Path) -> set[str]:
    with (folder / "missing.csv").open(newline="", encoding="utf-8") as fh:
        return {r["transaction_id"] for r in csv.DictReader(fh) if r["state"] == "missing"}


@pytest.mark.slow
def test_ten_percent_dropped_no_resend_before_evidence_then_exactly_the_dropped_value(tmp_path):
    store = tmp_path / "store"
    with spawn_collector(store, measurement_id=MID, api_secret=SECRET, timezone="Europe/London",
                         faults=FaultOptions(drop_rate=0.1, seed=22)) as collector:
        config, values = config_for(tmp_path, collector.url, store, ORDERS, "USD")
        run = mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"))
        assert run.returncode == 0, run.stderr
        summary = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())
        run_id = summary["run_id"]
        assert summary["sent"] == ORDERS  # every request got a 2xx
        dropped = set(values) - {tid for tid, _ in ours_in_store(store)}
        dropped_value = sum(values[t] for t in dropped)
        assert 60 < len(dropped) < 180  # ~10 % of 1,200 one-event requests

        # Right after the send the export holds nothing newer than our own backdated events.
        early = resend(config, tmp_path / "resend-early", run_id)
        assert (early["resent"], early["missing"], early["not_yet_arrived"]) == (0, 0, len(dropped))
        assert "left alone" in early["note"] and early["evidence_expected_after"]
        assert len(ours_in_store(store)) == ORDERS - len(dropped)  # nothing was sent again
        code, before = reconcile(config, tmp_path / "rec-before", run_id)
        assert (code, before["verdict"]) == (0, "provisional")
        assert money(before, "USD")["missing_value"] == 0

        # The site's own traffic, received after the send, reaches the export: now absence is evidence.
        collector.live_traffic()
        code, proven = reconcile(config, tmp_path / "rec-proven", run_id)
        assert (code, proven["verdict"]) == (3, "not_reconciled")
        assert missing_ids(tmp_path / "rec-proven") == dropped
        usd = money(proven, "USD")
        assert usd == {"sent_value": sum(values.values()), "found_value": sum(values.values()) - dropped_value,
                       "missing_value": dropped_value, "duplicate_value": Decimal(0)}

        # Resend what is proven missing (the endpoint drops ~10 % of those too), until nothing is.
        figures = [(len(dropped), dropped_value)]
        for attempt in range(6):
            report = resend(config, tmp_path / f"resend-{attempt}", run_id)
            assert report["resent"] == report["missing"] == len(missing_ids(tmp_path / (
                "rec-proven" if attempt == 0 else f"rec-{attempt - 1}")))
            collector.live_traffic()
            code, after = reconcile(config, tmp_path / f"rec-{attempt}", run_id)
            figures.append((after["totals"]["missing"], money(after, "USD")["missing_value"]))
            if after["totals"]["missing"] == 0:
                break
        print("missing (ids, USD) before and after each resend:", figures)

    assert (code, after["verdict"]) == (0, "reconciled")
    assert money(after, "USD") == {"sent_value": sum(values.values()), "found_value": sum(values.values()),
                                   "missing_value": Decimal(0), "duplicate_value": Decimal(0)}
    assert (after["totals"]["duplicate_copies"], after["totals"]["resend_copies"]) == (0, len(dropped))
    rows = ours_in_store(store)
    assert sorted(t for t, _ in rows) == sorted(values)  # each order exactly once
    assert {t for t, copy in rows if copy} == dropped  # the resent ones carry the resend marker


def test_a_late_original_restored_after_a_resend_is_a_copy_with_its_value(tmp_path, bigquery_emulator):
    store = tmp_path / "store"
    with spawn_collector(store, measurement_id=MID, api_secret=SECRET, timezone="Europe/London") as collector:
        config, values = config_for(tmp_path, collector.url, store, 60, "EUR")
        run = mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"))
        assert run.returncode == 0, run.stderr
        run_id = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())["run_id"]
        late = sorted(values)[10:17]
        late_value = sum(values[t] for t in late)
        assert collector.withhold(late) == 7  # processed late: not in the daily table yet
        collector.live_traffic()

        code, proven = reconcile(config, tmp_path / "rec-proven", run_id)
        assert code == 3 and missing_ids(tmp_path / "rec-proven") == set(late)
        assert money(proven, "EUR")["missing_value"] == late_value
        report = resend(config, tmp_path / "resend", run_id)
        assert report["resent"] == 7 and report["resend_marker"] == "mpetl_resend"
        copies = [(t, marker) for t, marker in ours_in_store(store) if marker]
        assert sorted(t for t, _ in copies) == late and {m for _, m in copies} == {report["run_id"]}

        code, clean = reconcile(config, tmp_path / "rec-clean", run_id)
        assert (code, clean["verdict"]) == (0, "reconciled")
        assert (clean["totals"]["missing"], clean["totals"]["duplicate_copies"]) == (0, 0)

        assert collector.release() == 7  # Google's late update: the originals land beside the copies
        code, doubled = reconcile(config, tmp_path / "rec-doubled", run_id)

    assert (code, doubled["verdict"]) == (3, "duplicated")
    assert doubled["totals"]["duplicate_copies"] == 7 and doubled["totals"]["missing"] == 0
    assert money(doubled, "EUR") == {"sent_value": sum(values.values()), "found_value": sum(values.values()) + late_value,
                                     "missing_value": Decimal(0), "duplicate_value": late_value}
    with (tmp_path / "rec-doubled" / "duplicates.csv").open(newline="", encoding="utf-8") as fh:
        duplicates = list(csv.DictReader(fh))
    assert sorted(d["transaction_id"] for d in duplicates) == late
    assert {(d["count"], d["resend_copies"]) for d in duplicates} == {("2", "1")}
    assert sum(Decimal(d["duplicate_value"]) for d in duplicates) == late_value

    # The shipped view over the same rows in a BigQuery API: one row per transaction id and user.
    purchases = [r for r in dedup_view_rows(bigquery_emulator, store_rows(store), "analytics_late") if
                 r["event_name"] == "purchase"]
    assert sorted(r["tid"] for r in purchases) == sorted(values)
    assert not any(r["is_copy"] for r in purchases if r["tid"] in late)  # the original is kept, not the copy
    assert sum(Decimal(str(r["revenue"])) for r in purchases) == sum(values.values())
