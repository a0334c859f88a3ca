"""How reconciliation and run results read for an analyst: formats, highlights and the next step.

Why one module for the HTML page and the notebook: both answer the same questions ("did it arrive?",
"why were 14 of my 30 rows not sent?", "what do I do now?") and must say the same thing the same way:
dates as 2026-11-27 (not 20261127), shares as 57.1 % (not 0.571429), counts as integers, yes/no
rather than True/False, and a provisional day as "provisional" rather than a 0 % that looks like a loss.
Nothing here computes a verdict; it only presents what `etl.reconcile` decided.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from etl.accounting import Buckets

SHARE_COLUMNS = frozenset({"ratio", "no_session_share", "missing_share", "share"})
MONEY_COLUMNS = frozenset({"sent_value", "found_value", "missing_value", "duplicate_value", "value"})
DATE_COLUMNS = frozenset({"event_date", "export_date", "date"})

# One line per verdict: what a person should do next. Unknown verdicts fall back to the headline.
NEXT_STEPS = {
    "reconciled": "Nothing to do: every event sent was found in the export.",
    "arrived": "Nothing to do: every event sent was found in the export.",
    "provisional": "Wait for the export: GA4 may still add events for the provisional dates (up to 72 h after "
                   "each day ends). Run `mpetl reconcile` again after that; only final dates can fail.",
    "not_reconciled": "Resend what is missing: open missing.csv. If nothing at all arrived, check the API secret "
                      "and measurement id first (Google answers 2xx even for a wrong secret), then run "
                      "`mpetl validate --debug-endpoint`; if only some are missing, re-run `mpetl run` for those dates.",
    "missing": "Resend what is missing: open missing.csv. If nothing at all arrived, check the API secret and "
               "measurement id first (Google answers 2xx even for a wrong secret), then run "
               "`mpetl validate --debug-endpoint`; if only some are missing, re-run `mpetl run` for those dates.",
    "duplicated": "Nothing to resend: some of our events are in the export twice (duplicates.csv, with their value). "
                  "GA4's reports count a purchase once per transaction id and user; reports built on the export "
                  "should read jobs/sql/dedup_events_view.sql. Check why a late original arrived beside a resent copy.",
    "export_not_available": "Wait for the export, or check the BigQuery link: the export has no table for these "
                            "dates yet (Admin → BigQuery links; the daily table lands within a day).",
    "nothing_sent": "Fix the mapping: nothing was sent for this selection. Run `mpetl validate --config …` and "
                    "read the reject reasons; `mpetl sources --config …` shows how columns were mapped.",
}


def next_step(verdict: str, totals: dict[str, Any] | None = None) -> str:
    """What to do next, in one line, for this verdict (and "nothing was sent" whatever the verdict)."""
    if totals is not None and not totals.get("sent"):
        return NEXT_STEPS["nothing_sent"]
    return NEXT_STEPS.get(str(verdict), "Read the headline above and the CSVs next to this report.")


def fmt_date(value: Any) -> str:
    """20261127 → 2026-11-27; anything else unchanged."""
    text = "" if value is None or value is pd.NA else str(value)
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def fmt_share(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "–"
    return f"{float(value) * 100:.1f} %"


def fmt_money(value: Any) -> str:
    """12345.5 → 12,345.50 (two decimals; more only when the amount has them)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    amount = float(value)
    text = f"{amount:,.2f}"
    return text if round(amount, 2) == amount else f"{amount:,.6f}".rstrip("0")


def fmt_count(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and float(value).is_integer():
        return f"{int(value):,}"
    return str(value)


def present(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as text a person reads; on provisional rows a share reads "provisional", not a number."""
    out = pd.DataFrame(index=frame.index)
    provisional = frame["status"].eq("provisional") if "status" in frame else pd.Series(False, index=frame.index)
    for column in frame.columns:
        values = frame[column]
        if column in DATE_COLUMNS:
            out[column] = values.map(fmt_date)
        elif column in SHARE_COLUMNS:
            shown = values.map(fmt_share)
            out[column] = shown.where(~provisional, shown.map(lambda s: "provisional" if s == "–" else f"{s} (provisional)"))
        elif column in MONEY_COLUMNS:
            out[column] = values.map(fmt_money)
        elif values.dtype == bool or column in ("mismatch", "failed", "possible_duplicate", "duplicated", "failed_value"):
            out[column] = values.map(lambda v: "yes" if bool(v) and v is not pd.NA else "no")
        elif pd.api.types.is_numeric_dtype(values):
            out[column] = values.map(fmt_count)
        else:
            out[column] = values.map(lambda v: "" if v is None or v is pd.NA else str(v))
    return out


def row_classes(frame: pd.DataFrame) -> list[str]:
    """'failed' / 'provisional' / '' per row, for highlighting."""
    classes = []
    for _, row in frame.iterrows():
        if bool(row.get("failed", False)) or bool(row.get("duplicated", False)):
            classes.append("failed")
        elif row.get("status") == "provisional":
            classes.append("provisional")
        else:
            classes.append("")
    return classes


def run_summary(summary: dict[str, Any]) -> pd.DataFrame:
    """Per source and in total: rows in and where they went, one column per bucket that holds rows
    (a dry run says would_send)."""
    label = "sent" if summary.get("mode", "send") == "send" else "would_send"
    totals = Buckets.from_summary(summary, where="summary.json")
    columns = ("rows_in", *(b for b in Buckets.NAMES if b in Buckets.ALWAYS_SHOWN or getattr(totals, b)))
    rows = [{"source": name, **{(label if c == "sent" else c): s.get(c, 0) for c in columns}}
            for name, s in summary.get("sources", {}).items()]
    total = {"source": "TOTAL", **{(label if c == "sent" else c): summary.get(c, 0) for c in columns}}
    return pd.DataFrame([*rows, total])


def filtered_reasons(summary: dict[str, Any]) -> pd.DataFrame:
    """Why rows were filtered (source, code, reason, rows): not errors, so not in rejects.ndjson."""
    return pd.DataFrame([{"source": name, **f} for name, s in summary.get("sources", {}).items()
                         for f in s.get("filtered_reasons", [])], columns=["source", "code", "reason", "rows"])


def top_reject_reasons(rejects: Path, limit: int = 10) -> pd.DataFrame:
    """The most common reject reasons (source, code, reason, rows), streamed from rejects.ndjson."""
    counts: Counter[tuple[str, str, str]] = Counter()
    if rejects.exists():
        with rejects.open("rb") as lines:
            for line in lines:
                record = orjson.loads(line)
                for reason in record["reasons"]:
                    counts[(record["source"], reason["validationCode"], reason["description"])] += 1
    return pd.DataFrame([{"source": s, "code": c, "reason": d, "rows": n} for (s, c, d), n in counts.most_common(limit)],
                        columns=["source", "code", "reason", "rows"])
