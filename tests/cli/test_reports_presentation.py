"""The HTML report and the notebook read like an analyst's page: formatted values, highlights, a next step."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime

import nbformat

from etl.reconcile import reconcile
from tests.cli.common import NOW, crm_config
from tests.reconcile.builders import Scenario, ids
from tests.support import NOTEBOOK, run_notebook


def _rows(page: str, cls: str) -> list[str]:
    return re.findall(rf'<tr class="{cls}">(.*?)</tr>', page)


def test_html_formats_values_highlights_dates_and_says_what_to_do(tmp_path):
    s = Scenario(tmp_path)
    s.arrive(s.send("20261115", ids("A", 7)), drop=frozenset({"A-0002", "A-0005", "A-0006"}))  # 4 of 7: 57.1 %
    # Sent half an hour before the reconcile: inside the arrival grace, so not yet arrived (provisional).
    s.arrive(s.send("20261121", ids("Y", 3), sent_at="2026-11-23T11:30:00+00:00"),
             drop=frozenset({"Y-0001", "Y-0002", "Y-0003"}))
    reconcile(s.build(), out_dir=tmp_path / "out", run_id="run-1", now=datetime(2026, 11, 23, 12, tzinfo=UTC))
    page = (tmp_path / "out" / "reconciliation.html").read_text(encoding="utf-8")
    tables = page[page.index("<h2>Per date</h2>"):]
    # What to do next is a command with the real config and run id (here: past the window, so resend defers).
    config = html.escape(str(tmp_path / "mpetl.toml"))
    assert f"mpetl resend --config {config} --run-id run-1" in page and 'id="next-step"' in page
    assert not re.search(r">\s*(True|False|0\.\d{4,}|2026112\d|2026111\d)\s*<", tables)  # no raw formats
    failed, provisional = _rows(tables, "failed"), _rows(tables, "provisional")
    assert failed and all("2026-11-15" in r for r in failed)
    assert provisional and all("2026-11-21" in r for r in provisional)
    assert any("42.9 %" in r for r in failed)  # 3 of 7 missing
    assert any(">provisional<" in r or "(provisional)" in r for r in provisional)
    assert "57.1 %" in tables  # found/sent on the failed date, as a percentage


def test_html_next_step_when_everything_arrived_or_nothing_was_sent(tmp_path):
    (tmp_path / "ok").mkdir()
    (tmp_path / "empty").mkdir()
    ok = Scenario(tmp_path / "ok")
    ok.arrive(ok.send("20261115", ids("A", 2)))
    reconcile(ok.build(), out_dir=tmp_path / "ok" / "out", run_id="run-1", now=datetime(2026, 11, 23, 12, tzinfo=UTC))
    assert "Nothing to do" in (tmp_path / "ok" / "out" / "reconciliation.html").read_text()
    empty = Scenario(tmp_path / "empty")
    empty.send("20261115", ["P-1"], status="planned", sent_run_id=None)  # run-1 planned, sent nothing
    reconcile(empty.build(), out_dir=tmp_path / "empty" / "out", run_id="run-1", now=datetime(2026, 11, 23, 12, tzinfo=UTC))
    assert "Nothing was sent for this selection" in (tmp_path / "empty" / "out" / "reconciliation.html").read_text()


def test_notebook_shows_the_run_summary_top_reasons_and_next_step(run_mpetl, tmp_path):
    deals = ("cookie,closed,deal,amount,cur,Stage\n"
             "GA1.1.111.222,2026-11-20 10:00:00,D1,10,EUR,Won\n"
             "not-a-cookie,2026-11-20 11:00:00,D2,12.5,EUR,Won\n"
             "GA1.1.111.224,2026-11-20 12:00:00,D3,10,EUR,Lost\n"
             "GA1.1.111.225,2026-11-20 12:00:00,D4,10,EUR,Lost\n")
    config = crm_config(tmp_path, deals=deals, extra_sources='[sources.filter]\nStage = "Won"\n')
    root = tmp_path / "report"
    assert run_mpetl("-q", "run", "--config", str(config), "--out", str(root / "run"), "--now", NOW).returncode == 0
    rec = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(root / "reconcile"),
                "--since", "2026-11-20", "--until", "2026-11-20", "--now", NOW)
    assert rec.returncode == 0, rec.stdout + rec.stderr

    # The HTML report lists the run's top reject and filter reasons (from the summary the run left in the ledger).
    page = html.unescape((root / "reconcile" / "reconciliation.html").read_text(encoding="utf-8"))
    rejects = page[page.index("Top reject reasons (1 rows)"):page.index("Top filter reasons")]
    assert "VALUE_INVALID" in rejects and "column 'cookie' holds neither a _ga cookie" in rejects
    filters = page[page.index("Top filter reasons (2 rows)"):page.index("<h2>Per date and event</h2>")]
    assert "FILTERED" in filters and "column 'Stage' is not one of the allowed values" in filters

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and 'RUN_DIR = "out/samples/reconcile"' in params[0].source
    out = run_notebook(tmp_path, RUN_DIR=str(root / "reconcile"))  # papermill, as `papermill … -p RUN_DIR …`
    steps = out[out.index("What to do next:"):]
    # Not "Nothing to do": a row was rejected, and the one event sent carries no session id.
    assert "Nothing to do" not in out
    assert "1 rows of these runs were rejected as bad data (most common: VALUE_INVALID column 'cookie'" in steps
    assert "Every event found lacks a session id" in steps
    assert "3 of 4 rows were not sent by this run (2 filtered, 1 rejected" in out
    assert "column 'Stage' is not one of the allowed values" in out and "holds neither a _ga cookie" in out
    assert "filtered" in out and "2026-11-20" in out
    assert "20261120" not in out.replace("events_20261120", "")
    assert not re.search(r"\b\d+\.0\b(?! ?%)", out.split("top reject reasons")[0])  # counts print as integers


def test_deferred_rows_and_missing_sessions_are_never_nothing_to_do(run_mpetl, tmp_path):
    """D1 arrives (the date is final: provisional_hours = 0), D9 is ten days old: deferred for Data Import."""
    deals = ("cookie,closed,deal,amount,cur,Stage\n"
             "GA1.1.111.222,2026-11-20 10:00:00,D1,10,EUR,Won\n"
             "GA1.1.111.229,2026-11-10 10:00:00,D9,99,EUR,Won\n")
    config = crm_config(tmp_path, deals=deals)
    run = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "run"), "--now", NOW)
    assert run.returncode == 0, run.stderr
    line = json.loads(run.stdout.splitlines()[-1])
    assert (line["sent"], line["deferred"]) == (1, 1)
    run_steps = " ".join(line["next_steps"])
    assert f"upload {tmp_path / 'run' / 'deferred.csv'} in GA4 (Admin → Data Import" in run_steps
    assert f"mpetl deferred --config {config.resolve()} --out deferred-import.csv" in run_steps
    assert f"mpetl reconcile --config {config.resolve()} --run-id {line['run_id']}" in run_steps

    rec = run_mpetl("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"),
                    "--since", "2026-11-20", "--until", "2026-11-20", "--now", NOW)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    report = json.loads((tmp_path / "rec" / "reconciliation.json").read_bytes())
    assert report["verdict"] == "reconciled" and report["totals"]["dates_final"] == 1
    steps = " ".join(report["next_steps"])
    assert "Nothing to do" not in steps and "Nothing to do" not in rec.stdout
    assert f"1 events of run {line['run_id']} are older than GA4's 72 h window" in steps
    assert "Every event found lacks a session id" in steps
    assert report["not_sent"]["deferred"] == 1 and report["not_sent"]["runs"] == [line["run_id"]]
