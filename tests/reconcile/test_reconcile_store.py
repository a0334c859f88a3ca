"""Reconciliation against the local collector's store (DuckDB backend), end to end through files."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from etl.reconcile import (
    ExportUnavailableError,
    LedgerUnavailableError,
    ReconcileError,
    reconcile,
)

from .builders import CLIENT_ID_PREFIX, USER_ID_PREFIX, Scenario, export_row, ids, micros_for, site_row, write_store

# Dates 20261110..20261119 are final at NOW (72 h after their end, Europe/London); 20261121 is not.
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FINAL_DAY, OTHER_FINAL_DAY, YOUNG_DAY = "20261115", "20261116", "20261121"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    return Scenario(tmp_path)


def test_missing_ids_are_named_and_fail_the_run(scenario: Scenario, tmp_path: Path) -> None:
    day1 = scenario.send(FINAL_DAY, ids("A", 10))
    day2 = scenario.send(OTHER_FINAL_DAY, ids("B", 10))
    dropped = {"A-0003", "A-0007", "B-0001"}
    scenario.arrive(day1 + day2, drop=frozenset(dropped))
    config = scenario.build()

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert result.verdict == "not_reconciled"
    assert result.exit_code == 3
    missing = read_csv(tmp_path / "out" / "missing.csv")
    assert {m["transaction_id"] for m in missing} == dropped
    assert all(m["source"] == "shop" and m["sent_run_id"] == "run-1" for m in missing)
    per_row = {(r["event_date"], r["event_name"]): r for r in read_csv(tmp_path / "out" / "reconciliation.csv")}
    assert per_row[(FINAL_DAY, "purchase")]["sent"] == "10"
    assert per_row[(FINAL_DAY, "purchase")]["found"] == "8"
    assert per_row[(FINAL_DAY, "purchase")]["missing"] == "2"
    assert per_row[(OTHER_FINAL_DAY, "purchase")]["missing"] == "1"
    report = json.loads((tmp_path / "out" / "reconciliation.json").read_text())
    assert report["verdict"] == "not_reconciled" and report["exit_code"] == 3
    assert report["totals"]["missing"] == 3
    assert "FAILED" in result.summary_text()


def test_everything_found_is_reconciled(scenario: Scenario, tmp_path: Path) -> None:
    scenario.arrive(scenario.send(FINAL_DAY, ids("A", 5)))
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert (result.verdict, result.exit_code) == ("reconciled", 0)
    assert read_csv(tmp_path / "out" / "missing.csv") == []


def test_id_from_another_sender_is_listed_but_does_not_fail(scenario: Scenario, tmp_path: Path) -> None:
    scenario.arrive(scenario.send(FINAL_DAY, ids("A", 5)))
    scenario.send(FINAL_DAY, ["PLANNED-1"], status="planned", sent_run_id=None)
    scenario.exported.append(export_row("WEB-42", FINAL_DAY, run_marker=None))  # the browser tag
    scenario.exported.append(export_row("PLANNED-1", FINAL_DAY, run_marker=None))  # known to the ledger
    config = scenario.build()

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert result.verdict == "reconciled"
    extras = read_csv(tmp_path / "out" / "extras.csv")
    assert [(e["transaction_id"], e["count"]) for e in extras] == [("WEB-42", "1")]
    assert extras[0]["sender"].startswith("other")
    assert result.to_dict()["totals"]["extra_ids"] == 1


def test_duplicated_purchase_is_listed_with_the_ledger_flag_and_its_value(scenario: Scenario, tmp_path: Path) -> None:
    events = scenario.send(FINAL_DAY, ids("A", 4))
    events[1].possible_duplicate = 1
    scenario.arrive(events)
    scenario.arrive([events[1]])  # resent after a crash: arrived twice
    scenario.exported.append(export_row(events[2].transaction_id, FINAL_DAY, run_marker=None))  # browser tag too
    config = scenario.build()

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    duplicates = {d["transaction_id"]: d for d in read_csv(tmp_path / "out" / "duplicates.csv")}
    # Only our marked copies count: the browser tag's copy of A-0002 is another sender's, not a duplicate.
    assert set(duplicates) == {"A-0001"}
    assert duplicates["A-0001"]["count"] == "2" and duplicates["A-0001"]["possible_duplicate"] == "True"
    extras = read_csv(tmp_path / "out" / "extras.csv")
    assert [(e["transaction_id"], e["sender"].split(",")[0]) for e in extras] == [("A-0002", "other sender")]
    # Nothing missing, but the export holds one of our purchases twice: never a clean verdict.
    assert (result.verdict, result.exit_code) == ("duplicated", 3)
    assert (duplicates["A-0001"]["duplicate_value"], duplicates["A-0001"]["currency"]) == ("10.0", "EUR")
    report = json.loads((tmp_path / "out" / "reconciliation.json").read_text())
    assert report["money"]["totals"] == {"EUR": {"sent_value": 40.0, "found_value": 50.0, "missing_value": 0.0,
                                                 "duplicate_value": 10.0}}
    assert report["totals"]["duplicate_copies"] == 1 and report["totals"]["resend_copies"] == 0


def test_absent_event_is_not_yet_arrived_then_missing_while_it_can_still_be_resent(
    scenario: Scenario, tmp_path: Path
) -> None:
    """The early verdict: missing once the arrival grace has passed, not 72 h after the day ends."""
    scenario.arrive(scenario.send(FINAL_DAY, ids("A", 5)))
    just_sent = (NOW - timedelta(minutes=30)).isoformat()
    scenario.arrive(scenario.send(YOUNG_DAY, ids("Y", 5), sent_at=just_sent), drop=frozenset({"Y-0000", "Y-0004"}))
    config = scenario.build()

    young = reconcile(config, out_dir=tmp_path / "young", run_id="run-1", now=NOW)
    assert (young.verdict, young.exit_code) == ("provisional", 0)
    status = {d["event_date"]: d["status"] for d in young.to_dict()["dates"]}
    assert status == {FINAL_DAY: "final", YOUNG_DAY: "provisional"}
    pending = read_csv(tmp_path / "young" / "missing.csv")
    assert {(m["transaction_id"], m["state"]) for m in pending} == {
        ("Y-0000", "not_yet_arrived"),
        ("Y-0004", "not_yet_arrived"),
    }
    assert young.to_dict()["totals"]["not_yet_arrived"] == 2

    # Three hours later (past the 2 h arrival grace) but with nothing newer in the export than the
    # backdated events themselves: no evidence the export processed anything sent after them.
    blind = reconcile(config, out_dir=tmp_path / "blind", run_id="run-1", now=NOW + timedelta(hours=3))
    assert (blind.verdict, blind.exit_code) == ("provisional", 0)
    assert {m["state"] for m in read_csv(tmp_path / "blind" / "missing.csv")} == {"not_yet_arrived"}
    assert {m["evidence_after"] for m in read_csv(tmp_path / "blind" / "missing.csv")} == {"2026-11-23T13:30:00Z"}
    assert "received after 2026-11-23T13:30:00Z" in blind.summary_text()

    # Live site traffic received after send + grace lands in the export: now the absence is evidence.
    write_store(tmp_path / "store", [site_row(NOW + timedelta(hours=2, minutes=50))])
    later = reconcile(config, out_dir=tmp_path / "later", run_id="run-1", now=NOW + timedelta(hours=3))
    assert (later.verdict, later.exit_code) == ("not_reconciled", 3)
    assert {m["state"] for m in read_csv(tmp_path / "later" / "missing.csv")} == {"missing"}
    assert later.to_dict()["evidence"]["watermark"] == "2026-11-23T14:50:00Z"
    assert "can still be resent" in later.summary_text() or "past it" in later.summary_text()


def test_resend_window_is_measured_by_the_wall_clock(scenario: Scenario, tmp_path: Path) -> None:
    """--now pins the verdict's clock, never the 72 h window: Google measures that on receipt."""
    [event] = scenario.send(FINAL_DAY, ["W-1"])  # event time 2026-11-15 12:00 UTC
    scenario.exported.append(export_row("SITE-1", FINAL_DAY, run_marker=None))
    reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    [row] = read_csv(tmp_path / "out" / "missing.csv")
    wall_left = (micros_for(FINAL_DAY) / 1e6 + 72 * 3600 - datetime.now(UTC).timestamp()) / 3600
    assert float(row["resend_window_left_h"]) == pytest.approx(max(0.0, wall_left), abs=0.05)
    assert row["resendable"] == str(wall_left * 60 > 60)


