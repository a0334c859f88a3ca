"""The ledger's own errors: what each backend turns its driver's exceptions into (sqlite3, psycopg).

Why here and not at the CLI: the backend knows which database it speaks to, so its message can name
the ledger (a path, or a URL without its password) and say what to do, in one line; the CLI, cron
and Airflow then print any `MpetlError` the same way. Exit codes (docs/outputs.md, "Exit codes"): 2 for a
ledger that cannot be used (damaged, an unknown schema, unreachable, a refused transition), 5 when
another run holds it.
"""

from __future__ import annotations

from collections.abc import Mapping

from etl.errors import LedgerError, LedgerLockedError


class LedgerDamagedError(LedgerError):
    """The database itself is damaged (SQLite's `quick_check` fails, or a read finds a malformed page).

    Refused before anything is planned or sent: a damaged index can hide a sent event's key, and the
    run would then send it again.
    """


class LedgerSchemaError(LedgerError):
    """The ledger was written by an mpetl whose schema this one neither reads nor upgrades."""


class LedgerUnreachableError(LedgerError):
    """The PostgreSQL server cannot be reached, or the connection was lost mid-run.

    Nothing committed is lost: sent marks are committed in groups, and the next run turns what was
    left in flight into failed + possible_duplicate and sends it again.
    """


class LedgerStateError(LedgerError):
    """A transition asked of events that are not in one of its from-states: a bug in the caller.

    Nothing is changed (the transition's transaction is rolled back), and the message says how many
    events were in which state, e.g. `mark_sent moves in_flight → sent; refused for 2 of 3 events
    (planned 1, sent 1)`.
    """

    def __init__(self, transition: str, sources: tuple[str, ...], target: str, asked: int,
                 found: Mapping[str, int]) -> None:
        self.transition, self.asked, self.found = transition, asked, dict(found)
        wrong = {state: n for state, n in sorted(self.found.items()) if state not in sources}
        detail = ", ".join(f"{state} {n}" for state, n in wrong.items())
        super().__init__(f"ledger: {transition} moves {' | '.join(sources)} → {target}; refused for "
                         f"{sum(wrong.values())} of {asked} events ({detail}); nothing was changed")


class OutputStateError(LedgerStateError):
    """An output record's move (`OUTPUT_TRANSITIONS`) asked of a record in none of its from-states, e.g.
    `output_taken moves claimed | written → taken; refused for run R's deferred_csv output (taken)`.
    Nothing is changed: not the record, not its events."""

    def __init__(self, transition: str, sources: tuple[str, ...], target: str, run_id: str, kind: str,
                 found: str) -> None:
        self.transition, self.asked, self.found = transition, 1, {found: 1}
        self.run_id, self.kind = run_id, kind
        LedgerError.__init__(self, f"ledger: {transition} moves {' | '.join(sources)} → {target}; refused for run "
                                   f"{run_id}'s {kind} output ({found}); nothing was changed")


__all__ = ["LedgerDamagedError", "LedgerError", "LedgerLockedError", "LedgerSchemaError", "LedgerStateError",
           "LedgerUnreachableError", "OutputStateError"]
