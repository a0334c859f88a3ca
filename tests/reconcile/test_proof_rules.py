"""The rules of the proof, one at a time, against GA4-shaped store files (DuckDB backend).

- evidence: an MP-only property (no live traffic) is judged by a later date's daily table, and only
  once that day is over;
- money: per date and currency, purchases positive and refunds negative, exact to the cent, and
  `tolerance_value` fails the verdict on money when the counts alone would pass;
- settled dates: final 72 h after the date ends in the property zone, and the report says from when.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

from etl.reconcile import reconcile

from .builders import Scenario, export_row, ids, micros_for, write_store

DAY, NEXT = "20261121", "20261122"
SENT_AT = "2026-11-22T10:00:00+00:00"  # yesterday's conversions sent the next morning


def test_an_mp_only_property_is_judged_by_a_later_daily_table_once_its_day_is_over(tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    s.arrive(s.send(DAY, ids("A", 5), sent_at=SENT_AT), drop=frozenset({"A-0003"}))
    config = s.build()

    at_noon = reconcile(config, out_dir=tmp_path / "noon", run_id="run-1", now=datetime(2026, 11, 22, 14, tzinfo=UTC))
    assert at_noon.verdict == "provisional"  # events_20261121 ended before the send: it proves nothing about it
    assert at_noon.to_dict()["evidence"]["from"] == "daily table events_20261121"

    # The next night's conversions (stamped before the send, as backdated events are) create events_20261122.
    write_store(tmp_path / "store", [export_row("B-1", NEXT, run_marker="run-0") | {"event_timestamp":
                                                                                    micros_for(NEXT, hour=8)}])
    evening = reconcile(config, out_dir=tmp_path / "evening", run_id="run-1", now=datetime(2026, 11, 22, 23, tzinfo=UTC))
    assert evening.verdict == "provisional"  # that day is not over: its table may still grow
    night = reconcile(config, out_dir=tmp_path / "night", run_id="run-1", now=datetime(2026, 11, 23, 1, tzinfo=UTC))
    assert (night.verdict, night.exit_code) == ("not_reconciled", 3)
    assert night.to_dict()["evidence"] == {
        "watermark": "2026-11-23T00:00:00Z", "from": "daily table events_20261122",
        "newest_event_timestamp": "2026-11-22T08:00:00Z", "newest_daily_table": "events_20261122",
        "arrival_grace_minutes": 120.0, "judges_events_sent_before": "2026-11-22T22:00:00Z"}
    assert [m["transaction_id"] for m in night.to_dict()["missing"]] == ["A-0003"]


def test_money_per_date_and_currency_refunds_negative(tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    eur = s.send("20261115", ids("E", 3), value=19.99)
    usd = s.send("20261115", ids("U", 2), value=100.10, currency="USD")
    refunds = s.send("20261116", ["E-0000"], event_name="refund", value=4.99)
    s.arrive(eur + refunds)
    s.arrive(usd, drop=frozenset({"U-0001"}))
    s.arrive(eur[:1])  # one EUR purchase recorded twice (a retry)
    result = reconcile(s.build(), out_dir=tmp_path / "out", run_id="run-1", now=datetime(2026, 11, 23, 12, tzinfo=UTC))

    with (tmp_path / "out" / "money.csv").open(newline="", encoding="utf-8") as fh:
        rows = [(r["event_date"], r["currency"], r["sent_value"], r["found_value"], r["missing_value"],
                 r["duplicate_value"]) for r in csv.DictReader(fh)]
    assert rows == [("20261115", "EUR", "59.97", "79.96", "0.0", "19.99"),
                    ("20261115", "USD", "200.2", "100.1", "100.1", "0.0"),
                    ("20261116", "EUR", "-4.99", "-4.99", "0.0", "0.0")]
    assert result.to_dict()["money"]["totals"] == {
        "EUR": {"sent_value": 54.98, "found_value": 74.97, "missing_value": 0.0, "duplicate_value": 19.99},
        "USD": {"sent_value": 200.2, "found_value": 100.1, "missing_value": 100.1, "duplicate_value": 0.0}}
    assert "money USD: sent 200.20, found 100.10, missing 100.10, duplicate 0.00" in result.summary_text()


def test_tolerance_value_fails_the_verdict_on_money(tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    cheap = s.send("20261115", ids("C", 19), value=1.0)
    dear = s.send("20261115", ["BIG-1"], value=950.0)
    s.arrive(cheap + dear, drop=frozenset({"BIG-1"}))
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    by_count = reconcile(s.build(tolerance=0.05), out_dir=tmp_path / "count", run_id="run-1", now=now)
    assert (by_count.verdict, by_count.exit_code) == ("reconciled", 0)  # 1 of 20 missing: within 5 %
    by_money = reconcile(s.build(tolerance=0.05, tolerance_value=100), out_dir=tmp_path / "money", run_id="run-1",
                         now=now)
    assert (by_money.verdict, by_money.exit_code) == ("not_reconciled", 3)  # EUR 950 missing > 100
    [date] = by_money.to_dict()["dates"]
    assert (date["failed"], date["failed_value"]) == (True, True)


def test_dates_say_when_they_become_final(tmp_path: Path) -> None:
    s = Scenario(tmp_path)
    s.arrive(s.send("20261115", ids("A", 2)) + s.send(DAY, ids("Y", 2)))
    result = reconcile(s.build(), out_dir=tmp_path / "out", run_id="run-1", now=datetime(2026, 11, 23, 12, tzinfo=UTC))
    dates = {d["event_date"]: (d["status"], d["final_at"]) for d in result.to_dict()["dates"]}
    # Europe/London is on UTC in November: 21 Nov ends at 22 Nov 00:00, final 72 h later.
    assert dates == {"20261115": ("final", "2026-11-19T00:00:00Z"), DAY: ("provisional", "2026-11-25T00:00:00Z")}
    assert "provisional dates: 2026-11-21 (final from 2026-11-25T00:00:00Z)" in result.summary_text()
    report = json.loads((tmp_path / "out" / "reconciliation.json").read_text())
    assert set(report) >= {"money", "evidence", "dates", "totals"}
