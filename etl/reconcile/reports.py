"""Writes every report file of a reconciliation into one folder.

Why these files: reconciliation.json for programs (and the notebook), CSVs for spreadsheets (one
per question: per date × event, missing, duplicates, extras, money per date × currency), the HTML
page for people. None holds
client ids, user ids or event bodies: only dates, event names, transaction ids, counts and run ids.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from etl.reconcile.html_report import render_html
from etl.reconcile.result import Reconciliation
from etl.safe_csv import write_csv

REPORT_FILES = {
    "json": "reconciliation.json",
    "csv": "reconciliation.csv",
    "missing": "missing.csv",
    "duplicates": "duplicates.csv",
    "extras": "extras.csv",
    "money": "money.csv",
    "html": "reconciliation.html",
}


def write_reports(result: Reconciliation, out_dir: Path) -> dict[str, str]:
    """Write all reports; returns kind → file name (relative to out_dir)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result.out_dir = out_dir
    result.files = dict(REPORT_FILES)
    write_csv(result.rows, out_dir / REPORT_FILES["csv"])
    write_csv(result.missing, out_dir / REPORT_FILES["missing"])
    write_csv(result.duplicates, out_dir / REPORT_FILES["duplicates"])
    write_csv(result.extras, out_dir / REPORT_FILES["extras"])
    write_csv(result.money, out_dir / REPORT_FILES["money"])
    (out_dir / REPORT_FILES["html"]).write_text(render_html(result), encoding="utf-8")
    (out_dir / REPORT_FILES["json"]).write_bytes(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2))
    return result.files
