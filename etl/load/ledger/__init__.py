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
    OUTPUT_KINDS,
    PENDING,
    DeferredEvent,
    Ledger,
    OutputClaim,
    OutputKind,
    PendingEvent,
    RunOutcome,
    State,
    consent_code,
    consent_json,
)
from etl.load.ledger.sqlite import SqliteLedger


def open_ledger(location: Path | str, *, lock: bool = False, clock: Callable[[], int] = wall_micros,
                read_only: bool = False, scratch: bool = False, shard: tuple[int, int] | None = None) -> Ledger:
    """The ledger at a path (SQLite) or a `postgresql://` URL; `read_only` for reconciliation, `scratch` for a
    throwaway copy (dry-run, validate) that need not survive a power loss.

    PostgreSQL: `shard` (K, N) scopes the run lock to that shard (shards run at once), and `scratch`
    gives this session private copies of the tables.
    """
    text = str(location)
    if is_url(text):
        from etl.load.ledger.postgres import PostgresLedger

        return PostgresLedger(text, lock=lock, clock=clock, read_only=read_only, shard=shard, scratch=scratch)
    return SqliteLedger(Path(location), lock=lock, clock=clock, read_only=read_only, scratch=scratch)


def is_url(location: Path | str) -> bool:
    """A PostgreSQL URL (the shared ledger), as opposed to a SQLite file path."""
    return str(location).startswith(("postgresql://", "postgres://"))


__all__ = [
    "DEFER_EXPIRED",
    "DEFER_TOO_OLD",
    "OUTPUT_KINDS",
    "PENDING",
    "DeferredEvent",
    "Ledger",
    "OutputClaim",
    "OutputKind",
    "PendingEvent",
    "RunOutcome",
    "SqliteLedger",
    "State",
    "consent_code",
    "consent_json",
    "is_url",
    "open_ledger",
]
