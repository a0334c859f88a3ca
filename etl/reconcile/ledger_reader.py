"""Reads what the ledger says was sent, read-only, through the ledger's interface (no SQL here).

Why read-only: reconciliation may run while a send holds the ledger, and it must never be able to
change the state it is checking. Only non-personal columns are read: no client id, user id or event
body reaches a report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from etl.errors import LedgerError
from etl.load import Ledger, open_ledger
from etl.reconcile.errors import LedgerUnavailableError, ReconcileError

SENT_COLUMNS = (
    "event_key",
    "event_date",
    "event_name",
    "transaction_id",
    "source",
    "run_id",
    "sent_run_id",
    "timestamp_micros",
    "sent_at_micros",
    "possible_duplicate",
    "resent",
    "value",
    "currency",
)
"""What reconcile uses of `Ledger.for_reconcile`: `event_key` names an event for `mpetl resend`;
`run_id` planned it (and wrote its `mpetl_run` marker), `sent_run_id` delivered it (both prove it);
`sent_at_micros` starts the arrival grace; `timestamp_micros` (the event time sent) ends its 72 h window and
matches an event without a transaction id; `value`/`currency` (from the params sent) are its money."""


@dataclass(frozen=True)
class SentSelection:
    """The sent events chosen for reconciliation, and which run that choice resolved to."""

    events: pd.DataFrame
    run_id: str | None


def open_ledger_for_reconcile(path: Path | str) -> Ledger:
    """Open the ledger read-only; a missing file is an error, not a new empty ledger."""
    try:
        return open_ledger(path, read_only=True)
    except LedgerError as exc:
        raise LedgerUnavailableError(str(exc)) from None


def read_sent(ledger: Ledger, *, run_id: str | None, since: date | None, until: date | None) -> SentSelection:
    """Sent events of `run_id` (produced or delivered by it) and/or of event dates in [since, until].

    With neither a run nor dates, the run that delivered the most recent sent event is chosen, so a
    bare `mpetl reconcile` checks the last send instead of the whole history.
    """
    if run_id is not None and run_id not in set(ledger.run_ids()):
        # A typo must not read as "nothing to reconcile" (exit 0): it is bad input.
        raise ReconcileError(f"--run-id {run_id[:80]!r}: no such run in the ledger (a run's summary.json names its run_id)")
    frame = ledger.for_reconcile(run_id=run_id, since=_yyyymmdd(since), until=_yyyymmdd(until))
    if run_id is None and since is None and until is None and len(frame):
        run_id = str(frame["sent_run_id"].dropna().iloc[0])
    return SentSelection(events=frame, run_id=run_id)


def known_keys(ledger: Ledger, keys: pd.DataFrame) -> pd.DataFrame:
    """Which (event_name, transaction_id) pairs the ledger holds in any status."""
    return ledger.known_keys(keys["transaction_id"].dropna().unique().tolist())


def _yyyymmdd(day: date | None) -> str | None:
    return day.strftime("%Y%m%d") if day is not None else None