@pytest.mark.parametrize(("tolerance", "verdict", "exit_code"), [(0.1, "reconciled", 0), (0.05, "not_reconciled", 3)])
def test_tolerance_is_the_share_missing_allowed_on_a_final_date(
    scenario: Scenario, tmp_path: Path, tolerance: float, verdict: str, exit_code: int
) -> None:
    scenario.arrive(scenario.send(FINAL_DAY, ids("A", 10)), drop=frozenset({"A-0005"}))
    result = reconcile(scenario.build(tolerance=tolerance), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert (result.verdict, result.exit_code) == (verdict, exit_code)
    assert result.to_dict()["totals"]["missing"] == 1


def test_only_the_selected_run_is_reconciled(scenario: Scenario, tmp_path: Path) -> None:
    scenario.send(FINAL_DAY, ids("OLD", 3), run_id="run-0", sent_run_id="run-0")  # never arrived
    scenario.arrive(scenario.send(FINAL_DAY, ids("NEW", 3), run_id="run-1", sent_run_id="run-1"))
    # planned by run-0, delivered by run-1: belongs to run-1's reconciliation as well
    scenario.arrive(scenario.send(FINAL_DAY, ["LATE-1"], run_id="run-0", sent_run_id="run-1"))
    config = scenario.build()

    by_run = reconcile(config, out_dir=tmp_path / "run1", run_id="run-1", now=NOW)
    assert by_run.verdict == "reconciled"
    assert by_run.to_dict()["totals"]["sent"] == 4

    by_date = reconcile(config, out_dir=tmp_path / "dates", since=date(2026, 11, 15), until=date(2026, 11, 15), now=NOW)
    assert by_date.verdict == "not_reconciled"
    assert {m["transaction_id"] for m in read_csv(tmp_path / "dates" / "missing.csv")} == set(ids("OLD", 3))

    latest = reconcile(config, out_dir=tmp_path / "latest", now=NOW)  # neither run nor dates: the last send
    assert (latest.run_id, latest.verdict) == ("run-1", "reconciled")


def test_session_attribution_share(scenario: Scenario, tmp_path: Path) -> None:
    scenario.arrive(scenario.send(FINAL_DAY, ids("S", 3)))
    scenario.arrive(scenario.send(FINAL_DAY, ids("N", 1), has_session=False))
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert result.to_dict()["totals"]["no_session_share"] == pytest.approx(0.25)
    row = read_csv(tmp_path / "out" / "reconciliation.csv")[0]
    assert (row["no_session"], row["no_session_share"]) == ("1", "0.25")


def test_csv_cells_cannot_become_formulas(scenario: Scenario, tmp_path: Path) -> None:
    scenario.send(FINAL_DAY, ['=HYPERLINK("http://x")', "-1+cmd", "-42", "@SUM(A1)", "ok-1"])
    scenario.exported.append(export_row("SITE-1", FINAL_DAY, run_marker=None))  # the day's table exists
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert result.exit_code == 3
    cells = [m["transaction_id"] for m in read_csv(tmp_path / "out" / "missing.csv")]
    # A plain negative number cannot be a formula and stays data; anything else that could is quoted.
    assert sorted(cells) == sorted(['\'=HYPERLINK("http://x")', "'-1+cmd", "-42", "'@SUM(A1)", "ok-1"])
    for path in (tmp_path / "out").glob("*.csv"):
        for row in csv.reader(path.open(encoding="utf-8")):
            risky = [c for c in row if c.startswith(("=", "+", "-", "@")) and not re.fullmatch(r"-\d+(\.\d+)?", c)]
            assert not risky, path.name


def test_no_client_or_user_id_in_any_report(scenario: Scenario, tmp_path: Path) -> None:
    events = scenario.send(FINAL_DAY, ids("A", 6))
    scenario.arrive(events, drop=frozenset({"A-0002"}))
    scenario.arrive(events[:1])
    scenario.exported.append(export_row("WEB-1", FINAL_DAY, run_marker=None))
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    files = list((tmp_path / "out").iterdir())
    assert len(files) == 7
    for path in files:
        data = path.read_bytes()
        assert CLIENT_ID_PREFIX.encode() not in data, path.name
        assert USER_ID_PREFIX.encode() not in data, path.name
    assert CLIENT_ID_PREFIX not in result.summary_text()


def test_exports_saved_from_ga4_as_parquet_and_json_are_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    scenario = Scenario(tmp_path)
    scenario.send(FINAL_DAY, ["P-1", "P-2"])
    scenario.send(OTHER_FINAL_DAY, ["J-1"], event_name="generate_lead")
    config = scenario.build()
    store = tmp_path / "store"
    # BigQuery's JSON export writes INT64 as strings.
    lead = export_row("J-1", OTHER_FINAL_DAY, event_name="generate_lead")
    lead["event_timestamp"] = str(lead["event_timestamp"])
    (store / f"events_{OTHER_FINAL_DAY}.json").write_text(json.dumps(lead) + "\n")
    rows = [export_row(t, FINAL_DAY) for t in ("P-1", "P-2")]
    pq.write_table(pa.Table.from_pylist(rows), store / f"events_{FINAL_DAY}.parquet")

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert (result.verdict, result.to_dict()["totals"]["found"]) == ("reconciled", 3)


def test_intraday_file_used_only_when_the_daily_file_is_absent(scenario: Scenario, tmp_path: Path) -> None:
    day1 = scenario.send(FINAL_DAY, ["D-1"])
    day2 = scenario.send(OTHER_FINAL_DAY, ["I-1"])
    config = scenario.build()
    store = tmp_path / "store"
    write_store(store, [export_row("D-1", FINAL_DAY)])
    intraday = [export_row(e.transaction_id, e.event_date) for e in day1 + day2]
    for row in intraday:
        with (store / f"events_intraday_{row['event_date']}.ndjson").open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert result.verdict == "reconciled"
    assert result.to_dict()["totals"]["duplicate_ids"] == 0


def test_missing_ledger_and_missing_store_are_input_errors(scenario: Scenario, tmp_path: Path) -> None:
    config = scenario.build()
    (tmp_path / "ledger.sqlite").unlink()
    with pytest.raises(LedgerUnavailableError) as no_ledger:
        reconcile(config, out_dir=tmp_path / "out", now=NOW)
    assert no_ledger.value.exit_code == 2
    assert not (tmp_path / "ledger.sqlite").exists()  # read-only: never created

    with pytest.raises(ExportUnavailableError) as no_store:
        reconcile(scenario.build(store=tmp_path / "nowhere"), out_dir=tmp_path / "out", now=NOW)
    assert no_store.value.exit_code == 2


def test_event_exported_on_the_neighbouring_date_counts_as_found(scenario: Scenario, tmp_path: Path) -> None:
    events = scenario.send(FINAL_DAY, ids("Z", 2))
    scenario.arrive(events[:1])
    scenario.exported.append(export_row(events[1].transaction_id, OTHER_FINAL_DAY))  # zone disagreement
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert result.verdict == "reconciled"
    assert result.to_dict()["totals"]["date_shifted"] == 1
    assert read_csv(tmp_path / "out" / "extras.csv") == []


def test_our_marker_on_an_event_the_ledger_did_not_record_as_sent(scenario: Scenario, tmp_path: Path) -> None:
    scenario.arrive(scenario.send(FINAL_DAY, ids("A", 2)))
    failed = scenario.send(FINAL_DAY, ["F-1"], status="failed", sent_run_id=None)
    scenario.exported.append(export_row(failed[0].transaction_id, FINAL_DAY, run_marker="run-1"))  # it did arrive
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert result.verdict == "reconciled"
    extras = read_csv(tmp_path / "out" / "extras.csv")
    assert [(e["transaction_id"], e["sender"].split(" ")[0]) for e in extras] == [("F-1", "mpetl")]


def test_a_selection_with_nothing_sent_says_so(scenario: Scenario, tmp_path: Path) -> None:
    scenario.arrive(scenario.send(FINAL_DAY, ids("A", 2)))
    scenario.send(FINAL_DAY, ["P-1"], run_id="run-2", sent_run_id=None, status="planned")  # run-2 sent nothing
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-2", now=NOW)
    assert (result.exit_code, result.to_dict()["totals"]["sent"]) == (0, 0)
    assert result.headline.startswith("Nothing to reconcile")
    assert (tmp_path / "out" / "reconciliation.html").is_file()


def test_an_unknown_run_id_is_an_input_error_not_a_verdict(scenario: Scenario, tmp_path: Path) -> None:
    scenario.arrive(scenario.send(FINAL_DAY, ids("A", 2)))
    with pytest.raises(ReconcileError) as typo:
        reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-l", now=NOW)
    assert typo.value.exit_code == 2
    assert str(typo.value) == "--run-id 'run-l': no such run in the ledger (a run's summary.json names its run_id)"
    assert not (tmp_path / "out" / "reconciliation.json").exists()


def test_a_same_id_event_from_the_site_tag_is_not_proof(scenario: Scenario, tmp_path: Path) -> None:
    """Our purchase was dropped; the site tag sent one with the same transaction id: still missing."""
    events = scenario.send(FINAL_DAY, ids("A", 3))
    scenario.arrive(events, drop=frozenset({"A-0001"}))
    scenario.exported.append(export_row("A-0001", FINAL_DAY, run_marker=None))  # the browser tag
    scenario.exported.append(export_row("A-0002", FINAL_DAY, run_marker="run-other"))  # another run's marker
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert (result.verdict, result.exit_code) == ("not_reconciled", 3)
    [missing] = read_csv(tmp_path / "out" / "missing.csv")
    assert (missing["transaction_id"], missing["state"], missing["seen_from_other_sender"]) == ("A-0001", "missing", "1")
    senders = {e["transaction_id"]: e["sender"] for e in read_csv(tmp_path / "out" / "extras.csv")}
    assert senders["A-0001"].startswith("other sender, same id as ours")
    assert senders["A-0002"].startswith("mpetl marker of a run that did not send")
    assert result.to_dict()["totals"]["seen_from_other_sender"] == 1
    assert result.to_dict()["totals"]["found"] == 2


def test_an_absent_export_is_not_a_list_of_missing_events(scenario: Scenario, tmp_path: Path) -> None:
    scenario.arrive(scenario.send(FINAL_DAY, ids("A", 3)))
    scenario.send(OTHER_FINAL_DAY, ids("B", 4))  # the export has no table at all for this day (paused)
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)

    assert (result.verdict, result.exit_code) == ("export_unavailable", 6)
    assert read_csv(tmp_path / "out" / "missing.csv") == []
    dates = {d["event_date"]: d for d in result.to_dict()["dates"]}
    assert (dates[OTHER_FINAL_DAY]["export"], dates[OTHER_FINAL_DAY]["export_unavailable"]) == ("absent", 4)
    assert dates[FINAL_DAY]["export"] == "daily" and dates[FINAL_DAY]["found"] == 3
    assert "EXPORT NOT AVAILABLE" in result.summary_text() and f"events_{OTHER_FINAL_DAY}" in result.summary_text()
    report = json.loads((tmp_path / "out" / "reconciliation.json").read_text())
    assert (report["verdict"], report["exit_code"]) == ("export_unavailable", 6)


