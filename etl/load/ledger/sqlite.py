"""The embedded ledger: one SQLite file in WAL mode, one writer at a time (the run lock).

Why SQLite: a kill -9 at any instant leaves a consistent database (committed transactions survive,
the rest roll back), and readers (reconcile, a notebook) never block the writer. Why this row shape:
a night of a million events must stay near 200 bytes an event, so run ids are small integers (the
`runs` table holds the text), times are integer microseconds, consent is a 0..8 code, source and event
name live only in the key, and the event is stored once, as its params object.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from etl.clock import wall_micros
from etl.errors import ConfigError, LedgerError, LedgerLockedError
from etl.load.ledger.base import (
    DEFER_EXPIRED,
    DEFER_TOO_OLD,
    FLAG_HAS_SESSION,
    FLAG_POSSIBLE_DUPLICATE,
    FLAG_RESENT,
    UNSETTLED,
    DeferredEvent,
    Ledger,
    OutputClaim,
    OutputKind,
    PendingEvent,
    RunOutcome,
    bucket_of,
    consent_code,
    params_of,
    refuse_move,
    split_key,
)
from etl.load.shards import shard_of
from etl.lockfile import try_lock

SCHEMA_VERSION = "2"
FLAG_TID_IN_KEY = 8  # this backend's own: the params' transaction_id lives only in the key


def by_fate(alias: str = "") -> str:
    """The partial index's condition, repeated verbatim where a query may use that index (SQLite's rule)."""
    a = f"{alias}." if alias else ""
    return f"({a}fate_run != {a}run OR {a}status IN ('deferred', 'rejected'))"


BY_FATE = by_fate()
OPEN = "status IN ('planned', 'failed', 'in_flight')"  # the pending index's condition, verbatim

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS properties (
    property INTEGER PRIMARY KEY,
    measurement_id TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL               -- where it last sent (for people; the property is the id)
);
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    mode TEXT NOT NULL,
    shard TEXT,
    started_us INTEGER NOT NULL,
    finished_us INTEGER,
    summary_json TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    key_hash INTEGER NOT NULL,       -- 64-bit blake2b of event_key: an 8-byte index instead of the text
    event_key TEXT NOT NULL,         -- source|event_name|transaction_id (or a row digest)
    client_id TEXT NOT NULL,
    user_id TEXT,
    consent INTEGER NOT NULL,        -- 0..8: ad_user_data × ad_personalization (absent/granted/denied)
    ts INTEGER NOT NULL,             -- timestamp_micros
    event_date INTEGER NOT NULL,     -- YYYYMMDD in the property's zone
    params BLOB NOT NULL,            -- the MP params object, without the run marker (nor transaction_id: flag 8)
    status TEXT NOT NULL,            -- planned | in_flight | sent | failed | deferred | rejected
    reason TEXT,                     -- why deferred (too_old, expired), rejected or failed
    property INTEGER NOT NULL,
    run INTEGER NOT NULL,            -- the run whose input row produced it (its owner)
    first_run INTEGER NOT NULL,      -- the run that created it
    prev_run INTEGER,                -- the owner before this run took it over (withdraw gives it back)
    fate_run INTEGER,                -- the run that gave it its current state
    fate_us INTEGER,                 -- when (wall clock) it got that state
    source_row INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    flags INTEGER NOT NULL DEFAULT 0, -- 1 possible_duplicate, 2 resent, 4 has_session, 8 transaction_id in the key
    exported_run INTEGER
);
CREATE INDEX IF NOT EXISTS events_key ON events(key_hash);
CREATE INDEX IF NOT EXISTS events_open ON events(status) WHERE status IN ('planned', 'failed', 'in_flight');
CREATE INDEX IF NOT EXISTS events_run ON events(run);
-- Fates given by another run than the owner, and refusals/deferrals: small, unlike every `sent`.
CREATE INDEX IF NOT EXISTS events_fate_run ON events(fate_run) WHERE (fate_run != run OR status IN ('deferred', 'rejected'));
CREATE INDEX IF NOT EXISTS events_date ON events(event_date);
CREATE INDEX IF NOT EXISTS events_to_export ON events(event_date) WHERE status = 'deferred' AND exported_run IS NULL;
"""

