"""The ledger's contract: one state machine for every event, whatever database holds it.

Why an interface: the pipeline, the sender, `mpetl deferred`, resend and reconciliation all move
events between the same states, and the same guarantees must hold on the embedded SQLite file and on a
PostgreSQL shared by several workers. So every transition is one method, atomic on its own (as in
dlt's load packages: a `State` literal, `start_job`/`complete_job`/…), and nothing outside
`etl/load/` speaks SQL to the ledger.

States (docs/ARCHITECTURE.md has the diagram)::

    planned ─▶ in_flight ─▶ sent
       │            └──────▶ failed ─▶ (retried while the wall clock allows) ─▶ deferred (expired)
       ├─▶ deferred (too old when planned)          deferred ─▶ taken once by each kind of output
       └─▶ rejected (refused at send time, with a reason)

Outputs (etl/load/outputs.py): a run's deferred.csv, the historical table and `mpetl deferred` files
each *claim* deferred events in one transaction with their record, which then moves
claimed ─▶ written ─▶ taken, or to released (its events offered to the next output of that kind).

A key already sent, deferred or rejected is a *duplicate* when it shows up again: it never moves
back. Flags travel with the event and are never reset by a later state: `possible_duplicate` (an
attempt got no answer, so GA may hold it already), `resent` (re-queued by `mpetl resend`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

State = Literal["planned", "in_flight", "sent", "failed", "deferred", "rejected"]
PENDING: tuple[State, ...] = ("planned", "failed")
FINAL: tuple[State, ...] = ("sent", "deferred", "rejected")

# Why deferred: "too_old" when planned (older than the window by the wall clock), "expired" when a
# planned or failed event aged out before it could be delivered.
DEFER_TOO_OLD = "too_old"
DEFER_EXPIRED = "expired"

FLAG_POSSIBLE_DUPLICATE = 1
FLAG_RESENT = 2
FLAG_HAS_SESSION = 4

# The request-level consent object, stored as one small integer (3 × 3 values) instead of JSON text.
_CONSENT_VALUES = (None, "GRANTED", "DENIED")
_CONSENT_KEYS = ("ad_user_data", "ad_personalization")


def consent_code(consent_json: str | None) -> int:
    """`{"ad_user_data":"GRANTED",…}` → 0..8; absent keys count as 0. Inverse of `consent_json`."""
    if consent_json is None or consent_json is pd.NA or consent_json == "" or consent_json != consent_json:
        return 0
    import orjson

    data = orjson.loads(consent_json)
    code = 0
    for key in _CONSENT_KEYS:
        code = code * 3 + _CONSENT_VALUES.index(data.get(key))
    return code


def consent_json(code: int) -> bytes | None:
    """The consent object as it leaves (keys in a fixed order), or None when it has no member."""
    values = (code // 3, code % 3)
    members = [f'"{k}":"{_CONSENT_VALUES[v]}"' for k, v in zip(_CONSENT_KEYS, values, strict=True) if v]
    return ("{" + ",".join(members) + "}").encode() if members else None


_PARAMS_PREFIX = r'^\{"name":"[A-Za-z0-9_]*","timestamp_micros":-?\d+,"params":'


def split_key(event_key: str) -> tuple[str, str, str]:
    """`source|event_name|tail` → its three parts (sources and event names never hold '|')."""
    source, name, tail = event_key.split("|", 2)
    return source, name, tail


def params_of(event_json: pd.Series) -> list[bytes]:
    """The params object of each MP event JSON (the transform builds `{"name",…,"params":{…}}`)."""
    arr = pa.array(event_json.astype(str).tolist(), type=pa.string())
    params = pc.replace_substring_regex(arr, _PARAMS_PREFIX, "", max_replacements=1)
    params = pc.utf8_slice_codeunits(params, 0, -1)
    return [p.encode() for p in params.to_pylist()]


def bucket_of(status: str, reason: str | None) -> str:
    """The summary's name for a ledger state."""
    if status == "deferred":
        return "expired" if reason == DEFER_EXPIRED else "deferred"
    if status == "rejected":
        return "rejected_at_send"
    if status in ("planned", "in_flight"):
        return "failed"  # not delivered by this run: still pending for the next
    return status


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One event ready to batch: its identity, its parts, and where it came from (for messages)."""

    id: int
    event_key: str
    client_id: str
    user_id: str | None
    consent: int
    event_name: str
    timestamp_micros: int
    params: bytes  # the params JSON object, without the run marker
    source_row: int | None = None

    @property
    def identity(self) -> tuple[str, str | None, int]:
        return (self.client_id, self.user_id, self.consent)

    def event_json(self, marker: bytes) -> bytes:
        """The MP event object, with `marker` (`"mpetl_run":"<run>"`) as the first param."""
        params = self.params
        inner = marker if params == b"{}" else marker + b"," + params[1:-1]
        return (b'{"name":"' + self.event_name.encode() + b'","timestamp_micros":' + str(self.timestamp_micros).encode()
                + b',"params":{' + inner + b"}}")


@dataclass(frozen=True, slots=True)
class DeferredEvent:
    """A deferred event as Data Import and the historical table need it."""

    id: int
    event_key: str
    source: str
    source_row: int | None
    client_id: str
    user_id: str | None
    event_name: str
    timestamp_micros: int
    event_date: str
    params: bytes
    reason: str
    run_id: str | None  # the run that deferred it
    consent: int = 0  # the request-level consent code (`consent_json`), for the historical table's privacy_info


# What a deferred event can be handed to, each exactly once (etl/load/outputs.py has the protocol):
# a run's deferred.csv, the [historical] table, and `mpetl deferred` files.
OutputKind = Literal["deferred_csv", "historical", "export"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("deferred_csv", "historical", "export")
# An output's record moves claimed → written → taken, or to released (its events offered again).
OutputState = Literal["claimed", "written", "taken", "released"]
UNSETTLED: tuple[OutputState, ...] = ("claimed", "written")


@dataclass(frozen=True)
class OutputClaim:
    """One run's output of one kind, as the ledger records it (the table `outputs`)."""

    run_id: str
    kind: str
    target: str  # the folder its files go to (for BigQuery: the table)
    state: str
    rows: int  # events claimed
    files: list[dict[str, Any]] = field(default_factory=list)  # recorded when written: path, tmp, bytes, sha256 (or job_id)

    @classmethod
    def from_row(cls, run_id: str, kind: str, target: str, state: str, rows: int, files: str | None) -> OutputClaim:
        import orjson

        return cls(run_id, kind, target, state, rows, orjson.loads(files) if files else [])