def test_a_capped_daily_table_cannot_judge_its_date(scenario: Scenario, tmp_path: Path) -> None:
    events = scenario.send(FINAL_DAY, ids("A", 5))
    scenario.arrive(events, drop=frozenset({"A-0000"}))
    config = scenario.build(daily_export_cap=4)  # the table holds 4 rows: at the (lowered) cap
    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert (result.verdict, result.exit_code) == ("export_unavailable", 6)
    assert result.to_dict()["dates"][0]["export"] == "capped"
    assert read_csv(tmp_path / "out" / "missing.csv") == []

    uncapped = reconcile(scenario.build(daily_export_cap=0), out_dir=tmp_path / "360", run_id="run-1", now=NOW)
    assert (uncapped.verdict, uncapped.exit_code) == ("not_reconciled", 3)


def test_intraday_table_gives_an_early_verdict(scenario: Scenario, tmp_path: Path) -> None:
    just_sent = (NOW - timedelta(hours=3)).isoformat()
    events = scenario.send(YOUNG_DAY, ids("Y", 3), sent_at=just_sent)
    config = scenario.build()
    store = tmp_path / "store"
    with (store / f"events_intraday_{YOUNG_DAY}.ndjson").open("a") as fh:
        for e in events[:2]:
            fh.write(json.dumps(export_row(e.transaction_id, YOUNG_DAY)) + "\n")
    live = site_row(NOW - timedelta(minutes=10))  # today's live traffic, streamed: the evidence
    (store / f"events_intraday_{live['event_date']}.ndjson").write_text(json.dumps(live) + "\n")
    result = reconcile(config, out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    assert (result.verdict, result.exit_code) == ("not_reconciled", 3)
    assert result.to_dict()["dates"][0]["export"] == "intraday"
    assert [m["transaction_id"] for m in read_csv(tmp_path / "out" / "missing.csv")] == ["Y-0002"]


def test_attribution_is_read_from_the_exports_traffic_source_fields(scenario: Scenario, tmp_path: Path) -> None:
    events = scenario.send(FINAL_DAY, ids("T", 2))
    scenario.arrive(events)
    scenario.exported[0]["session_traffic_source_last_click"] = {"cross_channel_campaign": {"source": "google"}}
    scenario.exported[1]["session_traffic_source_last_click"] = {"cross_channel_campaign": {"source": "(not set)"}}
    result = reconcile(scenario.build(), out_dir=tmp_path / "out", run_id="run-1", now=NOW)
    totals = result.to_dict()["totals"]
    assert (totals["session_attributed"], totals["session_attributed_share"]) == (1, 0.5)
    assert "found with a session source in the export: 50.0%" in result.summary_text()

    (tmp_path / "plain").mkdir()
    plain = Scenario(tmp_path / "plain")
    plain.arrive(plain.send(FINAL_DAY, ids("P", 2)))  # like the local collector: no traffic sources
    quiet = reconcile(plain.build(), out_dir=tmp_path / "plain-out", run_id="run-1", now=NOW)
    assert quiet.to_dict()["totals"]["session_attributed_share"] is None
