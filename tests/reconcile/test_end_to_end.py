"""Proof of arrival through the CLI against the local endpoint, which fails the way Google fails.

The collector runs on the real clock (Google's clock is the truth for the 72 h window); the orders
were closed a few hours ago. Only events carrying our `mpetl_run` marker prove arrival.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from etl.collector import read_store, spawn_collector
from etl.load import open_ledger
from tests.support import samples_config

SECRET = "SENTINEL-SECRET-recon-7f3e"
MID = "G-K7QW2ZP9LM"
IDS = [f"ORD-{i:03d}" for i in range(6)]
DROPPED = "ORD-002"


@pytest.fixture
def run_mpetl(run_mpetl):
    """This module's secret; the real clock (its orders are hours old)."""
    return run_mpetl.using(env={"MP_API_SECRET": SECRET})


ORDERS_AGE = timedelta(hours=5)


def write_orders(path: Path) -> None:
    closed = (datetime.now(UTC) - ORDERS_AGE).strftime("%Y-%m-%d %H:%M")
    lines = ["id,cookie,closed,amount,cur"]
    lines += [f"{tid},GA1.1.{1000 + i}.1700000000,{closed},{10 + i}.5,EUR" for i, tid in enumerate(IDS)]
    path.write_text("\n".join(lines) + "\n")


def make_config(tmp_path: Path, url: str, store: Path) -> Path:
    orders = tmp_path / "orders.csv"
    write_orders(orders)
    return samples_config(
        tmp_path, endpoint=url, store=store,
        reconcile={"backend": "duckdb", "arrival_grace_minutes": 0},
        sources=[{"name": "shop", "kind": "csv", "path": str(orders), "consent_default": "grant",
                  "columns": {"transaction_id": "id", "client_id": "cookie", "timestamp": "closed",
                              "value": "amount", "currency": "cur"}}],
    )


def site_tag_purchase(url: str, tid: str) -> None:
    """The website's own tag sending a purchase with the same transaction id: no mpetl_run marker. Timed
    like the orders, so it lands in their date's table whatever the hour the suite runs (at 02:00 the
    orders are yesterday's)."""
    micros = int((datetime.now(UTC) - ORDERS_AGE).timestamp() * 1_000_000)
    body = {"client_id": "555.1700000000", "timestamp_micros": micros, "events": [{"name": "purchase", "params": {
        "transaction_id": tid, "currency": "EUR", "value": 1.0}}]}
    answer = httpx.post(f"{url}/mp/collect", params={"measurement_id": MID, "api_secret": SECRET}, json=body)
    assert answer.status_code == 204


def drop_from_export(store: Path, tid: str) -> None:
    """What Google does to an event it loses: the export simply lacks it."""
    for path in store.glob("events_*.ndjson"):
        lines = path.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if orjson.loads(line)["ecommerce"]["transaction_id"] != tid]
        path.write_bytes(b"".join(kept))


def stored(store: Path) -> list[tuple[str, str | None]]:
    """(transaction_id, mpetl_run marker) of every purchase in the store."""
    frame = read_store(store)
    out = []
    for ecommerce, params in zip(frame["ecommerce"], frame["event_params"], strict=True):
        if not isinstance(ecommerce, dict):
            continue  # live traffic (a page_view): no purchase
        marker = next((p["value"]["string_value"] for p in params if p["key"] == "mpetl_run"), None)
        out.append((ecommerce["transaction_id"], marker))
    return sorted(out, key=lambda x: (x[0], x[1] or ""))


def missing_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "missing.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def collector(tmp_path):
    with spawn_collector(tmp_path / "store", measurement_id=MID, api_secret=SECRET, timezone="Europe/London") as c:
        yield c


