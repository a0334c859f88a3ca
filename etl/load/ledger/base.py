"""The ledger's contract: one sealed state machine for every event, whatever database holds it.

Why an interface: the pipeline, the sender, `mpetl deferred`, resend and reconciliation all move
events between the same states, and the same guarantees must hold on the embedded SQLite file and on a
PostgreSQL shared by several workers. So every transition is one method, atomic on its own (as in
dlt's load packages: a `State` literal, `start_job`/`complete_job`/…), and nothing outside
`etl/load/` speaks SQL to the ledger.

Sealed: `TRANSITIONS` below is the only place that says which state a transition may start from.
Both backends build each transition's `WHERE … AND status IN (<from-states>)` from it, and when
fewer events moved than were asked (e.g. `mark_sent` on a planned or an already-sent event) the
transaction is rolled back and `LedgerStateError` says how many events were in which state. So
"a sent event never moves back" holds in the database, not in the callers' care.

States and transitions: `TRANSITIONS` below, drawn as a table in docs/ARCHITECTURE.md.

Outputs (etl/load/outputs.py): a run's deferred.csv, the historical table and `mpetl deferred` files
each *claim* deferred events (`claim_deferred`: deferred, not yet taken by that kind → taken by this
output) in one transaction with their record, which then moves claimed ─▶ written ─▶ taken, or to
released (`release_output`: its events are deferred and free again for the next output of that kind).
The record's moves are sealed the same way: `OUTPUT_TRANSITIONS` names each one's from-states, and a
wrong move raises `OutputStateError` (a `LedgerStateError`) and changes nothing.

A key already sent, deferred or rejected is a *duplicate* when it shows up again: it never moves
back. A key still pending (planned, failed, in flight) is taken over by the later run that reads it
again, but only for the same client: the same `source|event|transaction_id` under another client is
a duplicate (the first client planned keeps it), decided in the plan's transaction, so shards that
see the two rows at once agree and each shard's accounting balances. Flags travel with the event
and are never reset by a later state: `possible_duplicate` (an attempt got no answer, so GA may hold
it already), `resent` (re-queued by `mpetl resend`).
"""

from __future__ import annotations

import functools
import inspect as pyinspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.load.ledger.errors import LedgerError, LedgerStateError, OutputStateError
from etl.protocol.event_key import DIGEST_PREFIX, unescaped

State = Literal["planned", "in_flight", "sent", "failed", "deferred", "rejected"]
PENDING: tuple[State, ...] = ("planned", "failed")
OPEN: tuple[State, ...] = ("planned", "failed", "in_flight")  # a later run of the same client takes these over
TAKEN = "taken"  # not a stored state: a deferred event an output holds (that kind's claim column names its run)


class Transition(NamedTuple):
    """Which states an event may leave by this transition, and the state it enters."""

    sources: tuple[str, ...]
    target: str

    def where(self, status: str = "status", taken: str | Sequence[str] = ()) -> str:
        """The SQL condition "the row is in one of my from-states". `taken`: the claim column(s) that tell a
        `deferred` event (every one NULL) from a `taken` one (one of them set); without them every state is
        a stored one (the output records' table)."""
        columns = [taken] if isinstance(taken, str) else list(taken)
        special = ("deferred", TAKEN) if columns else ()
        states = [s for s in self.sources if s not in special]
        terms = [f"{status} IN ({', '.join(repr(s) for s in states)})"] if states else []
        if "deferred" in self.sources and columns:
            terms.append(f"({status} = 'deferred'" + "".join(f" AND {c} IS NULL" for c in columns) + ")")
        if TAKEN in self.sources and columns:
            terms.append(f"({status} = 'deferred' AND ({' OR '.join(f'{c} IS NOT NULL' for c in columns)}))")
        return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


