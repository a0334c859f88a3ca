"""The outcome of one reconciliation: verdict, exit code, the frames behind the reports.

Why these verdicts: events not yet in the export are news, not a failure (provisional, exit 0);
events judged missing beyond the tolerance turn a scheduler red (exit 3) while the 72 h window may
still allow `mpetl resend`; so do our events held twice in the export (duplicated, exit 3: a late
original beside its resent copy doubles the export's revenue, however clean the ids look); a date
the export cannot judge (no table, or a capped one) is "export not available" (exit 6), because a
list of missing events would be a lie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from etl.errors import EXIT_EXPORT_UNAVAILABLE, EXIT_NOT_RECONCILED, EXIT_OK

RECONCILED = "reconciled"
NOT_RECONCILED = "not_reconciled"
PROVISIONAL = "provisional"
EXPORT_UNAVAILABLE = "export_unavailable"
DUPLICATED = "duplicated"

LIST_LIMIT = 10_000  # entries per list in reconciliation.json; the CSVs always hold all of them

VERDICT_HEADLINES = {
    RECONCILED: "Reconciled: every event sent was found in the export.",
    PROVISIONAL: "Provisional: some events have not arrived yet; the export may still bring them.",
    NOT_RECONCILED: "Not reconciled: events sent are missing from the export (only our marked events count).",
    EXPORT_UNAVAILABLE: "Export not available: the export cannot judge some dates (absent, paused or capped).",
    DUPLICATED: "Duplicated: some of our events are in the export more than once (copies counted with their value).",
}


# A run that had nothing to send must not turn a scheduler red, but must not claim success either.
NOTHING_SENT_HEADLINE = "Nothing to reconcile: no sent events matched this selection."
# Every event found, but GA4 may still change a date until it is final: not a green "reconciled" yet.
ARRIVED_SO_FAR_HEADLINE = ("Arrived so far: every event sent was found, but {n} of {total} dates are still provisional "
                           "(final from {final}); reconcile again then.")


def decide_verdict(dates: pd.DataFrame) -> str:
    """not_reconciled when events judged missing exceed the tolerance on a date the export covers;
    else duplicated when our copies exceed it; else export_unavailable when a date with events to
    judge could not be judged; provisional while events may still arrive.
    """
    if bool(dates["failed"].any()):
        return NOT_RECONCILED
    if "duplicated" in dates and bool(dates["duplicated"].any()):
        return DUPLICATED
    if "export" in dates and bool(((~dates["export_available"]) & (dates["export_unavailable"] > 0)).any()):
        return EXPORT_UNAVAILABLE
    if bool(dates["mismatch"].any()):
        return PROVISIONAL
    return RECONCILED


@dataclass
class Reconciliation:
    """What `reconcile()` returns; `.to_dict()` is exactly what reconciliation.json holds."""

    verdict: str
    run_id: str | None
    selection: dict[str, Any]
    settings: dict[str, Any]
    generated_at: str
    dates: pd.DataFrame
    rows: pd.DataFrame
    missing: pd.DataFrame
    duplicates: pd.DataFrame
    extras: pd.DataFrame
    totals: dict[str, Any]
    events: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per sent event: state, window (not a report)
    money: pd.DataFrame = field(default_factory=pd.DataFrame)  # per event_date × currency (money.py)
    money_totals: dict[str, dict[str, float]] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    # Why rows behind these events were not sent, from the summaries their runs recorded (presentation.py).
    not_sent: dict[str, Any] = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)  # commands to paste (presentation.reconcile_next_steps)
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.verdict in (NOT_RECONCILED, DUPLICATED):
            return EXIT_NOT_RECONCILED
        if self.verdict == EXPORT_UNAVAILABLE:
            return EXIT_EXPORT_UNAVAILABLE
        return EXIT_OK

    @property
    def pending_dates(self) -> pd.DataFrame:
        """The dates still provisional (GA4 may still add or drop events for them)."""
        if not len(self.dates) or "status" not in self.dates:
            return self.dates
        return self.dates[self.dates["status"] == "provisional"]

    @property
    def tone(self) -> str:
        """How the headline is coloured: green (`reconciled`) only when every date is final; `pending`
        (neutral) while an all-arrived selection still has provisional dates or nothing was sent."""
        if not self.totals.get("sent"):
            return "pending"
        if self.verdict == RECONCILED and len(self.pending_dates):
            return "pending"
        return self.verdict

    @property
    def headline(self) -> str:
        if not self.totals.get("sent"):
            return NOTHING_SENT_HEADLINE
        pending = self.pending_dates
        if self.verdict == RECONCILED and len(pending):
            return ARRIVED_SO_FAR_HEADLINE.format(n=len(pending), total=len(self.dates),
                                                  final=str(pending["final_at"].max()).replace("T", " "))
        return VERDICT_HEADLINES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "headline": self.headline,
            "next_steps": self.next_steps,
            "exit_code": self.exit_code,
            "run_id": self.run_id,
            "selection": self.selection,
            "settings": self.settings,
            "generated_at": self.generated_at,
            "totals": self.totals,
            "evidence": self.evidence,
            "money": {"rows": _records(self.money), "totals": self.money_totals},
            "not_sent": self.not_sent,
            "dates": _records(self.dates),
            "rows": _records(self.rows),
            "missing": _records(self.missing.head(LIST_LIMIT)),
            "missing_truncated": len(self.missing) > LIST_LIMIT,
            "duplicates": _records(self.duplicates.head(LIST_LIMIT)),
            "duplicates_truncated": len(self.duplicates) > LIST_LIMIT,
            "extras": _records(self.extras.head(LIST_LIMIT)),
            "extras_truncated": len(self.extras) > LIST_LIMIT,
            "files": self.files,
        }

    def summary_text(self) -> str:
        """A few lines for the terminal: verdict, totals, the dates that matter, where the reports are."""
        t = self.totals
        lines = [
            f"{self.verdict.upper()} (exit {self.exit_code}) — {self.headline}",
            f"run: {self.run_id or 'every run with events on these dates'}   dates: {len(self.dates)} "
            f"({t.get('dates_final', 0)} final, {t.get('dates_provisional', 0)} provisional)",
            f"sent {t['sent']}, arrived {t.get('arrived', t['found'])}, not yet arrived {t.get('not_yet_arrived', 0)}, "
            f"missing {t['missing']}, export not available {t.get('export_unavailable', 0)}, "
            f"excluded from the export {t.get('excluded_from_export', 0)}",
            f"duplicate ids {t['duplicate_ids']} ({t.get('duplicate_copies', 0)} copies, "
            f"{t.get('resend_copies', 0)} of our rows carry the resend marker), ids from other senders "
            f"{t['extra_ids']}, our ids seen only from another sender {t.get('seen_from_other_sender', 0)}",
        ]
        for currency, m in self.money_totals.items():
            lines.append(f"money {currency}: sent {m['sent_value']:,.2f}, found {m['found_value']:,.2f}, "
                         f"missing {m['missing_value']:,.2f}, duplicate {m['duplicate_value']:,.2f}")
        if self.evidence:
            lines.append(f"export watermark: {self.evidence.get('watermark') or 'none'} "
                         f"({self.evidence.get('from')}); judges events sent before "
                         f"{self.evidence.get('judges_events_sent_before') or '-'}")
        if t.get("not_yet_arrived"):
            lines.append(f"not yet arrived: {t['not_yet_arrived']} — they can be judged once the export shows hits "
                         f"received after {t.get('evidence_expected_after')} (live traffic, the canary of "
                         "`mpetl check`, or the next daily table once its day ends); resend leaves them alone")
        if t.get("missing") or t.get("not_yet_arrived"):
            left = t.get("resend_window_left_h_min")
            window = f", {left:g} h left for the most urgent" if left is not None else ""
            lines.append(
                f"resend window (wall clock): {t.get('resendable', 0)} can still be resent{window}; "
                f"{t.get('not_resendable', 0)} are past it"
            )
        if t.get("no_session_share") is not None:
            lines.append(f"found without a session id (ga_session_id): {t['no_session_share']:.1%}")
        if t.get("session_attributed_share") is not None:
            lines.append(f"found with a session source in the export: {t['session_attributed_share']:.1%}")
        if t.get("with_geo_share") is not None:
            lines.append(f"found with a country in the export (geo.country): {t['with_geo_share']:.1%}")
        provisional = self.dates[self.dates["status"] == "provisional"] if len(self.dates) else self.dates
        if len(provisional):
            shown = ", ".join(f"{d[:4]}-{d[4:6]}-{d[6:]} (final from {f})" for d, f in
                              zip(provisional["event_date"].head(5), provisional["final_at"].head(5), strict=True))
            lines.append(f"provisional dates: {shown}" + (" …" if len(provisional) > 5 else ""))
        for row in self.dates.itertuples(index=False):
            if "export" in self.dates and not row.export_available:
                lines.append(f"  {row.event_date} (EXPORT NOT AVAILABLE): {row.export_reason}")
            elif row.mismatch or row.failed or row.duplicated:
                state = "FAILED" if row.failed else ("DUPLICATED" if row.duplicated else "provisional")
                lines.append(
                    f"  {row.event_date} ({state}): {row.missing} missing, {row.not_yet_arrived} not yet arrived, "
                    f"{row.duplicate_copies} copies, of {row.sent} sent"
                )
        if self.out_dir is not None:
            lines.append(f"reports: {self.out_dir}")
        if self.next_steps:
            lines.append("What to do next:")
            lines.extend(f"  - {step}" for step in self.next_steps)
        return "\n".join(lines)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: numpy scalars as Python values, NA/NaN as null."""
    records = frame.astype(object).to_dict(orient="records")
    return [{k: _plain(v) for k, v in r.items()} for r in records]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