def _send_then_drop(run_mpetl, tmp_path, collector) -> tuple[Path, str]:
    """A real send of the orders, then DROPPED taken out of the export (what GA does with events it drops)."""
    config = make_config(tmp_path, collector.url, collector.data_dir)
    run = run_mpetl("-q", "run", "--config", str(config), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    drop_from_export(collector.data_dir, DROPPED)
    return config, orjson.loads((tmp_path / "out" / "summary.json").read_bytes())["run_id"]


def test_a_dropped_event_shadowed_by_the_site_tag_is_still_missing(run_mpetl, tmp_path, collector):
    config, run_id = _send_then_drop(run_mpetl, tmp_path, collector)
    site_tag_purchase(collector.url, DROPPED)

    rec = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--run-id", run_id)

    assert rec.returncode == 3, rec.stdout + rec.stderr
    [row] = missing_rows(tmp_path / "rec")
    assert (row["transaction_id"], row["state"], row["seen_from_other_sender"]) == (DROPPED, "missing", "1")
    assert row["resendable"] == "True" and 60 < float(row["resend_window_left_h"]) < 72
    assert "NOT_RECONCILED" in rec.stdout and "can still be resent" in rec.stdout

    resend = run_mpetl("-q", "resend", "--config", str(config), "--run-id", run_id, "--out", str(tmp_path / "resend"))
    assert resend.returncode == 0, resend.stdout + resend.stderr
    report = orjson.loads((tmp_path / "resend" / "resend.json").read_bytes())
    assert (report["resent"], report["deferred"], report["failed"]) == (1, 0, 0)
    with open_ledger(tmp_path / "state" / "ledger.sqlite", read_only=True) as ledger:
        states = ledger.inspect().set_index("transaction_id")
    assert states.loc[DROPPED, "resent"] and states.loc[DROPPED, "status"] == "sent"
    assert not states.drop(index=DROPPED)["resent"].any()  # exactly the missing one went again

    after = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "after"), "--run-id", run_id)
    assert after.returncode == 0, after.stdout + after.stderr
    assert missing_rows(tmp_path / "after") == []
    ours = [(tid, marker) for tid, marker in stored(collector.data_dir) if marker is not None]
    assert sorted(tid for tid, _ in ours) == IDS  # each id stored once with our marker
    assert stored(collector.data_dir).count((DROPPED, None)) == 1  # the site tag's copy is still there


def test_resend_defers_what_the_window_no_longer_allows(run_mpetl, tmp_path, collector):
    """An event whose 72 h (minus the margin) are over by the wall clock is not resent, only listed."""
    config, run_id = _send_then_drop(run_mpetl, tmp_path, collector)
    collector.live_traffic()  # the export shows hits received after the send: the drop is proven
    strict = make_config(tmp_path, collector.url, collector.data_dir)
    text = strict.read_text().replace("[window]", "[window]\nsafety_margin_minutes = 4300")
    if "[window]" not in text:
        text += "\n[window]\nsafety_margin_minutes = 4300\n"  # 71.7 h: less than that is left
    strict.write_text(text)

    resend = run_mpetl("-q", "resend", "--config", str(strict), "--run-id", run_id, "--out", str(tmp_path / "resend"))

    assert resend.returncode == 3, resend.stdout + resend.stderr
    report = orjson.loads((tmp_path / "resend" / "resend.json").read_bytes())
    assert (report["resent"], report["deferred"]) == (0, 1)
    with (tmp_path / "resend" / "resend_deferred.csv").open(newline="") as fh:
        assert [r["transaction_id"] for r in csv.DictReader(fh)] == [DROPPED]
    assert collector.stats()["events_stored"] == len(IDS)  # nothing was sent again
    with open_ledger(tmp_path / "state" / "ledger.sqlite", read_only=True) as ledger:
        states = ledger.inspect().set_index("transaction_id")
    # Deferred like any event too old to send: `mpetl deferred` exports it for GA4 Data Import.
    assert (states.loc[DROPPED, "status"], states.loc[DROPPED, "resent"]) == ("deferred", True)
    export = run_mpetl("-q", "deferred", "--config", str(strict), "--out", str(tmp_path / "import.csv"))
    assert export.returncode == 0, export.stderr
    assert DROPPED in (tmp_path / "import.csv").read_text()


def test_a_wrong_secret_is_answered_2xx_stores_nothing_and_the_canary_names_the_cause(run_mpetl, tmp_path, collector):
    config = make_config(tmp_path, collector.url, collector.data_dir)
    site_tag_purchase(collector.url, "WEB-1")  # the site keeps being tracked: the orders' table exists
    run = run_mpetl("-q", "run", "--config", str(config), "--out", str(tmp_path / "out"), env={"MP_API_SECRET": "a-wrong-secret"})
    assert run.returncode == 0, run.stderr  # every request got a 2xx
    summary = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())
    assert summary["sent"] == len(IDS)
    assert collector.stats()["dropped"] == {"bad_auth": len(IDS)}
    assert stored(collector.data_dir) == [("WEB-1", None)]
    collector.live_traffic()  # the site goes on being tracked after the send: evidence nothing of ours came

    rec = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--run-id", summary["run_id"])
    assert rec.returncode == 3, rec.stdout + rec.stderr
    assert sorted(r["transaction_id"] for r in missing_rows(tmp_path / "rec")) == IDS

    check = run_mpetl("-q", "check", "--config", str(config), "--wait-s", "1", "--poll-s", "0.2", env={"MP_API_SECRET": "a-wrong-secret"})
    assert check.returncode == 7, check.stdout + check.stderr
    assert "api_secret" in check.stderr and "measurement_id" in check.stderr
    assert "a-wrong-secret" not in check.stdout + check.stderr