TRANSITIONS: dict[str, Transition] = {
    "mark_in_flight": Transition(("planned", "failed"), "in_flight"),
    "mark_sent": Transition(("in_flight",), "sent"),
    "mark_failed": Transition(("in_flight",), "failed"),
    "recover_in_flight": Transition(("in_flight",), "failed"),
    # planned/failed: our gate refused it before it left; in_flight: the Data Manager API refused it by name
    # (its fast-fail answer: that event was not processed, the rest of the request is sent again without it).
    "mark_rejected": Transition(("planned", "failed", "in_flight"), "rejected"),
    "mark_expired": Transition(("planned", "failed"), "deferred"),
    # Per kind of output (its claim column): a deferred event no output of that kind holds → this output's;
    # released, the output's events are deferred (free) again for the next output of that kind.
    "claim_deferred": Transition(("deferred",), TAKEN),
    "release_output": Transition((TAKEN,), "deferred"),
    "requeue_for_resend": Transition(("sent",), "planned"),
    # What a broken source's run created; a deferred event some output (a concurrent shard's) took stays.
    "withdraw": Transition(("planned", "deferred"), "deleted"),
}
"""Transition name → (from-states, to-state): the one table both backends' SQL is built from."""

# Why deferred: "too_old" when planned (older than the window by the wall clock), "expired" when a
# planned or failed event aged out before it could be delivered.
DEFER_TOO_OLD = "too_old"
DEFER_EXPIRED = "expired"

FLAG_POSSIBLE_DUPLICATE = 1
FLAG_RESENT = 2
FLAG_HAS_SESSION = 4
# 8 is SQLite's own (the params' transaction_id lives only in the key).
FLAG_NO_TRANSACTION_ID = 16  # the key's tail is a row digest (no transaction id): ids are opaque, no prefix is special

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


# The top-level `value` and `currency` members of a params object as the transform writes them (items
# come later and hold no `value`; inside a JSON string a quote is always escaped, so `,"value":` or
# `{"value":` only ever starts a member).
_VALUE_MEMBER = r'[{,]"value":(?P<v>-?[0-9][0-9.eE+-]*)'
_CURRENCY_MEMBER = r'[{,]"currency":"(?P<c>[A-Za-z]{3})"'


def money_of(params: Sequence[bytes | None]) -> pd.DataFrame:
    """`value` (float64, NaN when absent) and `currency` (string) of each stored params object.

    Why from the params: they are exactly what was sent, so reconciliation's `sent_value` is the money
    that left, not a recomputation. Vectorised (two Arrow regex passes; ~0.3 s per million events).
    """
    arr = pa.array([None if p is None else bytes(p) for p in params], type=pa.binary()).cast(pa.string())
    value = pc.struct_field(pc.extract_regex(arr, _VALUE_MEMBER), "v")
    currency = pc.struct_field(pc.extract_regex(arr, _CURRENCY_MEMBER), "c")
    return pd.DataFrame({
        "value": pd.Series(pc.cast(value, pa.float64()).to_numpy(zero_copy_only=False), dtype="float64"),
        "currency": pd.Series(pd.arrays.ArrowStringArray(pc.cast(currency, pa.string()))).astype("string"),
    })


_AMOUNT = r'-?[0-9][0-9.eE+-]*'
_ORDER_MEMBERS = {name: rf'[{{,]"{name}":(?P<v>{_AMOUNT})' for name in ("value", "tax", "shipping")}


def amounts_of(params: Sequence[bytes | None]) -> pd.DataFrame:
    """`value`, `tax`, `shipping` (text exactly as sent, NA when absent) and `currency` of each params
    object: what an order's earlier events moved, for the refund delta (etl.transform.refund_deltas)."""
    arr = pa.array([None if p is None else bytes(p) for p in params], type=pa.binary()).cast(pa.string())
    out = {name: pd.Series(pd.arrays.ArrowStringArray(pc.cast(pc.struct_field(pc.extract_regex(arr, rx), "v"),
                                                               pa.string())), dtype="string")
           for name, rx in _ORDER_MEMBERS.items()}
    out["currency"] = pd.Series(pd.arrays.ArrowStringArray(pc.cast(
        pc.struct_field(pc.extract_regex(arr, _CURRENCY_MEMBER), "c"), pa.string())), dtype="string")
    return pd.DataFrame(out)


