"""The ledger: every event's fate, behind one interface with backends (SQLite; PostgreSQL).

`open_ledger` picks the backend from the config's `[ledger]` table. Nothing outside `etl/load/`
speaks SQL to a ledger: the pipeline, the sender, resend and reconciliation call these methods.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from etl.clock import wall_micros
from etl.load.ledger.base import (
    DEFER_EXPIRED,
    DEFER_TOO_OLD,
    PENDING,
    DeferredEvent,
    Ledger,
    PendingEvent,
    RunOutcome,
    State,
    consent_code,
    consent_json,
)
from etl.load.ledger.sqlite import SqliteLedger


def open_ledger(location: Path | str, *, lock: bool = False, clock: Callable[[], int] = wall_micros,
                read_only: bool = False, scratch: bool = False) -> Ledger:
    """The ledger at a path (SQLite) or a `postgresql://` URL; `read_only` for reconciliation, `scratch` for a
    throwaway copy (dry-run, validate) that need not survive a power loss."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        from etl.load.ledger.postgres import PostgresLedger  # type: ignore[import-not-found]

        return PostgresLedger(text, lock=lock, clock=clock, read_only=read_only)
    return SqliteLedger(Path(location), lock=lock, clock=clock, read_only=read_only, scratch=scratch)


__all__ = [
    "DEFER_EXPIRED",
    "DEFER_TOO_OLD",
    "PENDING",
    "DeferredEvent",
    "Ledger",
    "PendingEvent",
    "RunOutcome",
    "SqliteLedger",
    "State",
    "consent_code",
    "consent_json",
    "open_ledger",
]