def test_an_absent_export_gives_exit_6_and_the_canary_says_not_linked(run_mpetl, tmp_path, collector):
    config = make_config(tmp_path, collector.url, collector.data_dir)
    run = run_mpetl("-q", "run", "--config", str(config), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    run_id = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())["run_id"]
    for path in collector.data_dir.glob("events_*"):  # the export was unlinked: no tables
        path.unlink()

    rec = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--run-id", run_id)

    assert rec.returncode == 6, rec.stdout + rec.stderr
    assert missing_rows(tmp_path / "rec") == []
    assert "EXPORT NOT AVAILABLE" in rec.stdout

    blind = tmp_path / "elsewhere"
    blind.mkdir()
    unlinked = samples_config(tmp_path, endpoint=collector.url, store=blind)  # the export is not where we look
    check = run_mpetl("-q", "check", "--config", str(unlinked), "--wait-s", "1", "--poll-s", "0.2")
    assert check.returncode == 7 and "not linked" in check.stderr, check.stdout + check.stderr


def test_the_canary_is_found_in_the_intraday_table(run_mpetl, tmp_path):
    store = tmp_path / "store"
    with spawn_collector(store, measurement_id=MID, api_secret=SECRET, timezone="Europe/London",
                         daily_lag_s=600) as collector:
        config = make_config(tmp_path, collector.url, store)
        check = run_mpetl("-q", "check", "--config", str(config), "--wait-s", "20", "--poll-s", "0.2")
    assert check.returncode == 0, check.stdout + check.stderr
    report = orjson.loads(check.stdout.splitlines()[-1])
    assert report["found"] and report["canary_id"].startswith("canary-")
    assert [p.name.startswith("events_intraday_") for p in store.glob("events_*")] == [True]
    [row] = read_store(store).to_dict(orient="records")
    assert row["event_name"] == "mpetl_canary" and row["ecommerce"] is None


def test_reconcile_right_after_sending_reads_the_intraday_table(run_mpetl, tmp_path):
    """Hours before any daily table exists, the run is already proven from the streaming export."""
    store = tmp_path / "store"
    with spawn_collector(store, measurement_id=MID, api_secret=SECRET, timezone="Europe/London",
                         daily_lag_s=600) as collector:
        config = make_config(tmp_path, collector.url, store)
        run = run_mpetl("-q", "run", "--config", str(config), "--out", str(tmp_path / "out"))
        assert run.returncode == 0, run.stderr
        run_id = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())["run_id"]
        rec = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--run-id", run_id)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert all(p.name.startswith("events_intraday_") for p in store.glob("events_*"))
    report = orjson.loads((tmp_path / "rec" / "reconciliation.json").read_bytes())
    assert report["verdict"] == "reconciled" and report["totals"]["found"] == len(IDS)
    assert {d["export"] for d in report["dates"]} == {"intraday"}


def test_the_next_step_of_a_failed_date_is_a_command_that_resends(run_mpetl, tmp_path, collector):
    """What to do next names `mpetl resend` with the real config and run id; pasted as it is, it resends."""
    import shlex

    config, run_id = _send_then_drop(run_mpetl, tmp_path, collector)
    collector.live_traffic()  # the export shows hits received after the send: the drop is proven

    rec = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"), "--run-id", run_id)
    assert rec.returncode == 3, rec.stdout + rec.stderr
    steps = orjson.loads((tmp_path / "rec" / "reconciliation.json").read_bytes())["next_steps"]
    (step,) = [s for s in steps if "mpetl resend" in s]
    assert step.startswith(f"Resend the 1 missing events of run {run_id} while GA4's window allows")
    assert "re-run `mpetl run`" not in " ".join(steps) and "Nothing to do" not in " ".join(steps)
    assert step in rec.stdout  # the terminal says the same
    html = (tmp_path / "rec" / "reconciliation.html").read_text(encoding="utf-8")
    assert "Resend the 1 missing events of run" in html

    words = shlex.split(step[step.index("mpetl resend"):])
    assert words[:6] == ["mpetl", "resend", "--config", str(config.resolve()), "--run-id", run_id]
    resend = run_mpetl("-q", *words[1:])
    assert resend.returncode == 0, resend.stdout + resend.stderr
    report = orjson.loads((Path(words[words.index("--out") + 1]) / "resend.json").read_bytes())
    assert (report["resent"], report["failed"]) == (1, 0)
    ours = sorted(tid for tid, marker in stored(collector.data_dir) if marker is not None)
    assert ours == IDS  # the dropped one is back, each id once with our marker