def frame_with_money(cursor: Iterable[tuple] | Any, columns: Sequence[str], *, chunk: int = 50_000) -> pd.DataFrame:
    """The rows of a DB-API cursor whose last column is `params`, with `value`/`currency` in its place.

    Read `chunk` rows at a time so the params (with items, up to kilobytes an event) never all sit
    in memory at once: only their two money fields stay.
    """
    parts = []
    while rows := cursor.fetchmany(chunk):
        part = pd.DataFrame(rows, columns=[*columns, "params"])
        money = money_of(part.pop("params").tolist())
        parts.append(pd.concat([part, money.set_index(part.index)], axis=1))
    if not parts:
        return pd.concat([pd.DataFrame(columns=list(columns)), money_of([])], axis=1)
    return pd.concat(parts, ignore_index=True)


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
class NewEvents:
    """A chunk's new events as both backends store them (the columns they share, as Python lists)."""

    keys: list[str]
    client_id: list[str]
    user_id: list[str | None]
    consent: list[int]
    timestamp_micros: list[int]
    event_date: list[int]
    params: list[bytes]
    source_row: list[int]
    flags: np.ndarray
    place: list[str | None] = field(default_factory=list)  # request members user_location/device (None: none)

    @classmethod
    def of(cls, events: pd.DataFrame) -> NewEvents:
        """From the transform's frame (docs/ARCHITECTURE.md: `event_key`, `transaction_id`, … `event_json`)."""
        cache: dict[Any, int] = {}
        consent = events["consent_json"].astype("object")
        consent = consent.where(consent.notna(), None)
        user = events["user_id"].astype("object")
        flags = (np.where(events["has_session"].to_numpy(dtype=bool), FLAG_HAS_SESSION, 0)
                 | np.where(events["transaction_id"].isna().to_numpy(), FLAG_NO_TRANSACTION_ID, 0))
        return cls(
            keys=events["event_key"].astype(str).tolist(),
            client_id=events["client_id"].astype(str).tolist(),
            user_id=user.where(user.notna(), None).tolist(),
            consent=[cache[v] if v in cache else cache.setdefault(v, consent_code(v)) for v in consent],
            timestamp_micros=events["timestamp_micros"].astype("int64").tolist(),
            event_date=pd.to_numeric(events["event_date"]).astype("int64").tolist(),
            params=params_of(events["event_json"]),
            source_row=events["row"].astype("int64").tolist(),
            flags=flags.astype("int64"),
            place=_texts(events["place_json"]) if "place_json" in events.columns else [None] * len(events),
        )


def _texts(column: pd.Series) -> list[str | None]:
    values = column.astype("object")
    return values.where(values.notna(), None).tolist()


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One event ready to batch: its identity, its parts, and where it came from (for messages).

    `place` is the request-level `"user_location":{…},"device":{…}` text (None: none): MP carries it
    once per request, so it is part of the identity, and no request mixes two stores' events."""

    id: int
    event_key: str
    client_id: str
    user_id: str | None
    consent: int
    event_name: str
    timestamp_micros: int
    params: bytes  # the params JSON object, without the run marker
    source_row: int | None = None
    resent: bool = False  # re-queued by `mpetl resend`: the sender adds the resend marker
    place: bytes | None = None

    @property
    def identity(self) -> tuple[str, str | None, int, bytes | None]:
        return (self.client_id, self.user_id, self.consent, self.place)

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
    consent: int = 0  # the request-level ad consents (`consent_json`): historical privacy_info, Data Import columns
    place: bytes | None = None  # the request members user_location/device, as the event would have been sent