# Outputs exactly once (etl/load/outputs.py): which output of each kind holds an event (a run), and each
# output's record. Added to older ledgers by `_migrate` (columns through ALTER TABLE: additive).
CLAIM_COLUMN = {"deferred_csv": "csv_run", "historical": "historical_run", "export": "exported_run"}
OUTPUTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS outputs (
    run INTEGER NOT NULL,            -- the run whose output it is
    kind TEXT NOT NULL,              -- deferred_csv | historical | export
    target TEXT NOT NULL,            -- the folder its files go to (BigQuery: the table)
    state TEXT NOT NULL,             -- claimed | written | taken | released
    rows INTEGER NOT NULL,           -- events claimed
    files TEXT,                      -- JSON, when written: final path, temporary path, bytes, sha256 (or job_id)
    claimed_us INTEGER NOT NULL,
    settled_us INTEGER,
    PRIMARY KEY (run, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_csv_free ON events(event_date) WHERE status = 'deferred' AND csv_run IS NULL;
CREATE INDEX IF NOT EXISTS events_csv_run ON events(csv_run) WHERE csv_run IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_historical_free ON events(event_date) WHERE status = 'deferred' AND historical_run IS NULL;
CREATE INDEX IF NOT EXISTS events_historical_run ON events(historical_run) WHERE historical_run IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_exported_run ON events(exported_run) WHERE exported_run IS NOT NULL;
"""


def _ids_json(ids: Sequence[int]) -> str:
    return orjson.dumps([int(i) for i in ids]).decode()


def key_hash(event_key: str) -> int:
    """A stable signed 64-bit digest (never Python's salted hash()): the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(event_key.encode(), digest_size=8).digest(), "big", signed=True)


class SqliteLedger(Ledger):
    """The default backend. Hold `lock()` for the whole run: two writers could double-send."""

    def __init__(self, path: Path, *, lock: bool = False, clock: Callable[[], int] = wall_micros,
                 read_only: bool = False, scratch: bool = False) -> None:
        # The lock and the database are one file however it is reached: a symlink or `..` must not
        # give a second run a second lock.
        self.path = Path(path).resolve()
        self.clock = clock
        self._lock_fd: int | None = None
        self._property: int | None = None
        self._runs: dict[str, int] = {}
        if self.path.is_dir():
            raise LedgerError(f"{self.path}: the ledger path is a directory; point [ledger] path at a file")
        if read_only:
            # Reconciliation may run while a send holds the ledger: it must never change what it checks.
            if not self.path.is_file():
                raise LedgerError(f"{self.path}: ledger not found ([ledger] path)")
            try:
                self.db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
                self.db.execute("SELECT k, v FROM meta LIMIT 0")
                self.db.execute("SELECT event_key, status FROM events LIMIT 0")
            except sqlite3.Error as exc:
                self.close()
                raise LedgerError(f"{self.path}: not a readable mpetl ledger ({exc})") from None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot create the ledger's folder ({exc.strerror})") from None
        if lock:
            # Before the first statement: a second run must refuse (exit 5), not trip over the first
            # run's locks while it switches a new file to WAL and creates the tables.
            self.lock()
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            # A scratch copy (dry-run, validate) is thrown away after the run: no need to survive power loss.
            self.db.execute("PRAGMA synchronous=OFF" if scratch else "PRAGMA synchronous=NORMAL")
            # Marks touch rows all over the file: a 64 MB page cache keeps the hot pages, and the WAL is
            # checkpointed every ~40 MB so it never grows without bound during a long send.
            self.db.execute("PRAGMA cache_size=-65536")
            self.db.execute("PRAGMA wal_autocheckpoint=10000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise LedgerError(f"{self.path}: not a usable mpetl ledger ({exc}); restore it from a backup or "
                              "point [ledger] path at a new file") from None

    def _migrate(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "events" in tables and "meta" not in tables:
            raise LedgerError(f"{self.path}: a ledger from an older mpetl (schema 1); move it aside and start a "
                              "new one (its sent events would otherwise be sent again)")
        self.db.executescript(SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        self._add_output_claims()

    def _add_output_claims(self) -> None:
        """The claim columns and the `outputs` table (additive). A ledger from before them wrote each
        deferred event into the files of the run that deferred it: those count as taken by that run."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(events)")}
        if "csv_run" not in columns:
            with self._transaction():
                self.db.execute("ALTER TABLE events ADD COLUMN csv_run INTEGER")
                self.db.execute("ALTER TABLE events ADD COLUMN historical_run INTEGER")
                self.db.execute("UPDATE events SET csv_run = fate_run, historical_run = fate_run WHERE status = 'deferred'")
        self.db.executescript(OUTPUTS_SCHEMA)

    # -- run lifecycle -------------------------------------------------------------------------
    def lock(self) -> None:
        if self._lock_fd is not None:
            return
        try:
            fd = try_lock(str(self.path) + ".lock")
        except OSError as exc:
            raise LedgerError(f"{self.path}.lock: cannot create the run lock ({exc.strerror})") from None
        if fd is None:
            raise LedgerLockedError(f"another run holds the ledger {self.path}; refusing to start (nothing sent)")
        self._lock_fd = fd

    def close(self) -> None:
        if hasattr(self, "db"):
            with suppress(sqlite3.Error):
                self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def copy_to(self, target: Path) -> None:
        """A consistent copy (dry-run and validate work on one, never on the real ledger)."""
        self.db.execute("VACUUM INTO ?", (str(target),))

    def bind_property(self, measurement_id: str, endpoint: str) -> None:
        self.db.execute("INSERT INTO properties(measurement_id, endpoint) VALUES (?, ?) "
                        "ON CONFLICT(measurement_id) DO UPDATE SET endpoint = excluded.endpoint", (measurement_id, endpoint))
        self._property = self.db.execute(
            "SELECT property FROM properties WHERE measurement_id = ?", (measurement_id,)
        ).fetchone()[0]
        foreign = self.db.execute(
            "SELECT p.measurement_id, p.endpoint, COUNT(*) FROM events e JOIN properties p USING (property) "
            "WHERE e.status IN ('planned', 'failed', 'in_flight') AND e.property != ? GROUP BY p.property LIMIT 1",
            (self._property,),
        ).fetchone()
        if foreign:
            mid, ep, count = foreign
            raise ConfigError(str(self.path), "ledger.path",
                              f"holds {count} pending events planned for {mid} (last sent to {ep}); this config "
                              f"sends to {measurement_id}. Refusing to send them to another property: give each "
                              "property its own ledger")

    def begin_run(self, run_id: str, mode: str, shard: str | None = None) -> None:
        cur = self.db.execute("INSERT INTO runs(run_id, mode, shard, started_us) VALUES (?, ?, ?, ?)",
                              (run_id, mode, shard, self.clock()))
        self._runs[run_id] = cur.lastrowid

    def _run(self, run_id: str) -> int:
        if run_id not in self._runs:
            row = self.db.execute("SELECT run FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                cur = self.db.execute("INSERT INTO runs(run_id, mode, started_us) VALUES (?, 'external', ?)",
                                      (run_id, self.clock()))
                self._runs[run_id] = cur.lastrowid
            else:
                self._runs[run_id] = row[0]
        return self._runs[run_id]

    def finish_run(self, run_id: str, summary_json: str) -> None:
        self.db.execute("UPDATE runs SET finished_us = ?, summary_json = ? WHERE run = ?",
                        (self.clock(), summary_json, self._run(run_id)))
        # Keep the WAL file small between nights.
        with suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def recover_in_flight(self) -> int:
        cur = self.db.execute(
            "UPDATE events SET status = 'failed', reason = 'crashed_in_flight', flags = flags | ? "
            f"WHERE status = 'in_flight' AND {OPEN}",
            (FLAG_POSSIBLE_DUPLICATE,),
        )
        return cur.rowcount

    # -- planning ------------------------------------------------------------------------------
    def plan(self, events: pd.DataFrame, run_id: str, *, oldest_sendable_micros: int) -> pd.Series:
        buckets = pd.Series("planned", index=events.index, dtype=object)
        if events.empty:
            return buckets
        if self._property is None:
            raise LedgerError("bind_property() must be called before plan()")
        run = self._run(run_id)
        keys = events["event_key"].astype(str)
        in_chunk_dup = keys.duplicated(keep="first").to_numpy()
        buckets[in_chunk_dup] = "duplicate"
        hashes = [key_hash(k) for k in keys]
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS chunk_keys(key_hash INTEGER, event_key TEXT)")
        with self._transaction():
            self.db.execute("DELETE FROM chunk_keys")
            self.db.executemany("INSERT INTO chunk_keys VALUES (?, ?)",
                                ((h, k) for h, k, dup in zip(hashes, keys, in_chunk_dup, strict=True) if not dup))
            existing = self.db.execute(
                "SELECT e.event_key, e.id, e.status, e.run FROM chunk_keys c "
                "JOIN events e ON e.key_hash = c.key_hash AND e.event_key = c.event_key"
            ).fetchall()
            take_over: list[tuple[int, int]] = []
            dup_keys: set[str] = set()
            for key, eid, status, owner in existing:
                if status in ("planned", "failed", "in_flight") and owner != run:
                    take_over.append((owner, eid))
                else:
                    dup_keys.add(key)
            if dup_keys:
                buckets[keys.isin(dup_keys).to_numpy() & ~in_chunk_dup] = "duplicate"
            if take_over:
                self.db.executemany("UPDATE events SET prev_run = ?, run = ? WHERE id = ?",
                                    ((owner, run, eid) for owner, eid in take_over))
            known = {k for k, *_ in existing}
            new = ~in_chunk_dup & ~keys.isin(known).to_numpy()
            ts = events["timestamp_micros"].to_numpy(dtype="int64")
            too_old = new & (ts < oldest_sendable_micros)
            buckets[too_old] = "deferred"
            if new.any():
                # Rows of one identity get neighbouring ids, so the marks of a request (and of a window
                # of requests, which the sender takes in identity order) land on few pages.
                fresh = events[new].assign(_too_old=too_old[new], _hash=np.asarray(hashes, dtype="int64")[new])
                fresh = fresh.sort_values(["client_id", "user_id", "consent_json", "timestamp_micros"], kind="stable",
                                          na_position="first")
                self._insert(fresh, fresh.pop("_too_old").to_numpy(), fresh.pop("_hash").tolist(), run)
        return buckets

    def _insert(self, events: pd.DataFrame, too_old: np.ndarray, hashes: list[int], run: int) -> None:
        keys = events["event_key"].astype(str).tolist()
        params, stripped = zip(*map(_strip_tid, params_of(events["event_json"]), keys), strict=True)
        consent = events["consent_json"].astype("object").map(
            lambda v, cache={}: cache.setdefault(v, consent_code(None if v is pd.NA else v)))
        user = events["user_id"].astype("object").where(events["user_id"].notna(), None)
        flags = (np.where(events["has_session"].to_numpy(dtype=bool), FLAG_HAS_SESSION, 0)
                 | np.where(np.asarray(stripped, dtype=bool), FLAG_TID_IN_KEY, 0))
        status = np.where(too_old, "deferred", "planned")
        reason = np.where(too_old, DEFER_TOO_OLD, None)
        fate_run = np.where(too_old, run, None)
        now = self.clock()
        fate_us = np.where(too_old, now, None)
        rows = zip(
            hashes, keys, events["client_id"].astype(str).tolist(), user.tolist(),
            consent.tolist(), events["timestamp_micros"].astype("int64").tolist(),
            pd.to_numeric(events["event_date"]).astype("int64").tolist(), params, status.tolist(), reason.tolist(),
            fate_run.tolist(), fate_us.tolist(), events["row"].astype("int64").tolist(), flags.tolist(),
            strict=True,
        )
        prop = self._property
        self.db.executemany(
            "INSERT INTO events(key_hash, event_key, client_id, user_id, consent, ts, event_date, params, status, reason, "
            f"fate_run, fate_us, source_row, flags, property, run, first_run) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,{prop},{run},{run})",
            rows,
        )

    def withdraw(self, run_id: str, source: str) -> int:
        run = self._run(run_id)
        prefix = source + "|"
        with self._transaction():
            deleted = self.db.execute(
                "DELETE FROM events WHERE run = ? AND first_run = ? AND substr(event_key, 1, ?) = ?",
                (run, run, len(prefix), prefix),
            ).rowcount
            self.db.execute(
                "UPDATE events SET run = prev_run, prev_run = NULL WHERE run = ? AND prev_run IS NOT NULL "
                "AND substr(event_key, 1, ?) = ?",
                (run, len(prefix), prefix),
            )
        return deleted

    # -- sending -------------------------------------------------------------------------------
    def snapshot_pending(self, *, shard: tuple[int, int] | None = None) -> int:
        self.db.execute("DROP TABLE IF EXISTS temp.send_queue")
        self.db.execute("CREATE TEMP TABLE send_queue(seq INTEGER PRIMARY KEY, id INTEGER NOT NULL)")
        where, args = f"status IN ('planned', 'failed') AND {OPEN} AND property = ?", [self._property]
        if shard is not None:
            self.db.create_function("mpetl_shard", 2, shard_of, deterministic=True)
            where += " AND mpetl_shard(client_id, ?) = ?"
            args += [shard[1], shard[0]]
        self.db.execute(
            f"INSERT INTO send_queue(id) SELECT id FROM events WHERE {where} "
            "ORDER BY client_id, IFNULL(user_id, ''), consent, ts, id",
            args,
        )
        return self.db.execute("SELECT COUNT(*) FROM send_queue").fetchone()[0]

    def iter_pending(self, page: int = 5000) -> Iterator[PendingEvent]:
        last = 0
        while True:
            rows = self.db.execute(
                "SELECT q.seq, e.id, e.event_key, e.client_id, e.user_id, e.consent, e.ts, e.params, e.source_row, e.flags "
                "FROM send_queue q JOIN events e USING (id) WHERE q.seq > ? ORDER BY q.seq LIMIT ?",
                (last, page),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _seq, eid, key, client_id, user_id, consent, ts, params, row, flags in rows:
                yield PendingEvent(eid, key, client_id, user_id, consent, key.split("|", 2)[1], ts,
                                   _restore_tid(params, key, flags), row)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (IMMEDIATE) and rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _update(self, sql: str, ids: Sequence[int], *args: object) -> None:
        if not len(ids):
            return
        with self._transaction():
            self.db.execute(sql + " WHERE id IN (SELECT value FROM json_each(?))", (*args, _ids_json(ids)))

    def _update_each(self, sql: str, rows: Sequence[tuple]) -> None:
        if not rows:
            return
        with self._transaction():
            self.db.executemany(sql, rows)

    def mark_in_flight(self, ids: Sequence[int]) -> None:
        self._update("UPDATE events SET status = 'in_flight'", ids)

    def mark_sent(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool]) -> None:
        run, now = self._run(run_id), self.clock()
        self._update_each(
            "UPDATE events SET status = 'sent', reason = NULL, fate_run = ?, fate_us = ?, attempts = attempts + ?, "
            "flags = flags | ? WHERE id = ?",
            [(run, now, a, FLAG_POSSIBLE_DUPLICATE if m else 0, i) for i, a, m in zip(ids, attempts, maybe_delivered, strict=True)],
        )

    def mark_failed(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool],
                    reason: str | None = None) -> None:
        run, now = self._run(run_id), self.clock()
        self._update_each(
            "UPDATE events SET status = 'failed', reason = ?, fate_run = ?, fate_us = ?, attempts = attempts + ?, "
            "flags = flags | ? WHERE id = ?",
            [(reason, run, now, a, FLAG_POSSIBLE_DUPLICATE if m else 0, i)
             for i, a, m in zip(ids, attempts, maybe_delivered, strict=True)],
        )

    def mark_rejected(self, ids: Sequence[int], run_id: str, reason: str) -> None:
        self._update("UPDATE events SET status = 'rejected', reason = ?, fate_run = ?, fate_us = ?",
                     ids, reason, self._run(run_id), self.clock())

    def mark_expired(self, ids: Sequence[int], run_id: str) -> None:
        self._update("UPDATE events SET status = 'deferred', reason = ?, fate_run = ?, fate_us = ?",
                     ids, DEFER_EXPIRED, self._run(run_id), self.clock())

    def refused(self, run_id: str) -> list[tuple[str, int | None, str]]:
        return [(split_key(key)[0], row, reason) for key, row, reason in self.db.execute(
            f"SELECT event_key, source_row, reason FROM events WHERE fate_run = ? AND status = 'rejected' AND {BY_FATE} "
            "ORDER BY id",
            (self._run(run_id),))]

    # -- deferred output -----------------------------------------------------------------------
    def deferred_events(self, *, run_id: str | None = None, unexported: bool = False,
                        since_date: str | None = None) -> Iterator[DeferredEvent]:
        where, args = ["e.status = 'deferred'"], []
        if self._property is not None:
            where.append("e.property = ?")
            args.append(self._property)
        if run_id is not None:
            where.append("e.fate_run = ?")
            where.append(by_fate("e"))
            args.append(self._run(run_id))
        if unexported:
            where.append("e.exported_run IS NULL")
        if since_date is not None:
            where.append("e.event_date >= ?")
            args.append(int(since_date))
        return self._deferred_pages(" AND ".join(where), args)

    def _deferred_pages(self, where: str, args: Sequence[object]) -> Iterator[DeferredEvent]:
        last = 0
        while True:
            rows = self.db.execute(
                "SELECT e.id, e.event_key, e.source_row, e.client_id, e.user_id, e.ts, e.event_date, e.params, e.reason, "
                f"r.run_id, e.flags, e.consent FROM events e LEFT JOIN runs r ON r.run = e.fate_run WHERE {where} "
                "AND e.id > ? ORDER BY e.id LIMIT 5000",
                (*args, last),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for eid, key, row, client_id, user_id, ts, day, params, reason, rid, flags, consent in rows:
                source, name, _ = split_key(key)
                yield DeferredEvent(eid, key, source, row, client_id, user_id, name, ts, str(day),
                                    _restore_tid(params, key, flags), reason, rid, consent)

    def mark_exported(self, ids: Sequence[int], run_id: str) -> None:
        self._update("UPDATE events SET exported_run = ?", ids, self._run(run_id))

    # -- outputs exactly once ----------------------------------------------------------------------
    def claim_deferred(self, run_id: str, kind: OutputKind, target: str, *, since_date: str | None = None,
                       deferred_by: str | None = None) -> int:
        column, run = CLAIM_COLUMN[kind], self._run(run_id)
        if self._property is None:
            raise LedgerError("bind_property() must be called before claim_deferred()")
        where, args = [f"status = 'deferred' AND {column} IS NULL", "property = ?"], [self._property]
        if since_date is not None:
            where.append("event_date >= ?")
            args.append(int(since_date))
        if deferred_by is not None:
            where.append(f"fate_run = ? AND {BY_FATE}")
            args.append(self._run(deferred_by))
        with self._transaction():
            claimed = self.db.execute(f"UPDATE events SET {column} = ? WHERE {' AND '.join(where)}",
                                      (run, *args)).rowcount
            self.db.execute("INSERT INTO outputs(run, kind, target, state, rows, claimed_us) VALUES (?, ?, ?, 'claimed', ?, ?)",
                            (run, kind, target, claimed, self.clock()))
        return claimed

    def claimed_events(self, run_id: str, kind: OutputKind) -> Iterator[DeferredEvent]:
        return self._deferred_pages(f"e.{CLAIM_COLUMN[kind]} = ? AND e.status = 'deferred'", [self._run(run_id)])

    def _move_output(self, run_id: str, kind: OutputKind, to: str, from_states: tuple[str, ...],
                     files: str | None = None) -> None:
        sql = (f"UPDATE outputs SET state = ?, settled_us = ?{', files = ?' if files is not None else ''} "
               f"WHERE run = ? AND kind = ? AND state IN ({', '.join('?' * len(from_states))})")
        args = (to, self.clock(), *([files] if files is not None else []), self._run(run_id), kind, *from_states)
        if self.db.execute(sql, args).rowcount != 1:
            raise refuse_move(run_id, kind, to, from_states)

    def release_output(self, run_id: str, kind: OutputKind) -> int:
        column, run = CLAIM_COLUMN[kind], self._run(run_id)
        with self._transaction():
            released = self.db.execute(f"UPDATE events SET {column} = NULL WHERE {column} = ? AND status = 'deferred'",
                                       (run,)).rowcount
            self._move_output(run_id, kind, "released", (*UNSETTLED, "taken"))
        return released

    def unsettled_outputs(self, kind: OutputKind) -> list[OutputClaim]:
        # One run at a time holds this ledger (the run lock): every other run's unsettled output is a dead one's.
        return [OutputClaim.from_row(*row) for row in self.db.execute(
            "SELECT r.run_id, o.kind, o.target, o.state, o.rows, o.files FROM outputs o JOIN runs r USING (run) "
            f"WHERE o.kind = ? AND o.state IN {UNSETTLED!r} ORDER BY o.run", (kind,))]

    def output_claim(self, run_id: str, kind: OutputKind) -> OutputClaim | None:
        row = self.db.execute(
            "SELECT r.run_id, o.kind, o.target, o.state, o.rows, o.files FROM outputs o JOIN runs r USING (run) "
            "WHERE r.run_id = ? AND o.kind = ?", (run_id, kind)).fetchone()
        return OutputClaim.from_row(*row) if row else None


    def deferred_claims(self, run_id: str, kind: OutputKind) -> dict[str, int]:
        column, run = CLAIM_COLUMN[kind], self._run(run_id)
        counts = dict.fromkeys(("this_run", "other_runs", "unclaimed"), 0)
        for holder, n in self.db.execute(
                f"SELECT CASE WHEN {column} IS NULL THEN 'unclaimed' WHEN {column} = ? THEN 'this_run' ELSE 'other_runs' END, "
                f"COUNT(*) FROM events WHERE fate_run = ? AND status = 'deferred' AND {BY_FATE} GROUP BY 1", (run, run)):
            counts[holder] = n
        return counts

    # -- reconciliation and resend ---------------------------------------------------------------
    def requeue_for_resend(self, keys: Sequence[str], run_id: str) -> int:
        self._run(run_id)
        if not keys:
            return 0
        with self._transaction():
            n = self.db.execute(
                "UPDATE events SET status = 'planned', flags = flags | ? WHERE status = 'sent' AND id IN "
                "(SELECT e.id FROM json_each(?) j JOIN events e ON e.key_hash = j.value ->> 0 AND e.event_key = j.value ->> 1)",
                (FLAG_RESENT, orjson.dumps([[key_hash(k), k] for k in keys]).decode()),
            ).rowcount
        return n

    def for_reconcile(self, *, run_id: str | None = None, since: str | None = None,
                      until: str | None = None) -> pd.DataFrame:
        run = None
        if run_id is None and since is None and until is None:
            row = self.db.execute(
                "SELECT fate_run FROM events WHERE status = 'sent' ORDER BY fate_us DESC, fate_run DESC LIMIT 1"
            ).fetchone()
            run = row[0] if row else -1
        elif run_id is not None:
            row = self.db.execute("SELECT run FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            run = row[0] if row else -1
        sql = (
            "SELECT e.event_key, e.event_date, e.ts, e.fate_us, e.flags, o.run_id AS run_id, f.run_id AS sent_run_id "
            "FROM events e JOIN runs o ON o.run = e.run LEFT JOIN runs f ON f.run = e.fate_run "
            "WHERE e.status = 'sent' AND (:since IS NULL OR e.event_date >= :since) AND (:until IS NULL OR e.event_date <= :until) "
        )
        if run is not None:
            # Produced by the run, or delivered by it for an earlier one (the small fate index).
            sql = f"{sql} AND e.run = :run UNION ALL {sql} AND e.fate_run = :run AND e.run != :run AND {by_fate('e')}"
        params = {"run": run, "since": int(since) if since else None, "until": int(until) if until else None}
        frame = pd.DataFrame(self.db.execute(sql, params).fetchall(),
                             columns=["event_key", "event_date", "timestamp_micros", "sent_at_micros", "flags",
                                      "run_id", "sent_run_id"])
        parts = frame["event_key"].str.split("|", n=2, expand=True) if len(frame) else pd.DataFrame(columns=[0, 1, 2])
        out = pd.DataFrame({
            "event_key": frame["event_key"].astype("string"),
            "event_date": frame["event_date"].astype(str).astype("string"),
            "event_name": parts[1].astype("string"),
            "transaction_id": parts[2].astype("string").where(~parts[2].astype("string").str.startswith("row:"), pd.NA),
            "source": parts[0].astype("string"),
            "run_id": frame["run_id"].astype("string"),
            "sent_run_id": frame["sent_run_id"].astype("string"),
            "timestamp_micros": frame["timestamp_micros"].astype("int64"),
            "sent_at_micros": frame["sent_at_micros"].astype("Int64"),
            "possible_duplicate": (frame["flags"].astype("int64") & FLAG_POSSIBLE_DUPLICATE) > 0,
            "resent": (frame["flags"].astype("int64") & FLAG_RESENT) > 0,
        })
        return out

    def known_keys(self, transaction_ids: Sequence[str]) -> pd.DataFrame:
        # The key holds the id; without a column of its own this is one scan, asked only for the
        # export's unexplained ids (reconciliation's extras).
        wanted = {str(t) for t in transaction_ids}
        found: list[tuple[str, str]] = []
        if wanted:
            for (key,) in self.db.execute("SELECT event_key FROM events"):
                _, name, tail = split_key(key)
                if tail in wanted:
                    found.append((name, tail))
        return pd.DataFrame(found, columns=["event_name", "transaction_id"], dtype="string")

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY run")]

    # -- accounting ----------------------------------------------------------------------------
    def outcome(self, run_id: str) -> RunOutcome:
        run = self._run(run_id)
        out = RunOutcome()
        rows = self.db.execute(
            "SELECT substr(event_key, 1, instr(event_key, '|') - 1), status, reason, COUNT(*) FROM events "
            "WHERE run = ? GROUP BY 1, 2, 3", (run,)
        ).fetchall()
        for source, status, reason, n in rows:
            bucket = bucket_of(status, reason)
            per = out.by_source.setdefault(source, {})
            per[bucket] = per.get(bucket, 0) + n
        for status, reason, n in self.db.execute(
            f"SELECT status, reason, COUNT(*) FROM events WHERE fate_run = ? AND run != ? AND {BY_FATE} GROUP BY 1, 2",
            (run, run),
        ):
            bucket = bucket_of(status, reason)
            out.earlier_runs[bucket] = out.earlier_runs.get(bucket, 0) + n
        # Sent by this run: its own events (by owner) and earlier runs' (the small fate index).
        out.possible_duplicates, out.resent = self.db.execute(
            "SELECT IFNULL(SUM(flags & ? > 0), 0), IFNULL(SUM(flags & ? > 0), 0) FROM ("
            "SELECT flags FROM events WHERE run = ? AND fate_run = ? AND status = 'sent' UNION ALL "
            f"SELECT flags FROM events WHERE fate_run = ? AND run != ? AND status = 'sent' AND {BY_FATE})",
            (FLAG_POSSIBLE_DUPLICATE, FLAG_RESENT, run, run, run, run),
        ).fetchone()
        return out

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def state_counts(self) -> dict[str, int]:
        counts = dict(self.db.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall())
        counts["runs"] = self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return counts

    def inspect(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.db.execute(
            "SELECT e.event_key, e.status, e.reason, e.flags, o.run_id, f.run_id, e.attempts, e.source_row "
            "FROM events e JOIN runs o ON o.run = e.run LEFT JOIN runs f ON f.run = e.fate_run ORDER BY e.id"
        ).fetchall(), columns=["event_key", "status", "reason", "flags", "run_id", "sent_run_id", "attempts", "source_row"])
        parts = frame["event_key"].str.split("|", n=2, expand=True) if len(frame) else pd.DataFrame(columns=[0, 1, 2])
        frame.insert(1, "event_name", parts[1])
        frame.insert(2, "transaction_id", parts[2])
        flags = frame.pop("flags").astype("int64")
        frame["possible_duplicate"] = (flags & FLAG_POSSIBLE_DUPLICATE) > 0
        frame["resent"] = (flags & FLAG_RESENT) > 0
        return frame


def _strip_tid(params: bytes, key: str) -> tuple[bytes, bool]:
    """Drop the leading transaction_id member (the key holds it): ~25 bytes a row; `_restore_tid` undoes it."""
    prefix = b'{"transaction_id":' + orjson.dumps(key.split("|", 2)[2])
    if params.startswith(prefix):
        rest = params[len(prefix):]
        if rest[:1] == b",":
            return b"{" + rest[1:], True
        if rest == b"}":
            return b"{}", True
    return params, False


def _restore_tid(params: bytes, key: str, flags: int) -> bytes:
    if not flags & FLAG_TID_IN_KEY:
        return params
    member = b'"transaction_id":' + orjson.dumps(key.split("|", 2)[2])
    return b"{" + member + (b"}" if params == b"{}" else b"," + params[1:])
