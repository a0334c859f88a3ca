"""The ledger: every event's fate, behind one interface with backends (SQLite; PostgreSQL).

`open_ledger` picks the backend from the config's `[ledger]` table. Nothing outside `etl/load/`
speaks SQL to a ledger: the pipeline, the sender, resend and reconciliation call these methods, and
no driver exception leaves it (each backend raises the errors of `etl.load.ledger.errors`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from etl.clock import wall_micros
from etl.load.ledger.base import (
    OUTPUT_KINDS,
    OUTPUT_TRANSITIONS,
    TRANSITIONS,
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
                read_only: bool = False, scratch: bool = False, scratch_dir: Path | None = None,
                shard: tuple[int, int] | None = None) -> Ledger:
    """The ledger at a path (SQLite) or a `postgresql://` URL.

    `lock`: hold the run lock (exit 5 if another run holds it; PostgreSQL: per `shard` (K, N), so
    shards run at once). `read_only`: for reconciliation, never changes anything. `scratch`: a private
    copy for dry-run and validate, which must not change the real ledger — SQLite copies the file
    (`VACUUM INTO` `scratch_dir`/ledger.scratch.sqlite, kept for inspection; a temporary folder when
    None), PostgreSQL shadows the tables with session-temporary copies. A copy needs no run lock.
    """
    text = str(location)
    if is_postgres_url(text):
        from etl.load.ledger.postgres import PostgresLedger

        return PostgresLedger(text, lock=lock, clock=clock, read_only=read_only, shard=shard, scratch=scratch)
    return SqliteLedger(Path(location), lock=lock, clock=clock, read_only=read_only, scratch=scratch,
                        scratch_dir=scratch_dir)


def is_postgres_url(location: Path | str) -> bool:
    """A PostgreSQL URL (the shared ledger), as opposed to a SQLite file path."""
    return str(location).startswith(("postgresql://", "postgres://"))


__all__ = ["OUTPUT_KINDS", "OUTPUT_TRANSITIONS", "TRANSITIONS", "DeferredEvent", "Ledger", "OutputClaim", "OutputKind",
           "PendingEvent", "RunOutcome", "SqliteLedger", "State", "consent_code", "consent_json", "is_postgres_url",
           "open_ledger"]