# What a deferred event can be handed to, each exactly once (etl/load/outputs.py has the protocol):
# a run's deferred.csv, the [historical] table, and `mpetl deferred` files.
OutputKind = Literal["deferred_csv", "historical", "export"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("deferred_csv", "historical", "export")
OutputState = Literal["claimed", "written", "taken", "released"]

OUTPUT_TRANSITIONS: dict[str, Transition] = {
    "claim_deferred": Transition(("absent",), "claimed"),  # the record is made with the claim: one per run and kind
    "output_written": Transition(("claimed",), "written"),  # its files are whole under their temporary names
    "output_taken": Transition(("claimed", "written"), "taken"),  # under their final names: the events are its own
    "release_output": Transition(("claimed", "written", "taken"), "released"),  # its files gone or never whole
}
"""An output record's moves (from-states → to-state): both backends' `UPDATE outputs … WHERE state IN (…)`
are built from it, as `TRANSITIONS` for events."""


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


@dataclass
class RunOutcome:
    """How one run's own events ended, per source, plus what it did for earlier runs' events."""

    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    earlier_runs: dict[str, int] = field(default_factory=dict)
    possible_duplicates: int = 0
    resent: int = 0

    def count(self, source: str, bucket: str) -> int:
        return self.by_source.get(source, {}).get(bucket, 0)

    @classmethod
    def fold(cls, own: Iterable[tuple[str, str, str | None, int]], earlier: Iterable[tuple[str, str | None, int]],
             possible_duplicates: int, resent: int) -> RunOutcome:
        """From (source, status, reason, count) of the run's own events and (status, reason, count) of
        the earlier runs' events it gave a fate."""
        out = cls(possible_duplicates=int(possible_duplicates or 0), resent=int(resent or 0))
        for source, status, reason, n in own:
            per = out.by_source.setdefault(source, {})
            bucket = bucket_of(status, reason)
            per[bucket] = per.get(bucket, 0) + n
        for status, reason, n in earlier:
            bucket = bucket_of(status, reason)
            out.earlier_runs[bucket] = out.earlier_runs.get(bucket, 0) + n
        return out


ORDER_ROW = ("event_key", "status", "params")
"""What a backend's `_order_rows` returns: an order's purchase and refund events (any state but rejected)."""
OWN_ROW = ("event_key", "status", "reason")
"""What a backend's `_own_rows` returns per event the run owns; `own_fates` maps the state to its bucket."""
SENT_ROW = ("event_key", "event_date", "timestamp_micros", "sent_at_micros", "flags", "run_id", "sent_run_id", "params")
"""What a backend's `_sent_rows` returns per sent event; `for_reconcile` builds its frame from it."""
INSPECT_ROW = ("event_key", "status", "reason", "flags", "run_id", "sent_run_id", "attempts", "source_row", "request_id")
"""What a backend's `_inspect_rows` returns per event; `inspect` builds its frame from it."""


def _mapped(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` with its backend's driver errors (sqlite3.Error, psycopg.Error) raised as ledger errors."""
    if pyinspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def paged(self: Ledger, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(self, *args, **kwargs)
            except self._driver_errors as exc:
                raise self._driver_error(exc) from exc

        return paged

    @functools.wraps(method)
    def call(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except self._driver_errors as exc:
            raise self._driver_error(exc) from exc

    return call


class Ledger(ABC):
    """The ledger of one property (measurement id + endpoint). See the module docstring for states.

    A backend names its driver's exceptions (`_driver_errors`) and turns one into a `LedgerError`
    (`_driver_error`); every public method of a backend is wrapped so that no sqlite3 or psycopg
    exception leaves the ledger (a lost PostgreSQL connection is one line and exit 2, not a traceback).
    """

    _driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    legacy_digest_keys = False  # an older schema read without upgrading: a `row:` tail is a row digest

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in dir(cls):  # the backend's own methods and those it inherits from here
            member = getattr(cls, name, None)
            if not name.startswith("_") and pyinspect.isfunction(member) and not hasattr(member, "__wrapped__"):
                setattr(cls, name, _mapped(member))

    @abstractmethod
    def _driver_error(self, exc: BaseException) -> LedgerError:
        """The driver's exception as one line naming this ledger (never a password) and what to do."""

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

        Duplicate: the key repeats within this run, is already sent, deferred or rejected, or is
        pending under another client (the first client keeps it). Deferred: new and older than
        `oldest_sendable_micros` (the wall clock's window): recorded as deferred (too_old) once, ever. A
        key an earlier run left pending for the same client is taken over by this run (its row is
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
        """planned | failed → in_flight, committed before the first byte of the requests that carry
        these events (write-ahead)."""

    @abstractmethod
    def mark_sent(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool],
                  request_ids: Sequence[str | None] | None = None) -> None:
        """in_flight → sent; `request_ids`: the Data Manager API's requestId of each event's request (its
        request-status diagnostics are read by it: etl/request_diagnostics.py)."""

    @abstractmethod
    def mark_failed(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool],
                    reason: str | None = None) -> None:
        """in_flight → failed: not delivered; retried by later runs while the wall clock allows. The flag survives."""

    @abstractmethod
    def mark_rejected(self, ids: Sequence[int], run_id: str, reason: str) -> None:
        """planned | failed | in_flight → rejected: refused at send time (never recorded: by our gate, or by
        name by the Data Manager API), a final state with a reason."""

    @abstractmethod
    def mark_expired(self, ids: Sequence[int], run_id: str) -> None:
        """planned | failed → deferred (expired): the wall clock says they are too old to send, once."""

    @abstractmethod
    def rejected_at_send(self, run_id: str) -> list[tuple[str, int | None, str]]:
        """(source, row, reason) of the events this run rejected at send time, for rejects.ndjson."""

    # -- deferred output -----------------------------------------------------------------------
    @abstractmethod
    def deferred_events(self, *, run_id: str | None = None, unexported: bool = False,
                        since_date: str | None = None) -> Iterator[DeferredEvent]:
        """Deferred events, read only: those a run deferred, or all no `mpetl deferred` file has taken
        (optionally from a date). For support and tests: outputs read their own (`claimed_events`)."""

    # -- outputs exactly once (etl/load/outputs.py) -------------------------------------------
    @abstractmethod
    def claim_deferred(self, run_id: str, kind: OutputKind, target: str, *, since_date: str | None = None,
                       deferred_by: str | None = None) -> int:
        """One transaction: record `run_id`'s output of `kind` (state claimed, files going to `target`) and
        give it every deferred event of the property no output of that kind holds (optionally dated from
        `since_date`, or deferred by one run). Returns how many; no other output of that kind can take
        them now. A second claim of the same run and kind is refused (`OutputStateError`)."""

    @abstractmethod
    def claimed_events(self, run_id: str, kind: OutputKind) -> Iterator[DeferredEvent]:
        """The events `run_id`'s output of `kind` holds, by id, page by page (bounded memory)."""

    def output_written(self, run_id: str, kind: OutputKind, files: list[dict[str, Any]]) -> None:
        """claimed → written: the files are whole under their temporary names (described by `files`)."""
        import orjson

        self._move_output(run_id, kind, "output_written", orjson.dumps(files).decode())

    def output_taken(self, run_id: str, kind: OutputKind) -> None:
        """claimed | written → taken: the files are under their final names; the events are theirs for good."""
        self._move_output(run_id, kind, "output_taken")

    @abstractmethod
    def _move_output(self, run_id: str, kind: OutputKind, transition: str, files: str | None = None) -> None:
        """One output record by `OUTPUT_TRANSITIONS[transition]`, inside the caller's transaction if any;
        `OutputStateError` (nothing changed) when the record is in none of its from-states."""

    def _refuse_output(self, run_id: str, kind: OutputKind, transition: str, state: str | None) -> OutputStateError:
        move = OUTPUT_TRANSITIONS[transition]
        return OutputStateError(transition, move.sources, move.target, run_id, kind, state or "absent")

    @abstractmethod
    def release_output(self, run_id: str, kind: OutputKind) -> int:
        """claimed | written | taken → released, with its events taken → deferred in the same transaction:
        they are offered to the next output of that kind (its files are gone or were never whole). How many."""

    @abstractmethod
    def unsettled_outputs(self, kind: OutputKind) -> list[OutputClaim]:
        """Outputs of `kind` left claimed or written by runs that are no longer running (killed)."""

    @abstractmethod
    def output_claim(self, run_id: str, kind: OutputKind) -> OutputClaim | None:
        """The record of `run_id`'s output of `kind`, if it made one."""

    @abstractmethod
    def deferred_claims(self, run_id: str, kind: OutputKind) -> dict[str, int]:
        """The events `run_id` deferred, by which output of `kind` holds them: `this_run`, `other_runs`
        (a concurrent shard's, or an earlier one's), `unclaimed` (must be 0 once the run's output is taken)."""

    @staticmethod
    def _claim_counts(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
        counts = dict.fromkeys(("this_run", "other_runs", "unclaimed"), 0)
        counts.update({holder: int(n) for holder, n in rows})
        return counts

    # -- reconciliation and resend ---------------------------------------------------------------
    @abstractmethod
    def requeue_for_resend(self, keys: Sequence[str], run_id: str) -> int:
        """Those of `keys` that are sent go back to planned, flagged `resent` (flags kept); their count."""

    def for_reconcile(self, *, run_id: str | None = None, since: str | None = None,
                      until: str | None = None) -> pd.DataFrame:
        """Sent events of a run (planned or delivered by it) and/or event dates [since, until] (YYYYMMDD).

        Columns: event_key, event_date, event_name, transaction_id (NA when the key is a row digest),
        source, run_id, sent_run_id, timestamp_micros, sent_at_micros, possible_duplicate, resent, value,
        currency (`money_of` the params sent). With no selector: the last run that delivered something.
        Never personal columns.
        """
        frame = frame_with_money(self._sent_rows(run_id, since, until), SENT_ROW[:-1])
        source, name, tid = self._key_parts(frame)
        flags = frame["flags"].astype("int64")
        return pd.DataFrame({
            "event_key": frame["event_key"].astype("string"),
            "event_date": frame["event_date"].astype(str).astype("string"),
            "event_name": name,
            "transaction_id": tid,
            "source": source,
            "run_id": frame["run_id"].astype("string"),
            "sent_run_id": frame["sent_run_id"].astype("string"),
            "timestamp_micros": frame["timestamp_micros"].astype("int64"),
            "sent_at_micros": frame["sent_at_micros"].astype("Int64"),
            "possible_duplicate": (flags & FLAG_POSSIBLE_DUPLICATE) > 0,
            "resent": (flags & FLAG_RESENT) > 0,
            "value": frame["value"].astype("float64"),
            "currency": frame["currency"].astype("string"),
        })

    @abstractmethod
    def _sent_rows(self, run_id: str | None, since: str | None, until: str | None) -> Any:
        """A DB-API cursor over `SENT_ROW` tuples of the sent events `for_reconcile` selects (read in
        chunks: only the two money fields of each params object are kept)."""

    @abstractmethod
    def known_keys(self, transaction_ids: Sequence[str]) -> pd.DataFrame:
        """(event_name, transaction_id) pairs the ledger holds in any state, for the given ids."""

    @abstractmethod
    def run_ids(self) -> list[str]:
        """Every run id this ledger has seen (the values our `mpetl_run` marker can take)."""

    # -- money ---------------------------------------------------------------------------------
    def order_history(self, source: str, transaction_ids: Sequence[str]) -> pd.DataFrame:
        """What the ledger holds of these orders of `source`: their purchase and refund events in any
        state but rejected (one that never left and never will counts for nothing), whichever run
        planned them. Columns: transaction_id, event_name, event_key, value, tax, shipping (the amounts
        as sent, text), currency. The refund delta reads it: exports are cumulative, GA is not.

        A read, no transition: SQLite finds purchases by key hash and refunds through a small partial
        index on refund keys (`events_refunds`), PostgreSQL by its unique key and a partial index on
        refunds' transaction ids (`mpetl_events_refunds`); both indexes are created by writers.
        """
        ids = sorted({str(t) for t in transaction_ids})
        rows = list(self._order_rows(source, ids)) if ids else []
        frame = pd.DataFrame(rows, columns=list(ORDER_ROW))
        amounts = amounts_of(frame.pop("params").tolist())
        _, name, tid = self._key_parts(frame.assign(flags=0))
        return pd.DataFrame({"transaction_id": tid.astype("string"), "event_name": name.astype("string"),
                             "event_key": frame["event_key"].astype("string"),
                             **{k: amounts[k] for k in ("value", "tax", "shipping", "currency")}})

    @abstractmethod
    def _order_rows(self, source: str, transaction_ids: Sequence[str]) -> Iterable[tuple]:
        """`ORDER_ROW` tuples of the purchase (`source|purchase|id`) and refund (`source|refund|id␞level`)
        events of these transaction ids, rejected ones left out."""

    def own_fates(self, run_id: str, *, page: int = 200_000) -> Iterator[pd.DataFrame]:
        """The events this run owns (planned fresh, deferred when planned, or taken over), each with the
        summary bucket its state means (`bucket_of`): `event_key`, `bucket`, page by page. The pipeline
        joins it to the money of the rows it planned, so value_sent is the value of the rows sent."""
        cursor = self._own_rows(run_id)
        while rows := cursor.fetchmany(page):
            frame = pd.DataFrame(rows, columns=list(OWN_ROW))
            yield pd.DataFrame({"event_key": frame["event_key"].astype("string"),
                                "bucket": [bucket_of(s, r) for s, r in zip(frame["status"], frame["reason"], strict=True)]})

    @abstractmethod
    def _own_rows(self, run_id: str) -> Any:
        """A DB-API cursor over `OWN_ROW` tuples of the events whose owner is this run."""
    def run_summaries(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The summary each of these runs recorded when it finished (its summary.json), by run id.

        Reconcile's report shows why the rows behind its events were not sent (rejects, filters,
        deferred) and what to do about them; runs that never finished (killed) are absent.
        """
        out: dict[str, dict[str, Any]] = {}
        for run_id, text in self._run_summary_rows(sorted(set(run_ids))):
            try:
                summary = json.loads(text)
            except (TypeError, ValueError):
                continue  # a run that did not finish, or a summary from before they were kept
            if isinstance(summary, dict):
                out[run_id] = summary
        return out

    @abstractmethod
    def _run_summary_rows(self, run_ids: list[str]) -> Iterable[tuple[str, str | None]]:
        """(run_id, summary_json) of the given runs."""

    # -- accounting ----------------------------------------------------------------------------
    def outcome(self, run_id: str) -> RunOutcome:
        """The run's own events per source and bucket, and the fates it gave earlier runs' events."""
        return RunOutcome.fold(*self._outcome_rows(run_id))

    @abstractmethod
    def _outcome_rows(self, run_id: str) -> tuple[Iterable[tuple], Iterable[tuple], int, int]:
        """The arguments of `RunOutcome.fold` for this run."""

    @abstractmethod
    def integrity_ok(self) -> bool: ...

    @abstractmethod
    def state_counts(self) -> dict[str, int]:
        """Events per state, plus `runs`: what a person (or a crash test) checks first."""

    def inspect(self) -> pd.DataFrame:
        """Every event's non-personal columns: event_key, event_name, transaction_id, status, reason, run_id,
        sent_run_id (the run that gave the current state), attempts, source_row, possible_duplicate,
        resent. For tests, notebooks and support; bounded by the ledger's size."""
        frame = pd.DataFrame(self._inspect_rows(), columns=list(INSPECT_ROW))
        _, name, tid = self._key_parts(frame)
        frame.insert(1, "event_name", name.astype(object))
        frame.insert(2, "transaction_id", tid.astype(object).where(tid.notna(), None))
        flags = frame.pop("flags").astype("int64")
        frame["possible_duplicate"] = (flags & FLAG_POSSIBLE_DUPLICATE) > 0
        frame["resent"] = (flags & FLAG_RESENT) > 0
        return frame

    @abstractmethod
    def _inspect_rows(self) -> Iterable[tuple]:
        """`INSPECT_ROW` tuples of every event, in id order."""

    # -- shared plumbing ---------------------------------------------------------------------------
    def _key_parts(self, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
        """(source, event_name, transaction_id) of each row's key; the id is NA where the tail is a digest."""
        keys = frame["event_key"].astype("string")
        parts = keys.str.split("|", n=2, expand=True) if len(frame) else pd.DataFrame(columns=[0, 1, 2])
        tail = parts[2].astype("string")
        digest = (frame["flags"].astype("int64") & FLAG_NO_TRANSACTION_ID) > 0
        if self.legacy_digest_keys:
            digest |= tail.str.startswith(DIGEST_PREFIX).fillna(False).astype(bool)
        # The digest is told by its flag; `unescaped` undoes the transform's escape of a real id that
        # starts with "row:" (etl/protocol/event_key.py).
        tid = unescaped(tail) if len(frame) else tail
        return parts[0].astype("string"), parts[1].astype("string"), tid.where(~digest.to_numpy(), pd.NA)

    def _check_moved(self, transition: str, ids: Sequence[int], moved: int) -> None:
        """Inside the transition's transaction: refuse (and so roll back) unless every event moved."""
        asked = len(set(ids))
        if moved == asked:
            return
        move = TRANSITIONS[transition]
        # Read inside the transaction, after the UPDATE: the `moved` events are in the target state now
        # (never one of the from-states), every other one is where it was.
        found = dict(self._states_of(transition, ids))
        found[move.target] = found.get(move.target, 0) - moved
        found = {state: n for state, n in found.items() if n}
        if asked > sum(found.values()) + moved:
            found["absent"] = asked - sum(found.values()) - moved
        raise LedgerStateError(transition, move.sources, move.target, asked, found)

    @abstractmethod
    def _states_of(self, transition: str, ids: Sequence[int]) -> Mapping[str, int]:
        """How many of these events are in which state (deferred ones an output holds: `taken`)."""