def refuse_move(run_id: str, kind: str, to: str, from_states: tuple[str, ...]) -> Exception:
    from etl.errors import LedgerError

    return LedgerError(f"run {run_id}'s {kind} output is not {' or '.join(from_states)}; refusing to mark it {to}")


@dataclass
class RunOutcome:
    """How one run's own events ended, per source, plus what it did for earlier runs' events."""

    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    earlier_runs: dict[str, int] = field(default_factory=dict)
    possible_duplicates: int = 0
    resent: int = 0

    def count(self, source: str, bucket: str) -> int:
        return self.by_source.get(source, {}).get(bucket, 0)


class Ledger(ABC):
    """The ledger of one property (measurement id + endpoint). See the module docstring for states."""

    # -- run lifecycle -------------------------------------------------------------------------
    @abstractmethod
    def lock(self) -> None:
        """Take the run lock without waiting; LedgerLockedError (exit 5) when another run holds it."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def bind_property(self, measurement_id: str, endpoint: str) -> None:
        """Record the property this run sends to; refuse (exit 2) if pending events belong to another."""

    @abstractmethod
    def begin_run(self, run_id: str, mode: str, shard: str | None = None) -> None: ...

    @abstractmethod
    def finish_run(self, run_id: str, summary_json: str) -> None: ...

    @abstractmethod
    def recover_in_flight(self) -> int:
        """A previous run died mid-request: its in-flight events become failed + possible_duplicate."""

    # -- planning ------------------------------------------------------------------------------
    @abstractmethod
    def plan(self, events: pd.DataFrame, run_id: str, *, oldest_sendable_micros: int) -> pd.Series:
        """Plan a chunk; return each row's bucket: 'planned', 'duplicate' or 'deferred'.

        Duplicate: the key repeats within this run, or is already sent, deferred or rejected. Deferred:
        new and older than `oldest_sendable_micros` (the wall clock's window): recorded as deferred
        (too_old) once, ever. A key an earlier run left pending is taken over by this run (its row is
        this run's), keeping its state and flags; `withdraw` gives it back.
        """

    @abstractmethod
    def withdraw(self, run_id: str, source: str) -> int:
        """Forget what this run planned for a source that broke part-way: delete the events it created,
        give the ones it took over back to their previous run. Returns the events deleted."""

    # -- sending -------------------------------------------------------------------------------
    @abstractmethod
    def snapshot_pending(self, *, shard: tuple[int, int] | None = None) -> int:
        """Freeze the send order (grouped by request identity); return how many events are pending."""

    @abstractmethod
    def iter_pending(self, page: int = 5000) -> Iterator[PendingEvent]:
        """The frozen pending events, page by page (bounded memory)."""

    @abstractmethod
    def mark_in_flight(self, ids: Sequence[int]) -> None:
        """Committed before the first byte of the requests that carry these events (write-ahead)."""

    @abstractmethod
    def mark_sent(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool]) -> None: ...

    @abstractmethod
    def mark_failed(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool],
                    reason: str | None = None) -> None:
        """Not delivered; retried by later runs while the wall clock allows. The flag survives."""

    @abstractmethod
    def mark_rejected(self, ids: Sequence[int], run_id: str, reason: str) -> None:
        """Refused at send time (never sent): a final state with a reason, never silence."""

    @abstractmethod
    def mark_expired(self, ids: Sequence[int], run_id: str) -> None:
        """Pending events the wall clock says are too old to send: deferred (expired), once."""

    @abstractmethod
    def refused(self, run_id: str) -> list[tuple[str, int | None, str]]:
        """(source, row, reason) of the events this run refused at send time, for rejects.ndjson."""

    # -- deferred output -----------------------------------------------------------------------
    @abstractmethod
    def deferred_events(self, *, run_id: str | None = None, unexported: bool = False,
                        since_date: str | None = None) -> Iterator[DeferredEvent]:
        """Deferred events: those a run deferred, or all not yet exported (optionally from a date)."""

    @abstractmethod
    def mark_exported(self, ids: Sequence[int], run_id: str) -> None: ...

    # -- outputs exactly once (etl/load/outputs.py) -------------------------------------------
    @abstractmethod
    def claim_deferred(self, run_id: str, kind: OutputKind, target: str, *, since_date: str | None = None,
                       deferred_by: str | None = None) -> int:
        """One transaction: record `run_id`'s output of `kind` (state claimed, files going to `target`) and
        give it every deferred event of the property no output of that kind holds (optionally dated from
        `since_date`, or deferred by one run). Returns how many; no other output can take them now."""

    @abstractmethod
    def claimed_events(self, run_id: str, kind: OutputKind) -> Iterator[DeferredEvent]:
        """The events `run_id`'s output of `kind` holds, by id, page by page (bounded memory)."""

    def output_written(self, run_id: str, kind: OutputKind, files: list[dict[str, Any]]) -> None:
        """claimed → written: the files are whole under their temporary names (described by `files`)."""
        import orjson

        self._move_output(run_id, kind, "written", ("claimed",), orjson.dumps(files).decode())

    def output_taken(self, run_id: str, kind: OutputKind) -> None:
        """claimed | written → taken: the files are under their final names; the events are theirs for good."""
        self._move_output(run_id, kind, "taken", UNSETTLED)

    @abstractmethod
    def _move_output(self, run_id: str, kind: OutputKind, to: OutputState, from_states: tuple[str, ...],
                     files: str | None = None) -> None:
        """One output record from one of `from_states` to `to` (LedgerError when it is in none of them)."""

    @abstractmethod
    def release_output(self, run_id: str, kind: OutputKind) -> int:
        """claimed | written | taken → released: the output's events are offered to the next output of
        that kind (its files are gone or were never whole). Returns how many."""

    @abstractmethod
    def unsettled_outputs(self, kind: OutputKind) -> list[OutputClaim]:
        """Outputs of `kind` left claimed or written by runs that are no longer running (killed)."""

    @abstractmethod
    def output_claim(self, run_id: str, kind: OutputKind) -> OutputClaim | None:
        """The record of `run_id`'s output of `kind`, if it made one."""

    @abstractmethod
    def deferred_claims(self, run_id: str, kind: OutputKind) -> dict[str, int]:
        """The events `run_id` deferred, by which output of `kind` holds them: `this_run`, `other_runs`
        (a concurrent shard's), `unclaimed` (must be 0 once the run's output is taken)."""

    # -- reconciliation and resend ---------------------------------------------------------------
    @abstractmethod
    def requeue_for_resend(self, keys: Sequence[str], run_id: str) -> int:
        """Sent events the export lacks go back to planned, flagged `resent` (flags kept)."""

    @abstractmethod
    def for_reconcile(self, *, run_id: str | None = None, since: str | None = None,
                      until: str | None = None) -> pd.DataFrame:
        """Sent events of a run (planned or delivered by it) and/or event dates [since, until] (YYYYMMDD).

        Columns: event_key, event_date, event_name, transaction_id, source, run_id, sent_run_id,
        timestamp_micros, sent_at_micros, possible_duplicate, resent. With no selector: the last run
        that delivered something. Never personal columns.
        """

    @abstractmethod
    def known_keys(self, transaction_ids: Sequence[str]) -> pd.DataFrame:
        """(event_name, transaction_id) pairs the ledger holds in any state, for the given ids."""

    @abstractmethod
    def run_ids(self) -> list[str]:
        """Every run id this ledger has seen (the values our `mpetl_run` marker can take)."""

    # -- accounting ----------------------------------------------------------------------------
    @abstractmethod
    def outcome(self, run_id: str) -> RunOutcome: ...

    @abstractmethod
    def integrity_ok(self) -> bool: ...

    @abstractmethod
    def state_counts(self) -> dict[str, int]:
        """Events per state, plus `runs`: what a person (or a crash test) checks first."""

    @abstractmethod
    def inspect(self) -> pd.DataFrame:
        """Every event's non-personal columns: event_key, event_name, transaction_id, status, reason,
        possible_duplicate, resent, run_id, sent_run_id (the run that gave the current state), attempts,
        source_row. For tests, notebooks and support; bounded by the ledger's size."""
