"""The embedded ledger: one SQLite file in WAL mode, one writer at a time (the run lock).

Why SQLite: a kill -9 at any instant leaves a consistent database (committed transactions survive,
the rest roll back), and readers (reconcile, a notebook) never block the writer. Why this row shape:
a night of a million events must stay near 200 bytes an event, so run ids are small integers (the
`runs` table holds the text), times are integer microseconds, consent is a 0..8 code, source and event
name live only in the key, and the event is stored once, as its params object.

Why the run lock is an flock on the database file itself: the kernel keys it by the file (its
inode), so every name of the ledger — a symlink, a `..` path, a hard link, a bind mount — meets the
same lock, and it is dropped when the process dies (kill -9 included). A side file named after the
path (`ledger.sqlite.lock`) is not: a hard link has its own path, hence its own side file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import orjson
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
    split_key,
)
from etl.load.ledger.errors import (
    LedgerDamagedError,
    LedgerError,
    LedgerLockedError,
    LedgerSchemaError,
)
from etl.protocol.event_key import LEVEL, tails_for, transaction_id_of
from etl.shard import client_shard

SCHEMA_VERSION = 6
"""6: `events.place` (the request's user_location/device, an id into `places`). 5: output claims
(`csv_run`, `historical_run` and the `outputs` table: etl/load/outputs.py). 4: `request_id` (the Data
Manager API's requestId of the request that delivered an event). 3: schema version and writer in
`meta`, flag 16 (the key's tail is a row digest). 2: `meta`, integer runs, params without the marker
(its first layout, before 2026-11-29 19:39, had no `key_hash`; 2 to 5 are upgraded in place).
1: the first ledger (one `events` table, no `meta`): not readable."""
FLAG_TID_IN_KEY = 8  # this backend's own: the params' transaction_id lives only in the key


def by_fate(alias: str = "") -> str:
    """The partial index's condition, repeated verbatim where a query may use that index (SQLite's rule)."""
    a = f"{alias}." if alias else ""
    return f"({a}fate_run != {a}run OR {a}status IN ('deferred', 'rejected'))"


BY_FATE = by_fate()
OPEN_SQL = f"status IN ({', '.join(repr(s) for s in OPEN)})"  # the open-events index's condition, verbatim

EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    key_hash INTEGER NOT NULL,       -- 64-bit blake2b of event_key: an 8-byte index instead of the text
    event_key TEXT NOT NULL,         -- source|event_name|transaction_id (or a row digest: flag 16)
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
    flags INTEGER NOT NULL DEFAULT 0, -- 1 possible_duplicate, 2 resent, 4 has_session, 8 transaction_id in the key, 16 no transaction id
    exported_run INTEGER,            -- the `mpetl deferred` export that took it (a claim: etl/load/outputs.py)
    request_id TEXT,                 -- the Data Manager API's requestId of the request that delivered it
    csv_run INTEGER,                 -- the run whose deferred.csv took it (a claim)
    historical_run INTEGER,          -- the run whose historical write took it (a claim)
    place INTEGER                    -- the request's user_location/device (places.place); NULL: none
);
"""
REFUNDS_INDEX = "CREATE INDEX IF NOT EXISTS events_refunds ON events(event_key) WHERE instr(event_key, '|refund|') > 0"
# A night has a handful of stores and devices: each distinct `"user_location":{…},"device":{…}` text is
# stored once, and an event holds its small integer (1–2 bytes) instead of ~120 bytes of JSON.
PLACES_TABLE = """
CREATE TABLE IF NOT EXISTS places (place INTEGER PRIMARY KEY, members TEXT NOT NULL UNIQUE);
"""
EVENTS_INDEXES = """
CREATE INDEX IF NOT EXISTS events_key ON events(key_hash);
CREATE INDEX IF NOT EXISTS events_open ON events(status) WHERE status IN ('planned', 'failed', 'in_flight');
CREATE INDEX IF NOT EXISTS events_run ON events(run);
-- Fates given by another run than the owner, and refusals/deferrals: small, unlike every `sent`.
CREATE INDEX IF NOT EXISTS events_fate_run ON events(fate_run) WHERE (fate_run != run OR status IN ('deferred', 'rejected'));
CREATE INDEX IF NOT EXISTS events_date ON events(event_date);
CREATE INDEX IF NOT EXISTS events_to_export ON events(event_date) WHERE status = 'deferred' AND exported_run IS NULL;
CREATE INDEX IF NOT EXISTS events_refunds ON events(event_key) WHERE instr(event_key, '|refund|') > 0;
"""
# Outputs exactly once (etl/load/outputs.py): which output of each kind holds an event (its run), and each
# output's record. Added to a schema-4 ledger by `_upgrade_from_4`.
CLAIM_COLUMN = {"deferred_csv": "csv_run", "historical": "historical_run", "export": "exported_run"}
CLAIM_COLUMNS = tuple(CLAIM_COLUMN.values())
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
""" + PLACES_TABLE + EVENTS_TABLE + EVENTS_INDEXES + OUTPUTS_SCHEMA
_EVENT_COLUMNS = ("id, key_hash, event_key, client_id, user_id, consent, ts, event_date, params, status, reason, property, "
                  "run, first_run, prev_run, fate_run, fate_us, source_row, attempts, flags, exported_run")
# The key's tail (after `source|event_name|`), in SQL.
_TAIL = "substr(substr(event_key, instr(event_key, '|') + 1), instr(substr(event_key, instr(event_key, '|') + 1), '|') + 1)"

# The run lock: one descriptor per ledger file (inode) in this process, opened once and never closed,
# because closing any descriptor of a file drops every POSIX lock the process holds on it — SQLite's
# own included. Releasing the run lock is flock(LOCK_UN); `_HELD` refuses a second ledger object of
# this process on a file it already holds (flock would let the same descriptor lock twice).
_LOCK_FDS: dict[tuple[int, int], int] = {}
_HELD: set[tuple[int, int]] = set()


def _ids_json(ids: Sequence[int]) -> str:
    return orjson.dumps([int(i) for i in ids]).decode()


def key_hash(event_key: str) -> int:
    """A stable signed 64-bit digest (never Python's salted hash()): the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(event_key.encode(), digest_size=8).digest(), "big", signed=True)


class SqliteLedger(Ledger):
    """The default backend. Hold `lock()` for the whole run: two writers could double-send.

    Opening for writing runs `PRAGMA quick_check` first and refuses a damaged file (exit 2): a
    damaged index can hide the key of a sent event, and the run would send it again. Its cost, on
    this project's 2-core machine: 0.5–1.1 s on a 1M-event ledger (209 MB) whose pages are cached,
    about 7 s from a cold page cache — once a run, against the minutes a night of sending takes.
    Read-only opens (reconcile, status) skip it: they cannot send.
    """

    _driver_errors = (sqlite3.Error,)
    _request_id = "e.request_id"  # a reader of a schema-3 file has no such column: NULL

    def __init__(self, path: Path, *, lock: bool = False, clock: Callable[[], int] = wall_micros,
                 read_only: bool = False, scratch: bool = False, scratch_dir: Path | None = None) -> None:
        # The database is one file however it is reached: a symlink or `..` must not give a second
        # name to a second run (hard links share the inode, hence the lock).
        self.path = Path(path).resolve()
        self.location = self.path  # what messages name
        self.clock = clock
        self._lock_key: tuple[int, int] | None = None
        self._scratch_tmp: str | None = None
        self._property: int | None = None
        self._runs: dict[str, int] = {}
        try:
            if self.path.is_dir():
                raise LedgerError(f"ledger {self.path}: is a directory; [ledger] path must name the ledger file "
                                  "(e.g. state/ledger.sqlite)")
            if read_only:
                self._open_read_only()
                return
            if scratch:
                self.path = self.location = self._scratch_copy(scratch_dir)
            self._open_writable(lock=lock and not scratch, scratch=scratch)
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error):
                raise self._driver_error(exc) from exc
            raise

    # -- opening ---------------------------------------------------------------------------------
    def _open_read_only(self) -> None:
        # Reconciliation may run while a send holds the ledger: it must never change what it checks.
        if not self.path.is_file():
            raise LedgerError(f"ledger {self.path}: not found ([ledger] path)")
        self.db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
        self._refuse_a_journal_under_another_name()
        version = self._schema_version()
        if version == 0:
            raise LedgerError(f"ledger {self.path}: holds no mpetl tables (a new or foreign file); nothing to read")
        self.legacy_digest_keys = version < 3  # read as it is: upgrading is a writer's job
        self._request_id = "e.request_id" if version >= 4 else "NULL"

    def _open_writable(self, *, lock: bool, scratch: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"ledger {self.path}: cannot create its folder ({exc.strerror})") from None
        if lock:
            # Before the first statement: a second run must refuse (exit 5), not trip over the first
            # run's locks while it switches a new file to WAL and creates the tables.
            self.lock()
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        if not scratch:  # a scratch copy was checked as its original, before the copy
            self._quick_check(self.db)
        self._refuse_a_journal_under_another_name()
        self.db.execute("PRAGMA journal_mode=WAL")
        # A scratch copy (dry-run, validate) is thrown away after the run: no need to survive power loss.
        self.db.execute("PRAGMA synchronous=OFF" if scratch else "PRAGMA synchronous=NORMAL")
        # Marks touch rows all over the file: a 64 MB page cache keeps the hot pages, and the WAL is
        # checkpointed every ~40 MB so it never grows without bound during a long send.
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.execute("PRAGMA wal_autocheckpoint=10000")
        self._migrate()
        # Ledgers written before the refund delta lack its small index (refund keys only): add it.
        self.db.execute(REFUNDS_INDEX)
        self._remember_name()

    def _scratch_copy(self, scratch_dir: Path | None) -> Path:
        """A consistent copy to work on (dry-run, validate never change the real ledger): `VACUUM INTO`
        from a read-only, checked connection; an empty one when there is no ledger yet."""
        if scratch_dir is None:
            self._scratch_tmp = tempfile.mkdtemp(prefix="mpetl-scratch-")
            scratch_dir = Path(self._scratch_tmp)
        Path(scratch_dir).mkdir(parents=True, exist_ok=True)
        target = Path(scratch_dir) / "ledger.scratch.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        if self.path.is_file():
            original = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
            try:
                self._quick_check(original)
                original.execute("VACUUM INTO ?", (str(target),))
            finally:
                original.close()
        return target

    def _quick_check(self, db: sqlite3.Connection) -> None:
        problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise self._damaged("quick_check: " + " ".join(problems[0].replace("*** in database main ***", "").split()))

    def _damaged(self, detail: str) -> LedgerDamagedError:
        return LedgerDamagedError(
            f"ledger {self.location}: the database is damaged ({detail.splitlines()[0][:160]}); nothing was "
            f"sent: restore it from a backup, or salvage it (sqlite3 {self.location} .recover | sqlite3 "
            f"{self.location}.recovered) and point [ledger] path at the recovered file. Never start an empty ledger "
            "instead: it forgets what was sent and would send it again")

    def _schema_version(self) -> int:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return 0
        if "meta" not in tables:
            raise LedgerSchemaError(
                f"ledger {self.location}: written by mpetl 0.1.0 before 2026-11-29 (schema 1: no meta table); this "
                f"mpetl {__version__} writes schema {SCHEMA_VERSION} and upgrades schema 2, not schema 1. Keep the file "
                "(it records what was sent); start a new ledger file with `mpetl run --since <the last run's end>` "
                "so rows already sent are not read again")
        row = self.db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
        version = int(row[0]) if row else 2
        if version > SCHEMA_VERSION:
            writer = self.db.execute("SELECT v FROM meta WHERE k = 'written_by'").fetchone()
            raise LedgerSchemaError(
                f"ledger {self.location}: written by {writer[0] if writer else 'a newer mpetl'} (schema {version}); "
                f"this is mpetl {__version__} (schema {SCHEMA_VERSION}): run the newer mpetl, nothing was changed")
        return version

    def _migrate(self) -> None:
        version = self._schema_version()
        if version == SCHEMA_VERSION:
            return
        stamp = (f"INSERT INTO meta VALUES ('schema', '{SCHEMA_VERSION}'), ('written_by', 'mpetl {__version__}') "
                 "ON CONFLICT(k) DO UPDATE SET v = excluded.v;")
        if version == 0:  # a new ledger: one script, one transaction (executescript would commit a pending one)
            self.db.executescript(f"BEGIN IMMEDIATE;{SCHEMA}{stamp}COMMIT;")
            return
        with self._transaction():  # all of the upgrade, or (a kill, an error) none of it
            if version == 2:
                self._upgrade_from_2()
            if version <= 3:
                self._upgrade_from_3()
            if version <= 4:
                self._upgrade_from_4()
            self._upgrade_from_5()
            self.db.execute(stamp.rstrip(";"))

    def _upgrade_from_4(self) -> None:
        """Schema 4 → 5 in place: the claim columns and the `outputs` table. Before claims each run wrote
        what it deferred into its own deferred.csv and historical write, so those events count as taken
        by the run that deferred them: nothing is written a second time after the upgrade. `mpetl
        deferred` marked its events (`exported_run`) all along: that column is its claim as it is."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(events)")}
        for column in ("csv_run", "historical_run"):
            if column not in columns:
                self.db.execute(f"ALTER TABLE events ADD COLUMN {column} INTEGER")
        self.db.execute("UPDATE events SET csv_run = coalesce(csv_run, fate_run), "
                        "historical_run = coalesce(historical_run, fate_run) WHERE status = 'deferred'")
        for statement in OUTPUTS_SCHEMA.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def _upgrade_from_3(self) -> None:
        """Schema 3 → 4 in place: the nullable `request_id` column (a ledger from before the Data Manager API)."""
        if "request_id" not in {r[1] for r in self.db.execute("PRAGMA table_info(events)")}:
            self.db.execute("ALTER TABLE events ADD COLUMN request_id TEXT")

    def _upgrade_from_2(self) -> None:
        """Schema 2 → 3 in place: the first layout (no `key_hash`, a UNIQUE text key) is rebuilt into
        today's table; row-digest keys get flag 16 (schema 2 told them by their `row:` prefix)."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(events)")}
        if "key_hash" not in columns:
            self.db.create_function("mpetl_key_hash", 1, key_hash, deterministic=True)
            self.db.execute("ALTER TABLE events RENAME TO events_schema2")
            self.db.execute(EVENTS_TABLE)
            self.db.execute(f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT "
                            f"{_EVENT_COLUMNS.replace('key_hash', 'mpetl_key_hash(event_key)')} FROM events_schema2")
            self.db.execute("DROP TABLE events_schema2")  # and its indexes, whose names today's take
        for statement in EVENTS_INDEXES.split(";"):
            if statement.strip():
                self.db.execute(statement)
        self.db.execute(f"UPDATE events SET flags = flags | {FLAG_NO_TRANSACTION_ID} WHERE {_TAIL} LIKE 'row:%'")

    def _upgrade_from_5(self) -> None:
        """Schema 5 → 6 in place: the `places` table and `events.place` (NULL: the events planned before
        had no location, which is what NULL means)."""
        self.db.execute(PLACES_TABLE)
        if "place" not in {r[1] for r in self.db.execute("PRAGMA table_info(events)")}:
            self.db.execute("ALTER TABLE events ADD COLUMN place INTEGER")

    def _place_ids(self, members: Sequence[str | None]) -> list[int | None]:
        """Each members text's id in `places` (added when new); None stays None."""
        distinct = sorted({m for m in members if m is not None})
        if not distinct:
            return [None] * len(members)
        self.db.executemany("INSERT OR IGNORE INTO places(members) VALUES (?)", [(m,) for m in distinct])
        ids = dict(self.db.execute("SELECT members, place FROM places WHERE members IN (SELECT value FROM json_each(?))",
                                   (orjson.dumps(distinct).decode(),)).fetchall())
        return [None if m is None else ids[m] for m in members]

    def _refuse_a_journal_under_another_name(self) -> None:
        """SQLite names its write-ahead log after the path it was opened by: a ledger with two names
        (hard links) has two logs. If the last run came through the other name and did not finish,
        its changes are still in that name's log, invisible from here: refuse, and say which name."""
        if os.stat(self.path).st_nlink < 2:
            return
        with suppress(sqlite3.Error):
            row = self.db.execute("SELECT v FROM meta WHERE k = 'opened_as'").fetchone()
            other = Path(row[0]) if row else None
            if other is not None and other != self.path and other.exists() and os.path.samefile(other, self.path):
                wal = Path(f"{other}-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    raise LedgerError(
                        f"ledger {self.path}: the same file as {other}, whose write-ahead log {wal} holds changes not "
                        f"yet in the file (a run through that name did not finish). Run once with [ledger] path = "
                        f"\"{other}\", then keep to one name (remove the extra hard link)")

    def _remember_name(self) -> None:
        """Record (in the file itself, not its log) the name this run writes through, for the check above."""
        row = self.db.execute("SELECT v FROM meta WHERE k = 'opened_as'").fetchone()
        if row is None or row[0] != str(self.path):
            self.db.execute("INSERT INTO meta VALUES ('opened_as', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                            (str(self.path),))
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _driver_error(self, exc: BaseException) -> LedgerError:
        """A SQLite error as one line saying what to do (never "fixed" by starting an empty ledger behind
        the user's back: that would forget what was sent and send it all again)."""
        text = str(exc).lower()
        if "not a database" in text:
            return LedgerDamagedError(f"ledger {self.location}: is not a SQLite database (the wrong file, or damaged "
                                      "at its very start); nothing was sent: point [ledger] path at the "
                                      "ledger file, or restore it from a backup")
        if "malformed" in text or "corrupt" in text:
            return self._damaged(f"SQLite: {exc}")
        if "readonly" in text or "read-only" in text or "permission" in text:
            why = "is read-only: the run must record what it sends (check the file's and its folder's permissions)"
        elif "unable to open" in text:
            why = "cannot be opened: check that its folder exists and is writable"
        elif "full" in text:
            why = "cannot grow: the disk is full (what was committed before is kept; free space and run again)"
        elif "locked" in text or "busy" in text:
            why = "stayed busy for 30 s (another process holds a SQLite lock on it): run again when it is done"
        else:
            why = f"cannot be used ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        return LedgerError(f"ledger {self.location}: {why}")

    # -- run lifecycle -------------------------------------------------------------------------
    def lock(self) -> None:
        if self._lock_key is not None:
            return
        try:
            fd, key = _lock_descriptor(self.path)
        except OSError as exc:
            raise LedgerError(f"ledger {self.path}: cannot open it for the run lock ({exc.strerror})") from None
        try:
            if key in _HELD:
                raise BlockingIOError
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LedgerLockedError(f"another run holds the ledger {self.path}; refusing to start (nothing sent)") from None
        _HELD.add(key)
        self._lock_key = key

    def close(self) -> None:
        if hasattr(self, "db"):
            with suppress(sqlite3.Error):
                self.db.close()
        if self._lock_key is not None:
            fcntl.flock(_LOCK_FDS[self._lock_key], fcntl.LOCK_UN)
            _HELD.discard(self._lock_key)
            self._lock_key = None
        if self._scratch_tmp is not None:
            shutil.rmtree(self._scratch_tmp, ignore_errors=True)
            self._scratch_tmp = None

    def bind_property(self, measurement_id: str, endpoint: str) -> None:
        self.db.execute("INSERT INTO properties(measurement_id, endpoint) VALUES (?, ?) "
                        "ON CONFLICT(measurement_id) DO UPDATE SET endpoint = excluded.endpoint", (measurement_id, endpoint))
        self._property = self.db.execute(
            "SELECT property FROM properties WHERE measurement_id = ?", (measurement_id,)
        ).fetchone()[0]
        foreign = self.db.execute(
            "SELECT p.measurement_id, p.endpoint, COUNT(*) FROM events e JOIN properties p USING (property) "
            f"WHERE e.{OPEN_SQL} AND e.property != ? GROUP BY p.property LIMIT 1",
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
        return self.db.execute(
            "UPDATE events SET status = ?, reason = 'crashed_in_flight', flags = flags | ? "
            f"WHERE {TRANSITIONS['recover_in_flight'].where()} AND {OPEN_SQL}",
            (TRANSITIONS["recover_in_flight"].target, FLAG_POSSIBLE_DUPLICATE),
        ).rowcount

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
        key_list = keys.tolist()  # plain lists: iterating an Arrow-backed column costs ~1 µs a value
        hashes = [key_hash(k) for k in key_list]
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS chunk_keys(key_hash INTEGER, event_key TEXT, client_id TEXT)")
        with self._transaction():
            self.db.execute("DELETE FROM chunk_keys")
            self.db.executemany("INSERT INTO chunk_keys VALUES (?, ?, ?)", (
                (h, k, c) for h, k, c, dup in zip(hashes, key_list, events["client_id"].astype(str).tolist(), in_chunk_dup,
                                                  strict=True) if not dup))
            existing = self.db.execute(
                "SELECT e.event_key, c.event_key, e.id, e.status, e.run, e.client_id = c.client_id FROM chunk_keys c "
                "JOIN events e ON e.key_hash = c.key_hash"
            ).fetchall()
            take_over: list[tuple[int, int]] = []
            dup_keys: set[str] = set()
            for key, asked, eid, status, owner, same_client in existing:
                if key != asked:  # the hash is the key's checksum: a stored key that no longer matches it is damage
                    raise self._damaged(f"event {eid}: its key no longer matches its key_hash")
                if status in OPEN and owner != run and same_client:
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
                order = [c for c in ("client_id", "user_id", "consent_json", "place_json", "timestamp_micros") if c in fresh]
                fresh = fresh.sort_values(order, kind="stable", na_position="first")
                self._insert(fresh, fresh.pop("_too_old").to_numpy(), fresh.pop("_hash").tolist(), run)
        return buckets

    def _insert(self, events: pd.DataFrame, too_old: np.ndarray, hashes: list[int], run: int) -> None:
        new = NewEvents.of(events)
        params, stripped = zip(*map(_strip_tid, new.params, new.keys), strict=True)
        flags = new.flags | np.where(np.asarray(stripped, dtype=bool), FLAG_TID_IN_KEY, 0)
        now = self.clock()
        rows = zip(
            hashes, new.keys, new.client_id, new.user_id, new.consent, new.timestamp_micros, new.event_date, params,
            np.where(too_old, "deferred", "planned").tolist(), np.where(too_old, DEFER_TOO_OLD, None).tolist(),
            np.where(too_old, run, None).tolist(), np.where(too_old, now, None).tolist(), new.source_row,
            flags.tolist(), self._place_ids(new.place), strict=True,
        )
        self.db.executemany(
            "INSERT INTO events(key_hash, event_key, client_id, user_id, consent, ts, event_date, params, status, reason, "
            f"fate_run, fate_us, source_row, flags, place, property, run, first_run) VALUES "
            f"(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,{self._property},{run},{run})",
            rows,
        )

    def withdraw(self, run_id: str, source: str) -> int:
        run = self._run(run_id)
        prefix = source + "|"
        with self._transaction():
            deleted = self.db.execute(
                "DELETE FROM events WHERE run = ? AND first_run = ? AND substr(event_key, 1, ?) = ? "
                f"AND {TRANSITIONS['withdraw'].where(taken=CLAIM_COLUMNS)}",
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
        where, args = f"status IN ('planned', 'failed') AND {OPEN_SQL} AND property = ?", [self._property]
        if shard is not None:
            self.db.create_function("mpetl_shard", 2, client_shard, deterministic=True)
            where += " AND mpetl_shard(client_id, ?) = ?"
            args += [shard[1], shard[0]]
        self.db.execute(
            f"INSERT INTO send_queue(id) SELECT id FROM events WHERE {where} "
            "ORDER BY client_id, IFNULL(user_id, ''), consent, IFNULL(place, 0), ts, id",
            args,
        )
        return self.db.execute("SELECT COUNT(*) FROM send_queue").fetchone()[0]

    def iter_pending(self, page: int = 5000) -> Iterator[PendingEvent]:
        last = 0
        while True:
            rows = self.db.execute(
                "SELECT q.seq, e.id, e.event_key, e.client_id, e.user_id, e.consent, e.ts, e.params, e.source_row, e.flags, "
                "p.members FROM send_queue q JOIN events e USING (id) LEFT JOIN places p ON p.place = e.place "
                "WHERE q.seq > ? ORDER BY q.seq LIMIT ?",
                (last, page),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _seq, eid, key, client_id, user_id, consent, ts, params, row, flags, members in rows:
                yield PendingEvent(eid, key, client_id, user_id, consent, key.split("|", 2)[1], ts,
                                   _restore_tid(params, key, flags), row, bool(flags & FLAG_RESENT),
                                   None if members is None else members.encode())

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (IMMEDIATE) and rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _move(self, transition: str, ids: Sequence[int], assignments: str = "", *args: object) -> None:
        """One transition over many events in one transaction: `UPDATE … WHERE <its from-states>`."""
        if not len(ids):
            return
        move = TRANSITIONS[transition]
        sets = ", ".join([f"status = '{move.target}'"] + ([assignments] if assignments else []))
        with self._transaction():
            moved = self.db.execute(
                f"UPDATE events SET {sets} WHERE id IN (SELECT value FROM json_each(?)) AND {move.where(taken=CLAIM_COLUMNS)}",
                (*args, _ids_json(ids))).rowcount
            self._check_moved(transition, ids, moved)

    def _move_each(self, transition: str, ids: Sequence[int], attempts: Sequence[int], maybe_delivered: Sequence[bool],
                   reason: str | None, run_id: str, request_ids: Sequence[str | None] | None = None) -> None:
        """`_move` with each event's own attempts, maybe-delivered flag and request id (mark_sent, mark_failed)."""
        if not len(ids):
            return
        move = TRANSITIONS[transition]
        run, now = self._run(run_id), self.clock()
        rids = request_ids if request_ids is not None else [None] * len(ids)
        with self._transaction():
            cur = self.db.executemany(
                "UPDATE events SET status = ?, reason = ?, fate_run = ?, fate_us = ?, attempts = attempts + ?, "
                f"flags = flags | ?, request_id = coalesce(?, request_id) WHERE id = ? AND {move.where(taken=CLAIM_COLUMNS)}",
                [(move.target, reason, run, now, a, FLAG_POSSIBLE_DUPLICATE if m else 0, r, i)
                 for i, a, m, r in zip(ids, attempts, maybe_delivered, rids, strict=True)])
            self._check_moved(transition, ids, cur.rowcount)

    def _states_of(self, transition: str, ids: Sequence[int]) -> Mapping[str, int]:
        return dict(self.db.execute(
            f"SELECT CASE WHEN {TRANSITIONS['release_output'].where(taken=CLAIM_COLUMNS)} THEN 'taken' ELSE status END, "
            "COUNT(*) "
            "FROM events WHERE id IN (SELECT value FROM json_each(?)) GROUP BY 1", (_ids_json(ids),)).fetchall())

    def mark_in_flight(self, ids: Sequence[int]) -> None:
        self._move("mark_in_flight", ids)

    def mark_sent(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool],
                  request_ids: Sequence[str | None] | None = None) -> None:
        self._move_each("mark_sent", ids, attempts, maybe_delivered, None, run_id, request_ids)

    def mark_failed(self, ids: Sequence[int], run_id: str, *, attempts: Sequence[int], maybe_delivered: Sequence[bool],
                    reason: str | None = None) -> None:
        self._move_each("mark_failed", ids, attempts, maybe_delivered, reason, run_id)

    def mark_rejected(self, ids: Sequence[int], run_id: str, reason: str) -> None:
        self._move("mark_rejected", ids, "reason = ?, fate_run = ?, fate_us = ?",
                   reason, self._run(run_id), self.clock())

    def mark_expired(self, ids: Sequence[int], run_id: str) -> None:
        self._move("mark_expired", ids, "reason = ?, fate_run = ?, fate_us = ?",
                   DEFER_EXPIRED, self._run(run_id), self.clock())

    def rejected_at_send(self, run_id: str) -> list[tuple[str, int | None, str]]:
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
        yield from self._deferred_pages(" AND ".join(where), args)

    def _deferred_pages(self, where: str, args: Sequence[object]) -> Iterator[DeferredEvent]:
        """Only iterated inside a public generator (deferred_events, claimed_events): their wrapper maps
        the driver's errors."""
        last = 0
        while True:
            rows = self.db.execute(
                "SELECT e.id, e.event_key, e.source_row, e.client_id, e.user_id, e.ts, e.event_date, e.params, e.reason, "
                f"r.run_id, e.flags, e.consent, p.members FROM events e LEFT JOIN runs r ON r.run = e.fate_run "
                f"LEFT JOIN places p ON p.place = e.place WHERE {where} AND e.id > ? "
                "ORDER BY e.id LIMIT 5000",
                (*args, last),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for eid, key, row, client_id, user_id, ts, day, params, reason, rid, flags, consent, members in rows:
                source, name, _ = split_key(key)
                yield DeferredEvent(eid, key, source, row, client_id, user_id, name, ts, str(day),
                                    _restore_tid(params, key, flags), reason, rid, int(consent or 0),
                                    None if members is None else members.encode())

    # -- outputs exactly once ----------------------------------------------------------------------
    def claim_deferred(self, run_id: str, kind: OutputKind, target: str, *, since_date: str | None = None,
                       deferred_by: str | None = None) -> int:
        column, run = CLAIM_COLUMN[kind], self._run(run_id)
        if self._property is None:
            raise LedgerError("bind_property() must be called before claim_deferred()")
        where, args = [TRANSITIONS["claim_deferred"].where(taken=column), "property = ?"], [self._property]
        if since_date is not None:
            where.append("event_date >= ?")
            args.append(int(since_date))
        if deferred_by is not None:
            where.append(f"fate_run = ? AND {BY_FATE}")
            args.append(self._run(deferred_by))
        with self._transaction():
            if (state := self._output_state(run, kind)) is not None:
                raise self._refuse_output(run_id, kind, "claim_deferred", state)
            claimed = self.db.execute(f"UPDATE events SET {column} = ? WHERE {' AND '.join(where)}",
                                      (run, *args)).rowcount
            self.db.execute("INSERT INTO outputs(run, kind, target, state, rows, claimed_us) VALUES (?, ?, ?, ?, ?, ?)",
                            (run, kind, target, OUTPUT_TRANSITIONS["claim_deferred"].target, claimed, self.clock()))
        return claimed

    def claimed_events(self, run_id: str, kind: OutputKind) -> Iterator[DeferredEvent]:
        column = CLAIM_COLUMN[kind]
        yield from self._deferred_pages(f"e.{column} = ? AND {TRANSITIONS['release_output'].where('e.status', f'e.{column}')}",
                                        [self._run(run_id)])

    def _output_state(self, run: int | None, kind: OutputKind) -> str | None:
        row = self.db.execute("SELECT state FROM outputs WHERE run = ? AND kind = ?", (run, kind)).fetchone()
        return row[0] if row else None

    def _known_run(self, run_id: str) -> int | None:
        """The run's number, never a new one (an output of a run the ledger never saw is absent)."""
        row = self.db.execute("SELECT run FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def _move_output(self, run_id: str, kind: OutputKind, transition: str, files: str | None = None) -> None:
        move = OUTPUT_TRANSITIONS[transition]
        run = self._known_run(run_id)
        moved = self.db.execute(
            "UPDATE outputs SET state = ?, settled_us = ?, files = coalesce(?, files) "
            f"WHERE run = ? AND kind = ? AND {move.where('state')}", (move.target, self.clock(), files, run, kind)).rowcount
        if moved != 1:
            raise self._refuse_output(run_id, kind, transition, self._output_state(run, kind))

    def release_output(self, run_id: str, kind: OutputKind) -> int:
        column = CLAIM_COLUMN[kind]
        with self._transaction():
            self._move_output(run_id, kind, "release_output")
            run = self._known_run(run_id)
            return self.db.execute(
                f"UPDATE events SET {column} = NULL WHERE {column} = ? AND {TRANSITIONS['release_output'].where(taken=column)}",
                (run,)).rowcount

    def unsettled_outputs(self, kind: OutputKind) -> list[OutputClaim]:
        # One run at a time holds this ledger (the run lock): every other run's unsettled output is a dead one's.
        return [OutputClaim.from_row(*row) for row in self.db.execute(
            "SELECT r.run_id, o.kind, o.target, o.state, o.rows, o.files FROM outputs o JOIN runs r USING (run) "
            f"WHERE o.kind = ? AND {OUTPUT_TRANSITIONS['output_taken'].where('o.state')} ORDER BY o.run", (kind,))]

    def output_claim(self, run_id: str, kind: OutputKind) -> OutputClaim | None:
        row = self.db.execute(
            "SELECT r.run_id, o.kind, o.target, o.state, o.rows, o.files FROM outputs o JOIN runs r USING (run) "
            "WHERE r.run_id = ? AND o.kind = ?", (run_id, kind)).fetchone()
        return OutputClaim.from_row(*row) if row else None

    def deferred_claims(self, run_id: str, kind: OutputKind) -> dict[str, int]:
        column, run = CLAIM_COLUMN[kind], self._run(run_id)
        return self._claim_counts(self.db.execute(
            f"SELECT CASE WHEN {column} IS NULL THEN 'unclaimed' WHEN {column} = ? THEN 'this_run' ELSE 'other_runs' END, "
            f"COUNT(*) FROM events WHERE fate_run = ? AND status = 'deferred' AND {BY_FATE} GROUP BY 1", (run, run)))

    # -- reconciliation and resend ---------------------------------------------------------------
    def requeue_for_resend(self, keys: Sequence[str], run_id: str) -> int:
        self._run(run_id)
        if not keys:
            return 0
        move = TRANSITIONS["requeue_for_resend"]
        with self._transaction():
            return self.db.execute(
                f"UPDATE events SET status = '{move.target}', flags = flags | ? WHERE {move.where()} AND id IN "
                "(SELECT e.id FROM json_each(?) j JOIN events e ON e.key_hash = j.value ->> 0 AND e.event_key = j.value ->> 1)",
                (FLAG_RESENT, orjson.dumps([[key_hash(k), k] for k in keys]).decode()),
            ).rowcount

    def _sent_rows(self, run_id: str | None, since: str | None, until: str | None) -> Iterable[tuple]:
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
            "SELECT e.event_key, e.event_date, e.ts, e.fate_us, e.flags, o.run_id, f.run_id, e.params "
            "FROM events e JOIN runs o ON o.run = e.run LEFT JOIN runs f ON f.run = e.fate_run "
            "WHERE e.status = 'sent' AND (:since IS NULL OR e.event_date >= :since) AND (:until IS NULL OR e.event_date <= :until) "
        )
        if run is not None:
            # Produced by the run, or delivered by it for an earlier one (the small fate index).
            sql = f"{sql} AND e.run = :run UNION ALL {sql} AND e.fate_run = :run AND e.run != :run AND {by_fate('e')}"
        params = {"run": run, "since": int(since) if since else None, "until": int(until) if until else None}
        return self.db.execute(sql, params)

    def _order_rows(self, source: str, transaction_ids: Sequence[str]) -> Iterable[tuple]:
        tails = tails_for(pd.Series(list(transaction_ids), dtype="string")).tolist()
        purchases = [f"{source}|purchase|{tail}" for tail in tails]
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS order_keys(key_hash INTEGER, event_key TEXT)")
        with self._transaction():
            self.db.execute("DELETE FROM order_keys")
            self.db.executemany("INSERT INTO order_keys VALUES (?, ?)", ((key_hash(k), k) for k in purchases))
            rows = self.db.execute(
                "SELECT e.event_key, e.status, e.params FROM order_keys o JOIN events e ON e.key_hash = o.key_hash "
                "AND e.event_key = o.event_key WHERE e.status != 'rejected'").fetchall()
            for tail in tails:  # refund levels: `source|refund|id␞<minor units>`, through the partial index
                low = f"{source}|refund|{tail}{LEVEL}"
                rows += self.db.execute(
                    "SELECT event_key, status, params FROM events WHERE instr(event_key, '|refund|') > 0 "
                    "AND event_key > ? AND event_key < ? AND status != 'rejected'",
                    (low, low[:-1] + chr(ord(LEVEL) + 1))).fetchall()
        return rows

    def _own_rows(self, run_id: str) -> Any:
        return self.db.execute("SELECT event_key, status, reason FROM events WHERE run = ?", (self._run(run_id),))

    def known_keys(self, transaction_ids: Sequence[str]) -> pd.DataFrame:
        # The key holds the id; without a column of its own this is one scan, asked only for the
        # export's unexplained ids (reconciliation's extras).
        wanted = {str(t) for t in transaction_ids}
        found: list[tuple[str, str]] = []
        if wanted:
            for key, flags in self.db.execute("SELECT event_key, flags FROM events"):
                _, name, tail = split_key(key)
                tid = None if flags & FLAG_NO_TRANSACTION_ID else transaction_id_of(tail)
                if tid in wanted:
                    found.append((name, tid))
        return pd.DataFrame(found, columns=["event_name", "transaction_id"], dtype="string")

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY run")]

    def _run_summary_rows(self, run_ids: list[str]) -> Iterable[tuple[str, str | None]]:
        return self.db.execute("SELECT run_id, summary_json FROM runs WHERE run_id IN (SELECT value FROM json_each(?))",
                               (orjson.dumps(run_ids).decode(),)).fetchall()

    # -- accounting ----------------------------------------------------------------------------
    def _outcome_rows(self, run_id: str) -> tuple[Iterable[tuple], Iterable[tuple], int, int]:
        run = self._run(run_id)
        own = self.db.execute(
            "SELECT substr(event_key, 1, instr(event_key, '|') - 1), status, reason, COUNT(*) FROM events "
            "WHERE run = ? GROUP BY 1, 2, 3", (run,)).fetchall()
        earlier = self.db.execute(
            f"SELECT status, reason, COUNT(*) FROM events WHERE fate_run = ? AND run != ? AND {BY_FATE} GROUP BY 1, 2",
            (run, run)).fetchall()
        # Sent by this run: its own events (by owner) and earlier runs' (the small fate index).
        flagged = self.db.execute(
            "SELECT IFNULL(SUM(flags & ? > 0), 0), IFNULL(SUM(flags & ? > 0), 0) FROM ("
            "SELECT flags FROM events WHERE run = ? AND fate_run = ? AND status = 'sent' UNION ALL "
            f"SELECT flags FROM events WHERE fate_run = ? AND run != ? AND status = 'sent' AND {BY_FATE})",
            (FLAG_POSSIBLE_DUPLICATE, FLAG_RESENT, run, run, run, run)).fetchone()
        return own, earlier, *flagged

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def state_counts(self) -> dict[str, int]:
        counts = dict(self.db.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall())
        counts["runs"] = self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return counts

    def _inspect_rows(self) -> Iterable[tuple]:
        return self.db.execute(
            f"SELECT e.event_key, e.status, e.reason, e.flags, o.run_id, f.run_id, e.attempts, e.source_row, {self._request_id} "
            "FROM events e JOIN runs o ON o.run = e.run LEFT JOIN runs f ON f.run = e.fate_run ORDER BY e.id").fetchall()


def _lock_descriptor(path: Path) -> tuple[int, tuple[int, int]]:
    """This process's one descriptor of the ledger file (created empty if new) and its (device, inode)."""
    with suppress(FileNotFoundError):
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in _LOCK_FDS:
            return _LOCK_FDS[(st.st_dev, st.st_ino)], (st.st_dev, st.st_ino)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access: a read-only file is SQLite's to report
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    return _LOCK_FDS.setdefault(key, fd), key  # (a second descriptor of a known file stays open: see _LOCK_FDS)


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
