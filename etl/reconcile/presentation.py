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
from etl.next_steps import command

SHARE_COLUMNS = frozenset({"ratio", "no_session_share", "missing_share", "share"})
MONEY_COLUMNS = frozenset({"sent_value", "found_value", "missing_value", "duplicate_value", "value"})
DATE_COLUMNS = frozenset({"event_date", "export_date", "date"})

# What to do about a verdict that no command fixes (the others get commands: reconcile_next_steps).
NEXT_STEPS = {
    "duplicated": "Nothing to resend: some of our events are in the export twice (duplicates.csv, with their value). "
                  "GA4's reports count a purchase once per transaction id and user; reports built on the export "
                  "should read jobs/sql/dedup_events_view.sql. Check why a late original arrived beside a resent copy.",
    "export_unavailable": "Wait for the export, or check the BigQuery link: the export has no table for these "
                          "dates yet, or a capped one (Admin → BigQuery links; the daily table lands within a day).",
}
NOTHING_TO_DO = "Nothing to do: every event sent was found in the export, and every date is final."


def reconcile_next_steps(result: Any, *, config_file: Path | str, out_dir: Path | str) -> list[str]:
    """What to do after this reconciliation, as commands with the real config, run ids and folders.

    "Nothing to do" only when every event arrived, every date is final, no row of these runs waits for
    Data Import and sessions are there: a deferred row or a date GA4 may still change is something to do.
    """
    t = result.totals
    steps: list[str] = []
    again = command("reconcile", "--config", config_file, *_selection_args(result.selection), "--out", out_dir)
    if not t.get("sent"):
        steps.append("Nothing was sent for this selection: check it names the run or dates you meant; "
                     f"{command('validate', '--config', config_file)} lists why rows were not sent.")
    events = result.missing
    missing = events[events["state"] == "missing"] if len(events) else events
    if len(missing):
        if t.get("found", 0) == 0 and not len(result.pending_dates):
            steps.append("Nothing at all arrived: check the API secret and measurement id first (Google answers "
                         f"2xx even for a wrong secret): {command('check', '--config', config_file)} sends a marked "
                         "canary and waits for it in the export.")
        for run_id, group in missing.groupby("sent_run_id", sort=True):
            resendable = int(group["resendable"].astype(bool).sum())
            late = len(group) - resendable
            resend = command("resend", "--config", config_file, "--run-id", run_id,
                             "--out", Path(out_dir).parent / f"resend-{run_id}")
            if resendable:
                left = group.loc[group["resendable"].astype(bool), "resend_window_left_h"].astype(float).min()
                steps.append(f"Resend the {resendable:,} missing events of run {run_id} while GA4's window allows "
                             f"({left:.0f} h left for the most urgent): {resend}")
            if late:
                steps.append(f"{late:,} missing events of run {run_id} are past GA4's 72 h window: {resend} defers "
                             "them and lists them in resend_deferred.csv; then "
                             f"{command('deferred', '--config', config_file, '--out', 'deferred-import.csv')} "
                             "writes them for GA4 Data Import.")
    if t.get("not_yet_arrived"):
        steps.append(f"{t['not_yet_arrived']:,} events have not arrived yet and the export cannot tell yet: reconcile "
                     f"again once it shows hits received after {t.get('evidence_expected_after')} (live traffic, "
                     f"or the next daily table): {again}")
    pending = result.pending_dates
    if len(pending):
        days = ", ".join(fmt_date(d) for d in pending["event_date"].head(5)) + (" …" if len(pending) > 5 else "")
        steps.append(f"Provisional dates ({days}): GA4 may still add events until "
                     f"{str(pending['final_at'].max()).replace('T', ' ')}; reconcile again then: {again}")
    if result.verdict in NEXT_STEPS:
        steps.append(NEXT_STEPS[result.verdict])
    deferred = result.not_sent.get("deferred", 0)
    if deferred:
        runs = ", ".join(result.not_sent.get("deferred_runs", [])[:3])
        steps.append(f"{deferred:,} events of run {runs} are older than GA4's 72 h window and were never sent: "
                     "upload each run's deferred.csv in GA4 (Admin → Data Import → offline event data), or "
                     f"{command('deferred', '--config', config_file, '--out', 'deferred-import.csv')} writes every "
                     "deferred event not yet exported, once.")
    rejected = result.not_sent.get("rejected", 0)
    if rejected:
        top = (result.not_sent.get("reject_reasons") or [None])[0]
        most = f" (most common: {top['code']} {top['reason']}, {top['rows']:,} rows)" if top else ""
        steps.append(f"{rejected:,} rows of these runs were rejected as bad data{most}: fixed at the source, the next "
                     "run sends them (each run's rejects.ndjson lists every row and reason).")
    share = t.get("no_session_share")
    if share is not None and share >= 1.0:
        steps.append("Every event found lacks a session id (ga_session_id): GA4 attributes none of them to a "
                     "campaign. Map session_id in [sources.columns] to the column holding the _ga_<ID> cookie.")
    elif share:
        steps.append(f"{fmt_share(share)} of the events found have no session id: GA4 attributes those to no campaign.")
    if not steps:
        steps.append(NOTHING_TO_DO)
    return steps


def _selection_args(selection: dict[str, Any]) -> list[str]:
    args = []
    for key in ("run_id", "since", "until"):
        if selection.get(key):
            args += [f"--{key.replace('_', '-')}", str(selection[key])]
    return args


def not_sent_of_runs(runs: dict[str, dict[str, Any]], limit: int = 10) -> dict[str, Any]:
    """What the runs behind the reconciled events did not send, from their summaries: rejected (bad data) and
    filtered (not conversions) rows with their top reasons, and the deferred events (for Data Import)."""
    rejects: Counter[tuple[str, str, str]] = Counter()
    filters: Counter[tuple[str, str, str]] = Counter()
    out: dict[str, Any] = {"runs": sorted(runs), "rows_in": 0, "rejected": 0, "filtered": 0, "deferred": 0,
                           "deferred_runs": []}
    for run_id, summary in sorted(runs.items()):
        if summary.get("mode", "send") != "send":
            continue
        out["rows_in"] += int(summary.get("rows_in", 0))
        out["rejected"] += int(summary.get("rejected", 0)) + int(summary.get("rejected_at_send", 0))
        out["filtered"] += int(summary.get("filtered", 0))
        deferred = int(summary.get("deferred", 0)) + int(summary.get("expired", 0))
        out["deferred"] += deferred
        if deferred:
            out["deferred_runs"].append(run_id)
        for name, source in (summary.get("sources") or {}).items():
            for r in source.get("reject_reasons") or []:
                rejects[(name, r["code"], r["reason"])] += int(r["rows"])
            for r in source.get("filtered_reasons") or []:
                filters[(name, r["code"], r["reason"])] += int(r["rows"])
    out["reject_reasons"] = [{"source": s, "code": c, "reason": d, "rows": n} for (s, c, d), n in rejects.most_common(limit)]
    out["filtered_reasons"] = [{"source": s, "code": c, "reason": d, "rows": n}
                               for (s, c, d), n in filters.most_common(limit)]
    return out


def reasons_frame(not_sent: dict[str, Any], key: str) -> pd.DataFrame:
    """`not_sent`'s reject_reasons or filtered_reasons as a table (source, code, reason, rows)."""
    return pd.DataFrame(not_sent.get(key) or [], columns=["source", "code", "reason", "rows"])


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
