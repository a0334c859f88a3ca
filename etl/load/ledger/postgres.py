"""The ledger on PostgreSQL: many workers (shards, machines) share one ledger, none sends an event twice.

Why PostgreSQL: N shard workers on N machines need one durable state with row locks. The states and
guarantees are those of `Ledger` (base.py); what changes is how concurrent workers stay apart:

* **Claims.** A worker takes its pending events page by page with
  `SELECT … FOR UPDATE SKIP LOCKED` and stamps them `claimed_by = <its worker id>` in the same
  statement, so two workers never hold the same event; `mark_in_flight` only moves events the worker
  itself claimed, and refuses otherwise. An event that fails stays claimed by its worker until that
  worker ends, so one run never retries it twice (later runs do).
* **Leases are sessions.** Each worker holds a session-level advisory lock on its worker id for as
  long as its connection lives. A killed worker's connection closes and the server releases the lock;
  `recover_in_flight` treats the claims of workers whose lock is free as abandoned: their `in_flight`
  events become `failed` + `possible_duplicate` (they may have arrived), other claims are cleared.
  Live workers' claims are never touched.
* **Run lock per shard.** `lock()` takes `pg_try_advisory_lock` on the shard (`K/N`): a second run
  of the same shard is refused (exit 5); other shards run at once.
* **Bulk writes.** A chunk is planned with one COPY into a temporary table and two set-based
  statements (take over / insert … ON CONFLICT DO NOTHING), all in one transaction; marks are one
  statement over arrays (`unnest`), one transaction per group.

Tables are prefixed `mpetl_` so the ledger can live in an existing database/schema.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from typing import Any

import numpy as np
import pandas as pd

from etl import __version__
from etl.clock import wall_micros
from etl.errors import ConfigError
from etl.load.ledger.base import (
    DEFER_EXPIRED,
    DEFER_TOO_OLD,
    FLAG_NO_TRANSACTION_ID,
    FLAG_POSSIBLE_DUPLICATE,
    FLAG_RESENT,
    OPEN,
    OUTPUT_TRANSITIONS,
    TRANSITIONS,
    DeferredEvent,
    Ledger,
    NewEvents,
    OutputClaim,
    OutputKind,
    PendingEvent,
)
from etl.load.ledger.errors import LedgerError, LedgerLockedError, LedgerSchemaError, LedgerUnreachableError
from etl.protocol.event_key import LEVEL, tails_for
from etl.shard import Shard, client_hash, client_hashes

SCHEMA_VERSION = 5  # 5: store locations; 4: output claims; 3: request_id (the Data Manager API); 2: the schema row
"""5: `mpetl_events.place` (the request's user_location/device, an id into `mpetl_places`) and the
pending index ordered by it. 4: `csv_run_id`, `historical_run_id` and `mpetl_outputs`
(etl/load/outputs.py). 3: `request_id` (the Data Manager API's requestId). 2: `schema`/`written_by` in
`mpetl_meta`. 1: the first layout, the same tables without that row. A writer upgrades 1 to 4 in place.
A row digest is told by its NULL `transaction_id` column (flag 16 for the base)."""

# Outputs exactly once (etl/load/outputs.py): which output of each kind holds an event (its run id), and
# each output's record. Added to a schema-3 ledger by `_create_schema` (additive, no rewrite of the table).
CLAIM_COLUMN = {"deferred_csv": "csv_run_id", "historical": "historical_run_id", "export": "exported_run_id"}
CLAIM_COLUMNS = tuple(CLAIM_COLUMN.values())
# The refund delta reads an order's refunds by transaction id (Ledger.order_history); writers add it to
# older ledgers at open.
REFUNDS_INDEX = "CREATE INDEX IF NOT EXISTS mpetl_events_refunds ON mpetl_events (transaction_id) WHERE event_name = 'refund'"
OUTPUTS_SCHEMA = """
CREATE INDEX IF NOT EXISTS mpetl_events_csv_free ON mpetl_events (event_date) WHERE state = 'deferred' AND csv_run_id IS NULL;
CREATE INDEX IF NOT EXISTS mpetl_events_historical_free ON mpetl_events (event_date)
    WHERE state = 'deferred' AND historical_run_id IS NULL;
CREATE TABLE IF NOT EXISTS mpetl_outputs (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,              -- deferred_csv | historical | export
    target TEXT NOT NULL,            -- the folder its files go to (BigQuery: the table)
    state TEXT NOT NULL,             -- claimed | written | taken | released
    rows INTEGER NOT NULL,
    files TEXT,                      -- JSON, when written: final path, temporary path, bytes, sha256 (or job_id)
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    settled_at TIMESTAMPTZ,
    PRIMARY KEY (run_id, kind)
);
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS mpetl_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_key TEXT NOT NULL UNIQUE,
    property TEXT,
    source TEXT NOT NULL,
    source_row BIGINT,
    event_name TEXT NOT NULL,
    transaction_id TEXT,
    client_id TEXT NOT NULL,
    client_hash BIGINT NOT NULL,
    user_id TEXT,
    consent SMALLINT NOT NULL DEFAULT 0,
    timestamp_micros BIGINT NOT NULL,
    event_date INTEGER NOT NULL,
    params BYTEA NOT NULL,
    state TEXT NOT NULL,
    flags INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    run_id TEXT NOT NULL,
    created_run_id TEXT NOT NULL,
    prev_run_id TEXT,
    fate_run_id TEXT,
    fate_us BIGINT,
    exported_run_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_by BIGINT,
    request_id TEXT,  -- the Data Manager API's requestId of the request that delivered it
    csv_run_id TEXT,  -- the run whose deferred.csv took it (a claim: etl/load/outputs.py; `mpetl deferred`'s is exported_run_id)
    historical_run_id TEXT  -- the run whose historical write took it (a claim)
    -- place INTEGER: the request's user_location/device (mpetl_places.place; NULL: none), added by PLACES
) WITH (fillfactor = 80);  -- room on each page for HOT updates (claims)
-- Few indexes on purpose: every state change rewrites each index of the row (it cannot be a HOT
-- update), and an event changes state three or four times. Per-run and per-date reads (outcome,
-- reconcile, recovery) run once per run and may scan.
CREATE INDEX IF NOT EXISTS mpetl_events_run ON mpetl_events (run_id);
CREATE INDEX IF NOT EXISTS mpetl_events_to_export ON mpetl_events (event_date) WHERE state = 'deferred' AND exported_run_id IS NULL;
""" + OUTPUTS_SCHEMA + REFUNDS_INDEX + """;
CREATE TABLE IF NOT EXISTS mpetl_runs (
    run_id TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    shard TEXT,
    worker BIGINT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at TIMESTAMPTZ,
    summary_json TEXT
);
CREATE TABLE IF NOT EXISTS mpetl_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
"""Schema 3's tables (schema 1 and 2 had them without the schema row, without request_id); PLACES makes them schema 4."""
# Schema 4, also the upgrade from 1, 2 and 3 (idempotent): a night has a handful of stores and devices, so
# each distinct `"user_location":{…},"device":{…}` text is stored once and an event holds its integer.
PLACES = """
CREATE TABLE IF NOT EXISTS mpetl_places (place INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY, members TEXT NOT NULL UNIQUE);
ALTER TABLE mpetl_events ADD COLUMN IF NOT EXISTS place INTEGER;
CREATE INDEX IF NOT EXISTS mpetl_events_pending_v3 ON mpetl_events (client_id, user_id, consent, place, timestamp_micros, id)
    WHERE state IN ('planned', 'failed');
DROP INDEX IF EXISTS mpetl_events_pending;
"""
# Advisory lock keys (signed 64-bit): hashes of names for the schema and the shards; worker ids are random.
_SCHEMA_LOCK = client_hash("mpetl:schema") >> 1
_PLAN_COLUMNS = ("idx", "event_key", "source", "source_row", "event_name", "transaction_id", "client_id",
                 "client_hash", "user_id", "consent", "timestamp_micros", "event_date", "params", "flags", "too_old",
                 "place")
_RETRIES = 5
_FLAGS = f"flags | CASE WHEN transaction_id IS NULL THEN {FLAG_NO_TRANSACTION_ID} ELSE 0 END"  # a NULL id: a row digest
_NOT_CLAIMED = "not claimed by this worker"


def _shard_lock_key(shard: Shard) -> int:
    return client_hash(f"mpetl:shard:{shard}") >> 1


class PostgresLedger(Ledger):
    """The ledger in a PostgreSQL database (`[ledger] url = "postgresql://user@host:port/db"`)."""

    _request_id = "request_id"  # a reader of a schema-2 ledger has no such column: NULL

    def __init__(self, url: str, *, lock: bool = False, clock: Callable[[], int] = wall_micros,
                 shard: Shard | tuple[int, int] | None = None, read_only: bool = False, scratch: bool = False,
                 page: int = 5000) -> None:
        import psycopg

        self._psycopg = psycopg
        self._driver_errors = (psycopg.Error,)
        self.url = url
        self.location = _redact(url)  # what messages name: never the password
        self.clock = clock
        self.shard = Shard(*shard) if isinstance(shard, tuple) else shard or Shard()
        self._property: str | None = None
        self._read_only = read_only
        self.worker = secrets.randbits(62) + 1
        self._page = page
        self._locked = False
        self._pending_filter: Shard | None = None
        try:
            self.db = psycopg.connect(url, autocommit=True, application_name=f"mpetl shard {self.shard}")
        except psycopg.Error as exc:
            raise LedgerUnreachableError(f"cannot reach the PostgreSQL ledger at {self.location}: "
                                         f"{_first_line(exc)}") from None
        try:
            # The worker's lease: held as long as this session lives, released by the server when it dies.
            self.db.execute("SELECT pg_advisory_lock(%s)", (self.worker,))
            if lock:
                self.lock()
            self._create_schema()
            if scratch:
                self._shadow_tables()
            if read_only:  # reconciliation: the server refuses any write from this session
                self.db.execute("SET default_transaction_read_only = on")
        except BaseException as exc:
            self.close()
            if isinstance(exc, psycopg.Error):
                raise self._driver_error(exc) from exc
            raise

    def _driver_error(self, exc: BaseException) -> LedgerError:
        errors = self._psycopg.errors
        if isinstance(exc, self._psycopg.OperationalError) and not isinstance(exc, errors.QueryCanceled):
            return LedgerUnreachableError(
                f"lost the connection to the PostgreSQL ledger at {self.location} ({_first_line(exc)}); run again "
                "once the server is back: what was committed is kept, events left in flight are sent again "
                "(flagged possible duplicates)")
        if isinstance(exc, errors.InsufficientPrivilege):
            return LedgerError(f"PostgreSQL ledger at {self.location}: the user may not use its tables "
                               f"({_first_line(exc)}); grant it SELECT, INSERT, UPDATE, DELETE on mpetl_*")
        return LedgerError(f"PostgreSQL ledger at {self.location}: {type(exc).__name__}: {_first_line(exc)}")

    # -- plumbing --------------------------------------------------------------------------------
    def _schema_version(self) -> int | None:
        """None when the tables are missing (mpetl_meta is the last table the script creates)."""
        if not self.db.execute("SELECT to_regclass('mpetl_meta') IS NOT NULL").fetchone()[0]:
            return None
        row = self.db.execute("SELECT value FROM mpetl_meta WHERE key = 'schema'").fetchone()
        version = int(row[0]) if row else 1
        if version > SCHEMA_VERSION:
            writer = self.db.execute("SELECT value FROM mpetl_meta WHERE key = 'written_by'").fetchone()
            raise LedgerSchemaError(
                f"PostgreSQL ledger at {self.location}: written by {writer[0] if writer else 'a newer mpetl'} "
                f"(schema {version}); this is mpetl {__version__} (schema {SCHEMA_VERSION}): run the newer mpetl, "
                "nothing was changed")
        return version

    def _create_schema(self) -> None:
        version = self._schema_version()
        if version == SCHEMA_VERSION and not self._read_only and self.db.execute(
                "SELECT to_regclass('mpetl_events_refunds') IS NULL").fetchone()[0]:
            with self.db.transaction():  # a ledger from before the refund delta: add its small index
                self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self.db.execute(REFUNDS_INDEX)
        if version == SCHEMA_VERSION or (self._read_only and version is not None):
            if version is not None and version < 3:
                self._request_id = "NULL"  # a reader of a schema-2 ledger: no request ids yet
            return  # a reader reads an older schema as it is: upgrading is a writer's job
        if self._read_only:
            raise LedgerError(f"PostgreSQL ledger at {self.location}: holds no mpetl tables; nothing to read")
        with self.db.transaction():
            # Concurrent CREATE … IF NOT EXISTS can still collide in the catalogue: serialise it.
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            version = self._schema_version()  # again, under the lock: another writer may have upgraded it
            if version == SCHEMA_VERSION:
                return
            if version is None:
                self.db.execute(SCHEMA)
            # Schema 2 → 3: the Data Manager API's request id (nullable; no rewrite of the table).
            self.db.execute("ALTER TABLE mpetl_events ADD COLUMN IF NOT EXISTS request_id TEXT")
            if version is not None and version < 4:
                self._upgrade_from_3()
                self.db.execute(REFUNDS_INDEX)
            self.db.execute(PLACES)  # schema 4 → 5: store locations (issue 26)
            self.db.execute(
                "INSERT INTO mpetl_meta(key, value) VALUES ('schema', %s), ('written_by', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION), f"mpetl {__version__}"))

    def _upgrade_from_3(self) -> None:
        """Schema 3 → 4: the claim columns and `mpetl_outputs`. Before claims each run wrote what it deferred
        into its own deferred.csv and historical write: those events count as taken by the run that deferred
        them, so nothing is written a second time after the upgrade (`exported_run_id` was `mpetl
        deferred`'s mark all along: it is that channel's claim as it is)."""
        self.db.execute("ALTER TABLE mpetl_events ADD COLUMN IF NOT EXISTS csv_run_id TEXT, "
                        "ADD COLUMN IF NOT EXISTS historical_run_id TEXT")
        self.db.execute("UPDATE mpetl_events SET csv_run_id = coalesce(csv_run_id, fate_run_id), "
                        "historical_run_id = coalesce(historical_run_id, fate_run_id) WHERE state = 'deferred'")
        self.db.execute(OUTPUTS_SCHEMA)

    def _shadow_tables(self) -> None:
        """Dry-run and validate must not change the shared ledger: this session gets temporary copies.

        PostgreSQL searches a session's temporary schema before any other, so the copies shadow the
        real tables for this session only (PostgreSQL's counterpart of SQLite's `VACUUM INTO` copy);
        they vanish with the session. No run lock is needed on a copy.
        """
        with self.db.transaction():
            for table in ("mpetl_events", "mpetl_runs", "mpetl_meta", "mpetl_outputs", "mpetl_places"):
                real = self.db.execute(  # schema-qualified: once the copy exists, the bare name means the copy
                    "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)", (table,)).fetchone()[0]
                self.db.execute(f"CREATE TEMP TABLE {table} (LIKE {real} INCLUDING ALL)")
                overriding = " OVERRIDING SYSTEM VALUE" if table in ("mpetl_events", "mpetl_places") else ""
                self.db.execute(f"INSERT INTO pg_temp.{table}{overriding} SELECT * FROM {real}")
            self.db.execute("SELECT setval(pg_get_serial_sequence('pg_temp.mpetl_events', 'id'), "
                            "GREATEST(1, (SELECT max(id) FROM pg_temp.mpetl_events)))")
            self.db.execute("SELECT setval(pg_get_serial_sequence('pg_temp.mpetl_places', 'place'), "
                            "GREATEST(1, (SELECT max(place) FROM pg_temp.mpetl_places)))")

    def _retrying(self, work, *, transaction: bool = True):
        """Run `work()` (in a transaction unless it is one statement), again if two workers deadlocked
        on shared keys (rare: only keys that two shards both hold)."""
        errors = self._psycopg.errors
        for attempt in range(_RETRIES):
            try:
                if not transaction:  # one statement in autocommit is its own transaction: one round trip
                    return work()
                with self.db.transaction():
                    return work()
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise

    # -- run lifecycle ---------------------------------------------------------------------------
    def lock(self) -> None:
        """One run per shard: a second run of the same shard is refused at once (exit 5)."""
        if self._locked:
            return
        got = self.db.execute("SELECT pg_try_advisory_lock(%s)", (_shard_lock_key(self.shard),)).fetchone()[0]
        if not got:
            raise LedgerLockedError(f"another run holds the ledger {self.location} (shard {self.shard}); "
                                    "refusing to start (nothing sent)")
        self._locked = True

    def close(self) -> None:
        if not hasattr(self, "db") or self.db.closed:
            return
        with suppress(Exception):
            # Failed events this worker claimed become claimable by later runs.
            self.db.execute("UPDATE mpetl_events SET claimed_by = NULL WHERE claimed_by = %s AND state <> 'in_flight'",
                            (self.worker,))
        with suppress(Exception):
            self.db.close()  # ends the session: the advisory locks go with it

    def bind_property(self, measurement_id: str, endpoint: str) -> None:
        """The property is the measurement id (the endpoint may move, e.g. a region); refuse another's events."""
        self._property = measurement_id
        if not self._read_only:
            self.db.execute("INSERT INTO mpetl_meta(key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET "
                            "value = excluded.value", (f"endpoint:{measurement_id}", endpoint))
        other = self.db.execute(
            "SELECT property, count(*) FROM mpetl_events WHERE state IN ('planned', 'failed', 'in_flight') "
            "AND property <> %s GROUP BY property LIMIT 1", (measurement_id,)).fetchone()
        if other:
            raise ConfigError(self.location, "ledger.url",
                              f"holds {other[1]} pending events planned for {other[0]}; this config sends to "
                              f"{measurement_id}. Refusing to send them to another property: give each property "
                              "its own ledger")

    def begin_run(self, run_id: str, mode: str, shard: str | None = None) -> None:
        self.db.execute("INSERT INTO mpetl_runs(run_id, mode, shard, worker) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (run_id) DO NOTHING", (run_id, mode, shard or str(self.shard), self.worker))

    def finish_run(self, run_id: str, summary_json: str) -> None:
        self.db.execute("UPDATE mpetl_runs SET finished_at = clock_timestamp(), summary_json = %s WHERE run_id = %s",
                        (summary_json, run_id))

    def recover_in_flight(self) -> int:
        """In-flight events whose worker is gone may have arrived: failed + possible_duplicate, sent again.

        Gone: a worker whose lease lock is free (its session ended), or this worker itself (a run
        recovers before it sends, so its own in-flight rows can only be leftovers). Claims of dead
        workers are released; a live worker's claims and in-flight events are never touched.
        """
        move = TRANSITIONS["recover_in_flight"]
        recover = (f"UPDATE mpetl_events SET state = '{move.target}', reason = 'crashed_in_flight', "
                   f"flags = flags | {FLAG_POSSIBLE_DUPLICATE}, claimed_by = NULL WHERE {move.where('state')} ")
        recovered = 0
        workers = [w for (w,) in self.db.execute(
            "SELECT DISTINCT claimed_by FROM mpetl_events WHERE claimed_by IS NOT NULL")]
        for worker in workers:
            mine = worker == self.worker
            if not mine and not self.db.execute("SELECT pg_try_advisory_lock(%s)", (worker,)).fetchone()[0]:
                continue  # alive: its claims are its own
            try:
                with self.db.transaction():
                    recovered += self.db.execute(recover + "AND claimed_by = %s", (worker,)).rowcount
                    self.db.execute("UPDATE mpetl_events SET claimed_by = NULL WHERE claimed_by = %s", (worker,))
            finally:
                if not mine:
                    self.db.execute("SELECT pg_advisory_unlock(%s)", (worker,))
        # In-flight rows without a claimer (written by a tool that does not claim) are recovered too.
        return recovered + self.db.execute(recover + "AND claimed_by IS NULL").rowcount

    # -- planning --------------------------------------------------------------------------------
    def plan(self, events: pd.DataFrame, run_id: str, *, oldest_sendable_micros: int) -> pd.Series:
        """As `Ledger.plan`, set-based: COPY the chunk into a temp table, take over, insert the rest.

        Keys another worker inserts at the same moment lose the race quietly (ON CONFLICT DO NOTHING)
        and count as duplicates here: exactly one run owns each key. A take-over needs the same
        client, so a shard never takes an event of another shard's client (it would never send it).
        """
        buckets = pd.Series("duplicate", index=events.index, dtype=object)
        if events.empty:
            return buckets
        if self._property is None:
            raise LedgerError("bind_property() must be called before plan()")
        first = ~events["event_key"].astype(str).duplicated(keep="first").to_numpy()
        positions = np.flatnonzero(first)
        candidates = events.iloc[positions]
        fate_us = self.clock()
        open_states = ", ".join(repr(s) for s in OPEN)

        def work() -> dict[int, str]:
            self.db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS mpetl_plan_chunk (idx BIGINT, event_key TEXT, source TEXT, "
                "source_row BIGINT, event_name TEXT, transaction_id TEXT, client_id TEXT, client_hash BIGINT, "
                "user_id TEXT, consent SMALLINT, timestamp_micros BIGINT, event_date INTEGER, params BYTEA, "
                "flags INTEGER, too_old BOOLEAN, place INTEGER) ON COMMIT DELETE ROWS")
            rows = self._plan_rows(candidates, positions, oldest_sendable_micros)
            with self.db.cursor() as cur:
                with cur.copy(f"COPY mpetl_plan_chunk ({', '.join(_PLAN_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                # Keys an earlier run left pending for the same client: this run takes them over (state and flags kept).
                cur.execute(
                    "UPDATE mpetl_events e SET prev_run_id = e.run_id, run_id = %(run)s "
                    "FROM mpetl_plan_chunk c WHERE e.event_key = c.event_key AND e.client_id = c.client_id "
                    f"AND e.state IN ({open_states}) AND e.run_id <> %(run)s RETURNING c.idx",
                    {"run": run_id})
                verdict = {int(idx): "planned" for (idx,) in cur.fetchall()}
                cur.execute(
                    "INSERT INTO mpetl_events (event_key, property, source, source_row, event_name, transaction_id, "
                    "client_id, client_hash, user_id, consent, timestamp_micros, event_date, params, state, flags, "
                    "reason, run_id, created_run_id, fate_run_id, fate_us, place) "
                    "SELECT event_key, %(prop)s, source, source_row, event_name, transaction_id, client_id, client_hash, "
                    "user_id, consent, timestamp_micros, event_date, params, "
                    "CASE WHEN too_old THEN 'deferred' ELSE 'planned' END, flags, "
                    "CASE WHEN too_old THEN %(too_old)s END, %(run)s, %(run)s, CASE WHEN too_old THEN %(run)s END, "
                    "CASE WHEN too_old THEN %(now)s::bigint END, place "
                    "FROM mpetl_plan_chunk ORDER BY idx ON CONFLICT (event_key) DO NOTHING RETURNING event_key, state",
                    {"run": run_id, "prop": self._property, "too_old": DEFER_TOO_OLD, "now": fate_us})
                inserted = dict(cur.fetchall())
            for pos, key in zip(positions, candidates["event_key"].astype(str), strict=True):
                if key in inserted:
                    verdict[int(pos)] = inserted[key]
            return verdict

        verdict = self._retrying(work)
        values = buckets.to_numpy(copy=True)
        for pos, bucket in verdict.items():
            values[pos] = bucket
        return pd.Series(values, index=events.index, dtype=object)

    def _plan_rows(self, events: pd.DataFrame, positions: np.ndarray, oldest_micros: int) -> list[tuple]:
        new = NewEvents.of(events)
        parts = events["event_key"].astype(str).str.split("|", n=2, expand=True)
        tid = events["transaction_id"].astype("object")
        too_old = np.asarray(new.timestamp_micros, dtype="int64") < oldest_micros
        return list(zip(
            positions.tolist(), new.keys, parts[0].tolist(), new.source_row, parts[1].tolist(),
            tid.where(tid.notna(), None).tolist(), new.client_id,
            _stored_hash(client_hashes(events["client_id"])).tolist(), new.user_id, new.consent, new.timestamp_micros,
            new.event_date, new.params, new.flags.tolist(), too_old.tolist(), self._place_ids(new.place), strict=True))

    def _place_ids(self, members: Sequence[str | None]) -> list[int | None]:
        """Each members text's id in `mpetl_places` (added when new), inside the plan's transaction."""
        distinct = sorted({m for m in members if m is not None})
        if not distinct:
            return [None] * len(members)
        self.db.execute("INSERT INTO mpetl_places (members) SELECT unnest(%s::text[]) ON CONFLICT (members) DO NOTHING",
                        (distinct,))
        ids = dict(self.db.execute("SELECT members, place FROM mpetl_places WHERE members = ANY(%s)", (distinct,)).fetchall())
        return [None if m is None else ids[m] for m in members]

    def withdraw(self, run_id: str, source: str) -> int:
        def work() -> int:
            deleted = self.db.execute(
                "DELETE FROM mpetl_events WHERE run_id = %s AND source = %s AND created_run_id = %s "
                f"AND {TRANSITIONS['withdraw'].where('state', CLAIM_COLUMNS)}", (run_id, source, run_id))
            self.db.execute("UPDATE mpetl_events SET run_id = prev_run_id, prev_run_id = NULL WHERE run_id = %s "
                            "AND source = %s AND prev_run_id IS NOT NULL", (run_id, source))
            return deleted.rowcount

        return self._retrying(work)

    # -- sending ---------------------------------------------------------------------------------
    def snapshot_pending(self, *, shard: tuple[int, int] | None = None) -> int:
        """How many pending events of this shard no live worker holds; `iter_pending` claims them.

        A new pass: what this worker claimed in an earlier pass and did not deliver is offered again.
        """
        self._pending_filter = Shard(*shard) if shard else self.shard
        self.db.execute("UPDATE mpetl_events SET claimed_by = NULL WHERE claimed_by = %s AND state IN ('planned', 'failed')",
                        (self.worker,))
        return self.db.execute(
            "SELECT count(*) FROM mpetl_events WHERE state IN ('planned', 'failed') AND claimed_by IS NULL "
            f"AND property = %s AND {_shard_sql(self._pending_filter)}", (self._property,)).fetchone()[0]

    def iter_pending(self, page: int = 5000) -> Iterator[PendingEvent]:
        """Claim the next page (SKIP LOCKED: rows another worker is claiming are passed over) and yield it.

        Claimed rows carry this worker's id, so the next page never returns them: an event that fails
        stays claimed until this worker closes, and is not retried twice by one run.
        """
        shard = self._pending_filter or self.shard
        size = min(page, self._page)
        while True:
            rows = self.db.execute(
                "WITH c AS (SELECT id FROM mpetl_events WHERE state IN ('planned', 'failed') AND claimed_by IS NULL "
                f"AND property = %s AND {_shard_sql(shard)} ORDER BY client_id, user_id, consent, place, timestamp_micros, id "
                "LIMIT %s FOR UPDATE SKIP LOCKED) "
                "UPDATE mpetl_events e SET claimed_by = %s FROM c WHERE e.id = c.id RETURNING e.id, e.event_key, "
                "e.client_id, e.user_id, e.consent, e.event_name, e.timestamp_micros, e.params, e.source_row, e.flags, "
                "(SELECT p.members FROM mpetl_places p WHERE p.place = e.place), e.place",
                (self._property, size, self.worker)).fetchall()
            if not rows:
                return
            rows.sort(key=lambda r: (r[2], r[3] is not None, r[3] or "", r[4], r[11] is not None, r[11] or 0, r[6], r[0]))
            for r in rows:
                yield PendingEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]), r[8], bool(r[9] & FLAG_RESENT),
                                   None if r[10] is None else r[10].encode())
            if len(rows) < size:
                return

    def _move(self, transition: str, ids: Sequence[int], assignments: str, params: dict[str, Any], *,
              per_event: str = "", claimed: bool = False) -> None:
        """One transition over many events in one transaction: `UPDATE … WHERE <its from-states>`.

        `per_event`: each event's own values, a FROM item `u` joined on `u.id`; `claimed`: only events
        this worker claimed.
        """
        if not len(ids):
            return
        move = TRANSITIONS[transition]
        sets = ", ".join([f"state = '{move.target}'"] + ([assignments] if assignments else []))
        source = f" FROM {per_event} WHERE e.id = u.id" if per_event else " WHERE e.id = ANY(%(ids)s)"
        sql = (f"UPDATE mpetl_events e SET {sets}{source} AND {move.where('e.state', [f'e.{c}' for c in CLAIM_COLUMNS])}"
               + (" AND e.claimed_by = %(worker)s" if claimed else ""))
        params = {**params, "ids": [int(i) for i in ids], "worker": self.worker}

        def work() -> None:
            self._check_moved(transition, ids, self.db.execute(sql, params).rowcount)

        self._retrying(work)

    def _states_of(self, transition: str, ids: Sequence[int]) -> Mapping[str, int]:
        return dict(self.db.execute(
            f"SELECT CASE WHEN {TRANSITIONS['release_output'].where('state', CLAIM_COLUMNS)} THEN 'taken' "
            f"WHEN %(claims)s AND claimed_by IS DISTINCT FROM %(worker)s THEN state || ', {_NOT_CLAIMED}' "
            "ELSE state END, count(*) FROM mpetl_events WHERE id = ANY(%(ids)s) GROUP BY 1",
            {"claims": transition == "mark_in_flight", "worker": self.worker, "ids": [int(i) for i in ids]}).fetchall())

    def mark_in_flight(self, ids: Sequence[int]) -> None:
        # Only events this worker claimed: another worker may be about to send the rest.
        self._move("mark_in_flight", ids, "", {}, claimed=True)

    def _move_each(self, transition: str, ids: Sequence[int], run_id: str, attempts: Sequence[int],
                   maybe_delivered: Sequence[bool], reason: str | None, release: bool,
                   request_ids: Sequence[str | None] | None = None) -> None:
        rids = list(request_ids) if request_ids is not None else [None] * len(ids)
        self._move(
            transition, ids,
            "reason = %(reason)s, fate_run_id = %(run)s, fate_us = %(now)s, attempts = e.attempts + u.attempts, "
            "flags = e.flags | CASE WHEN u.maybe THEN %(dup)s ELSE 0 END, request_id = coalesce(u.rid, e.request_id)"
            + (", claimed_by = NULL" if release else ""),
            {"run": run_id, "now": self.clock(), "att": [int(a) for a in attempts],
             "maybe": [bool(m) for m in maybe_delivered], "reason": reason, "dup": FLAG_POSSIBLE_DUPLICATE, "rid": rids},
            per_event="unnest(%(ids)s::bigint[], %(att)s::int[], %(maybe)s::bool[], %(rid)s::text[]) "
                      "AS u(id, attempts, maybe, rid)")

    def mark_sent(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool],
                  request_ids: Sequence[str | None] | None = None) -> None:
        self._move_each("mark_sent", ids, run_id, attempts, maybe_delivered, None, release=True, request_ids=request_ids)

    def mark_failed(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool],
                    reason: str | None = None) -> None:
        # Still claimed by this worker: this run does not try it again; later runs do (claims end with it).
        self._move_each("mark_failed", ids, run_id, attempts, maybe_delivered, reason, release=False)

    def mark_rejected(self, ids: Sequence[int], run_id: str, reason: str) -> None:
        self._move("mark_rejected", ids, "reason = %(reason)s, fate_run_id = %(run)s, fate_us = %(now)s, claimed_by = NULL",
                   {"reason": reason, "run": run_id, "now": self.clock()})

    def mark_expired(self, ids: Sequence[int], run_id: str) -> None:
        self._move("mark_expired", ids, "reason = %(reason)s, fate_run_id = %(run)s, fate_us = %(now)s, claimed_by = NULL",
                   {"reason": DEFER_EXPIRED, "run": run_id, "now": self.clock()})

    def rejected_at_send(self, run_id: str) -> list[tuple[str, int | None, str]]:
        return [tuple(r) for r in self.db.execute(
            "SELECT source, source_row, reason FROM mpetl_events WHERE fate_run_id = %s AND state = 'rejected' ORDER BY id",
            (run_id,))]

    # -- deferred output -------------------------------------------------------------------------
    def deferred_events(self, *, run_id: str | None = None, unexported: bool = False,
                        since_date: str | None = None) -> Iterator[DeferredEvent]:
        where, args = ["state = 'deferred'"], []
        if self._property is not None:
            where.append("property = %s")
            args.append(self._property)
        if run_id is not None:
            where.append("fate_run_id = %s")
            args.append(run_id)
        if unexported:
            where.append("exported_run_id IS NULL")
        if since_date is not None:
            where.append("event_date >= %s")
            args.append(int(since_date))
        yield from self._deferred_pages(" AND ".join(where), args)

    def _deferred_pages(self, where: str, args: Sequence[object]) -> Iterator[DeferredEvent]:
        """Only iterated inside a public generator (deferred_events, claimed_events): their wrapper maps
        the driver's errors."""
        last = 0
        while True:
            rows = self.db.execute(
                "SELECT id, event_key, source, source_row, client_id, user_id, event_name, timestamp_micros, event_date, "
                "params, reason, fate_run_id, consent, (SELECT p.members FROM mpetl_places p WHERE p.place = e.place) "
                f"FROM mpetl_events e WHERE {where} AND id > %s "
                "ORDER BY id LIMIT %s", (*args, last, self._page)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for r in rows:
                yield DeferredEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], str(r[8]), bytes(r[9]), r[10], r[11],
                                    int(r[12] or 0), None if r[13] is None else r[13].encode())

    # -- outputs exactly once ----------------------------------------------------------------------
    def claim_deferred(self, run_id: str, kind: OutputKind, target: str, *, since_date: str | None = None,
                       deferred_by: str | None = None) -> int:
        """As `Ledger.claim_deferred`; rows a concurrent shard is claiming are skipped (SKIP LOCKED), never
        waited for: they are that shard's, or free again for the next output if its claim rolls back."""
        column = CLAIM_COLUMN[kind]
        if self._property is None:
            raise LedgerError("bind_property() must be called before claim_deferred()")
        where = [TRANSITIONS["claim_deferred"].where("state", column), "property = %(prop)s"]
        if since_date is not None:
            where.append("event_date >= %(since)s")
        if deferred_by is not None:
            where.append("fate_run_id = %(by)s")
        params = {"run": run_id, "prop": self._property, "since": int(since_date) if since_date else None,
                  "by": deferred_by, "kind": kind, "target": target, "state": OUTPUT_TRANSITIONS["claim_deferred"].target}

        def work() -> int:
            if (state := self._output_state(run_id, kind)) is not None:
                raise self._refuse_output(run_id, kind, "claim_deferred", state)
            claimed = self.db.execute(
                f"WITH c AS (SELECT id FROM mpetl_events WHERE {' AND '.join(where)} FOR UPDATE SKIP LOCKED) "
                f"UPDATE mpetl_events e SET {column} = %(run)s FROM c WHERE e.id = c.id", params).rowcount
            self.db.execute("INSERT INTO mpetl_outputs (run_id, kind, target, state, rows) "
                            "VALUES (%(run)s, %(kind)s, %(target)s, %(state)s, %(rows)s)", {**params, "rows": claimed})
            return claimed

        return self._retrying(work)

    def claimed_events(self, run_id: str, kind: OutputKind) -> Iterator[DeferredEvent]:
        column = CLAIM_COLUMN[kind]
        yield from self._deferred_pages(f"{column} = %s AND {TRANSITIONS['release_output'].where('state', column)}",
                                        [run_id])

    def _output_state(self, run_id: str, kind: OutputKind) -> str | None:
        row = self.db.execute("SELECT state FROM mpetl_outputs WHERE run_id = %s AND kind = %s", (run_id, kind)).fetchone()
        return row[0] if row else None

    def _move_output(self, run_id: str, kind: OutputKind, transition: str, files: str | None = None) -> None:
        move = OUTPUT_TRANSITIONS[transition]
        cur = self.db.execute(
            "UPDATE mpetl_outputs SET state = %(to)s, settled_at = clock_timestamp(), files = coalesce(%(files)s, files) "
            f"WHERE run_id = %(run)s AND kind = %(kind)s AND {move.where('state')}",
            {"to": move.target, "files": files, "run": run_id, "kind": kind})
        if cur.rowcount != 1:
            raise self._refuse_output(run_id, kind, transition, self._output_state(run_id, kind))

    def release_output(self, run_id: str, kind: OutputKind) -> int:
        column = CLAIM_COLUMN[kind]

        def work() -> int:
            self._move_output(run_id, kind, "release_output")
            return self.db.execute(
                f"UPDATE mpetl_events SET {column} = NULL WHERE {column} = %s "
                f"AND {TRANSITIONS['release_output'].where('state', column)}", (run_id,)).rowcount

        return self._retrying(work)

    def unsettled_outputs(self, kind: OutputKind) -> list[OutputClaim]:
        """Unsettled outputs of runs whose worker is gone (its lease lock is free); a live shard's are its own."""
        rows = self.db.execute(
            "SELECT o.run_id, o.kind, o.target, o.state, o.rows, o.files, r.worker FROM mpetl_outputs o "
            f"LEFT JOIN mpetl_runs r USING (run_id) WHERE o.kind = %s AND {OUTPUT_TRANSITIONS['output_taken'].where('o.state')} "
            "ORDER BY o.claimed_at", (kind,)).fetchall()
        out = []
        for *claim, worker in rows:
            if worker == self.worker:
                continue  # this session's own run: alive
            if worker is not None:
                if not self.db.execute("SELECT pg_try_advisory_lock(%s)", (worker,)).fetchone()[0]:
                    continue  # alive
                self.db.execute("SELECT pg_advisory_unlock(%s)", (worker,))
            out.append(OutputClaim.from_row(*claim))
        return out

    def output_claim(self, run_id: str, kind: OutputKind) -> OutputClaim | None:
        row = self.db.execute("SELECT run_id, kind, target, state, rows, files FROM mpetl_outputs "
                              "WHERE run_id = %s AND kind = %s", (run_id, kind)).fetchone()
        return OutputClaim.from_row(*row) if row else None

    def deferred_claims(self, run_id: str, kind: OutputKind) -> dict[str, int]:
        column = CLAIM_COLUMN[kind]
        return self._claim_counts(self.db.execute(
            f"SELECT CASE WHEN {column} IS NULL THEN 'unclaimed' WHEN {column} = %(run)s THEN 'this_run' "
            "ELSE 'other_runs' END, count(*) FROM mpetl_events WHERE fate_run_id = %(run)s AND state = 'deferred' "
            "GROUP BY 1", {"run": run_id}))

    # -- reconciliation and resend -----------------------------------------------------------------
    def requeue_for_resend(self, keys: Sequence[str], run_id: str) -> int:
        if not keys:
            return 0
        move = TRANSITIONS["requeue_for_resend"]
        return self._retrying(lambda: self.db.execute(
            f"UPDATE mpetl_events SET state = '{move.target}', flags = flags | %s, claimed_by = NULL "
            f"WHERE event_key = ANY(%s) AND {move.where('state')}", (FLAG_RESENT, list(keys))).rowcount, transaction=False)

    def _sent_rows(self, run_id: str | None, since: str | None, until: str | None) -> Iterable[tuple]:
        if run_id is None and since is None and until is None:
            last = self.db.execute("SELECT fate_run_id FROM mpetl_events WHERE state = 'sent' "
                                   "ORDER BY fate_us DESC, fate_run_id DESC LIMIT 1").fetchone()
            run_id = last[0] if last else ""
        return self.db.execute(
            f"SELECT event_key, event_date, timestamp_micros, fate_us, {_FLAGS}, run_id, fate_run_id, params FROM mpetl_events "
            "WHERE state = 'sent' AND (%(run)s::text IS NULL OR run_id = %(run)s OR fate_run_id = %(run)s) "
            "AND (%(since)s::int IS NULL OR event_date >= %(since)s) AND (%(until)s::int IS NULL OR event_date <= %(until)s) "
            "ORDER BY id",
            {"run": run_id, "since": int(since) if since else None, "until": int(until) if until else None})

    def _order_rows(self, source: str, transaction_ids: Sequence[str]) -> Iterable[tuple]:
        purchases = [f"{source}|purchase|{tail}" for tail in tails_for(pd.Series(list(transaction_ids), dtype="string"))]
        rows = self.db.execute(
            "SELECT event_key, state, params FROM mpetl_events WHERE event_key = ANY(%s) AND state <> 'rejected' "
            "UNION ALL SELECT event_key, state, params FROM mpetl_events WHERE event_name = 'refund' "
            "AND transaction_id = ANY(%s) AND source = %s AND state <> 'rejected' AND position(%s in event_key) > 0",
            (purchases, list(transaction_ids), source, LEVEL)).fetchall()
        return [(key, state, bytes(params)) for key, state, params in rows]

    def _own_rows(self, run_id: str) -> Any:
        return self.db.execute("SELECT event_key, state, reason FROM mpetl_events WHERE run_id = %s", (run_id,))

    def known_keys(self, transaction_ids: Sequence[str]) -> pd.DataFrame:
        rows = self.db.execute("SELECT event_name, transaction_id FROM mpetl_events WHERE transaction_id = ANY(%s)",
                               ([str(t) for t in transaction_ids],)).fetchall()
        return pd.DataFrame(rows, columns=["event_name", "transaction_id"], dtype="string")

    def run_ids(self) -> list[str]:
        return [r for (r,) in self.db.execute("SELECT run_id FROM mpetl_runs ORDER BY started_at, run_id")]

    def _run_summary_rows(self, run_ids: list[str]) -> Iterable[tuple[str, str | None]]:
        return self.db.execute("SELECT run_id, summary_json FROM mpetl_runs WHERE run_id = ANY(%s)",
                               (run_ids,)).fetchall()

    # -- accounting --------------------------------------------------------------------------------
    def _outcome_rows(self, run_id: str) -> tuple[Iterable[tuple], Iterable[tuple], int, int]:
        own = self.db.execute(
            "SELECT source, state, reason, count(*) FROM mpetl_events WHERE run_id = %s GROUP BY 1, 2, 3", (run_id,)).fetchall()
        earlier = self.db.execute(
            "SELECT state, reason, count(*) FROM mpetl_events WHERE fate_run_id = %s AND run_id <> %s GROUP BY 1, 2",
            (run_id, run_id)).fetchall()
        flagged = self.db.execute(
            "SELECT count(*) FILTER (WHERE flags & %s <> 0), count(*) FILTER (WHERE flags & %s <> 0) "
            "FROM mpetl_events WHERE fate_run_id = %s AND state = 'sent'",
            (FLAG_POSSIBLE_DUPLICATE, FLAG_RESENT, run_id)).fetchone()
        return own, earlier, *flagged

    def integrity_ok(self) -> bool:
        """Every event in a known state (the server guards the rest: constraints, WAL, checksums)."""
        bad = self.db.execute(
            "SELECT count(*) FROM mpetl_events WHERE state NOT IN "
            "('planned', 'in_flight', 'sent', 'failed', 'deferred', 'rejected')").fetchone()[0]
        return bad == 0

    def state_counts(self) -> dict[str, int]:
        counts = dict(self.db.execute("SELECT state, count(*) FROM mpetl_events GROUP BY state").fetchall())
        counts["runs"] = self.db.execute("SELECT count(*) FROM mpetl_runs").fetchone()[0]
        return counts

    def _inspect_rows(self) -> Iterable[tuple]:
        return self.db.execute(
            f"SELECT event_key, state, reason, {_FLAGS}, run_id, fate_run_id, attempts, source_row, {self._request_id} "
            "FROM mpetl_events ORDER BY id"
        ).fetchall()


_OFFSET = 1 << 63


def _stored_hash(hashes: np.ndarray) -> np.ndarray:
    """The unsigned 64-bit client hash shifted into a signed BIGINT (PostgreSQL has no unsigned type)."""
    return (np.asarray(hashes, dtype=np.uint64) - np.uint64(_OFFSET)).view(np.int64)


def _shard_sql(shard: Shard) -> str:
    """Shard K/N as SQL on the stored hash: (hash + 2^63) mod N = K − 1 (integers only: safe to inline)."""
    if shard.whole:
        return "TRUE"
    return f"mod(client_hash::numeric + {_OFFSET}, {int(shard.count)}) = {int(shard.index) - 1}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redact(url: str) -> str:
    """The URL without a password (it must never reach a log or an error)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
