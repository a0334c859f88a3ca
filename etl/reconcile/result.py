"""The outcome of one reconciliation: verdict, exit code, the frames behind the reports.

Why a verdict with three values: a shortfall on a day GA4 is still processing is news, not a
failure; only a shortfall beyond the tolerance on a final day should turn a scheduler red (exit 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from etl.errors import EXIT_NOT_RECONCILED, EXIT_OK

RECONCILED = "reconciled"
NOT_RECONCILED = "not_reconciled"
PROVISIONAL = "provisional"

LIST_LIMIT = 10_000  # entries per list in reconciliation.json; the CSVs always hold all of them

VERDICT_HEADLINES = {
    RECONCILED: "Reconciled: every event sent was found in the export.",
    PROVISIONAL: "Provisional: differences only on dates the export may still complete.",
    NOT_RECONCILED: "Not reconciled: events sent for final dates are missing from the export.",
}


# A run that had nothing to send must not turn a scheduler red, but must not claim success either.
NOTHING_SENT_HEADLINE = "Nothing to reconcile: no sent events matched this selection."


def decide_verdict(dates: pd.DataFrame) -> str:
    """not_reconciled when a final date fails; provisional when only young dates differ."""
    if bool(dates["failed"].any()):
        return NOT_RECONCILED
    if bool((dates["mismatch"] & (dates["status"] == "provisional")).any()):
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
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_NOT_RECONCILED if self.verdict == NOT_RECONCILED else EXIT_OK

    @property
    def headline(self) -> str:
        if not self.totals.get("sent"):
            return NOTHING_SENT_HEADLINE
        return VERDICT_HEADLINES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "headline": self.headline,
            "exit_code": self.exit_code,
            "run_id": self.run_id,
            "selection": self.selection,
            "settings": self.settings,
            "generated_at": self.generated_at,
            "totals": self.totals,
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
            f"run: {self.run_id or '-'}   dates: {len(self.dates)} "
            f"({t.get('dates_final', 0)} final, {t.get('dates_provisional', 0)} provisional)",
            f"sent {t['sent']}, found {t['found']}, missing {t['missing']}, "
            f"duplicate ids {t['duplicate_ids']}, ids from other senders {t['extra_ids']}",
        ]
        if t.get("no_session_share") is not None:
            lines.append(f"found without session attribution: {t['no_session_share']:.1%}")
        for row in self.dates.itertuples(index=False):
            if row.mismatch:
                state = "FAILED" if row.failed else "provisional"
                lines.append(f"  {row.event_date} ({state}): {row.missing} of {row.sent} missing")
        if self.out_dir is not None:
            lines.append(f"reports: {self.out_dir}")
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
