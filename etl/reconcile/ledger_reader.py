"""Reads what the ledger says was sent, read-only.

Why read-only (`mode=ro` URI): reconciliation may run while a send holds the ledger, and it must
never be able to change the state it is checking. Only non-personal columns are read: no client
id, user id or event body reaches a report.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from etl.reconcile.errors import LedgerUnavailableError

SENT_COLUMNS = (
    "event_key",
    "event_date",
    "event_name",
    "transaction_id",
    "source",
    "run_id",
    "sent_run_id",
    "sent_at",
    "timestamp_micros",
    "possible_duplicate",
)
"""What reconcile reads of each sent event (the ledger interface's `for_reconcile` must give these):
`event_key` names it for `mpetl resend`, `run_id` planned it (and wrote its `mpetl_run` marker), `sent_run_id` delivered it, `sent_at` (ISO-8601
UTC) starts the arrival grace, `timestamp_micros` (the event time sent to GA) ends the 72 h window."""
_STRING_COLUMNS = ("event_key", "event_date", "event_name", "transaction_id", "source", "run_id", "sent_run_id", "sent_at")
_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class SentSelection:
    """The sent events chosen for reconciliation, and which run that choice resolved to."""

    events: pd.DataFrame
    run_id: str | None


def open_ledger(path: Path) -> sqlite3.Connection:
    """Open the ledger read-only; a missing file is an error, not a new empty ledger."""
    path = Path(path)
    if not path.is_file():
        raise LedgerUnavailableError(f"{path}: ledger not found ([ledger] path)")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        con.execute("SELECT event_key, status, sent_run_id FROM events LIMIT 0")
    except sqlite3.Error as exc:
        raise LedgerUnavailableError(f"{path}: not a readable mpetl ledger ({exc})") from None
    return con


def read_sent(con: sqlite3.Connection, *, run_id: str | None, since: date | None, until: date | None) -> SentSelection:
    """Sent events of `run_id` (produced or delivered by it) and/or of event dates in [since, until].

    With neither a run nor dates, the run that delivered the most recent sent event is chosen, so a
    bare `mpetl reconcile` checks the last send instead of the whole history.
    """
    if run_id is None and since is None and until is None:
        row = con.execute(
            "SELECT sent_run_id FROM events WHERE status = 'sent' AND sent_run_id IS NOT NULL "
            "ORDER BY sent_at DESC, sent_run_id DESC LIMIT 1"
        ).fetchone()
        run_id = row[0] if row else None
    sql = (
        f"SELECT {', '.join(SENT_COLUMNS)} FROM events WHERE status = 'sent' "
        "AND (:run_id IS NULL OR run_id = :run_id OR sent_run_id = :run_id) "
        "AND (:since IS NULL OR event_date >= :since) AND (:until IS NULL OR event_date <= :until)"
    )
    params = {"run_id": run_id, "since": _yyyymmdd(since), "until": _yyyymmdd(until)}
    try:
        frame = pd.read_sql_query(sql, con, params=params)
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise LedgerUnavailableError(f"ledger table events: cannot read sent events ({exc})") from None
    for column in _STRING_COLUMNS:
        frame[column] = frame[column].astype("string")
    frame["timestamp_micros"] = pd.to_numeric(frame["timestamp_micros"], errors="coerce").astype("Int64")
    frame["possible_duplicate"] = pd.to_numeric(frame["possible_duplicate"], errors="coerce").fillna(0).astype(bool)
    return SentSelection(events=frame, run_id=run_id)


def known_keys(con: sqlite3.Connection, keys: pd.DataFrame) -> pd.DataFrame:
    """Which (event_name, transaction_id) pairs the ledger holds in any status.

    Asked only for the export's unexplained ids, in chunks, so memory stays bounded by the export
    rather than by the ledger's whole history.
    """
    found: list[tuple[str, str]] = []
    ids = keys["transaction_id"].dropna().unique().tolist()
    for chunk in _chunks(ids, _LOOKUP_CHUNK):
        marks = ", ".join("?" * len(chunk))
        found.extend(
            con.execute(
                f"SELECT DISTINCT event_name, transaction_id FROM events WHERE transaction_id IN ({marks})", chunk
            ).fetchall()
        )
    return pd.DataFrame(found, columns=["event_name", "transaction_id"], dtype="string")


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _yyyymmdd(day: date | None) -> str | None:
    return day.strftime("%Y%m%d") if day is not None else None
