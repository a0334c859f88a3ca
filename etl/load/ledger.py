"""The durable ledger: one row per event key, the state that makes reruns idempotent.

Why SQLite in WAL mode: a kill -9 at any instant leaves a consistent database (committed
transactions survive, the rest roll back), and readers (reconcile, a notebook) never block the
writer. Write-ahead discipline: an event is `planned` before any request is built, `in_flight` is
committed before the first byte of its request is sent, `sent` only after a 2xx. A run that finds
`in_flight` rows knows a previous run died mid-request: those events are sent again and flagged
`possible_duplicate`, because GA has no idempotency key.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from etl.errors import LedgerLockedError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    event_name TEXT NOT NULL,
    transaction_id TEXT,
    client_id TEXT NOT NULL,
    user_id TEXT,
    consent_json TEXT,
    timestamp_micros INTEGER NOT NULL,
    event_date TEXT NOT NULL,
    has_session INTEGER NOT NULL,
    event_json BLOB NOT NULL,
    status TEXT NOT NULL,
    run_id TEXT NOT NULL,
    sent_run_id TEXT,
    request_hash TEXT,
    http_status INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    possible_duplicate INTEGER NOT NULL DEFAULT 0,
    source_row INTEGER,
    planned_at TEXT NOT NULL,
    sent_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_status ON events(status);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
CREATE INDEX IF NOT EXISTS events_date ON events(event_date);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    mode TEXT NOT NULL,
    summary_json TEXT
);
"""

PENDING_STATUSES = ("planned", "failed")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class PendingEvent:
    event_key: str
    client_id: str
    user_id: str | None
    consent_json: str | None
    event_json: bytes


class Ledger:
    """The ledger of one property. Hold `lock()` for the whole run: two writers could double-send."""

    def __init__(self, path: Path, *, lock: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        if lock:
            # Before the first SQLite statement: a second run must refuse (exit 5), not trip over the
            # first run's locks while it switches the new file to WAL and creates the tables.
            self.lock()
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    # -- run lifecycle ---------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the ledger's run lock without waiting; LedgerLockedError when another run holds it."""
        if self._lock_fd is not None:
            return
        fd = os.open(str(self.path) + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LedgerLockedError(f"another run holds the ledger {self.path}; refusing to start (nothing sent)") from None
        self._lock_fd = fd

    def close(self) -> None:
        with suppress(sqlite3.Error):
            self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def begin_run(self, run_id: str, mode: str) -> None:
        self.db.execute("INSERT INTO runs(run_id, started_at, mode) VALUES (?, ?, ?)", (run_id, _now(), mode))

    def finish_run(self, run_id: str, summary_json: str) -> None:
        self.db.execute("UPDATE runs SET finished_at = ?, summary_json = ? WHERE run_id = ?", (_now(), summary_json, run_id))

    def recover_in_flight(self) -> int:
        """Requests in flight when a previous run died may have arrived: resend, flagged as possible duplicates."""
        cur = self.db.execute(
            "UPDATE events SET status = 'planned', possible_duplicate = 1, updated_at = ? WHERE status = 'in_flight'",
            (_now(),),
        )
        return cur.rowcount

    # -- planning --------------------------------------------------------------------------------
    def plan(self, events: pd.DataFrame, run_id: str) -> pd.Series:
        """Plan a chunk's events; return each event's bucket: 'planned' or 'duplicate'.

        Duplicate: the key repeats within this run, or an earlier run already delivered it. A key an
        earlier run planned but did not deliver is re-planned under this run (its rows are this run's).
        """
        buckets = pd.Series("planned", index=events.index, dtype=object)
        if events.empty:
            return buckets
        buckets[events["event_key"].duplicated(keep="first").to_numpy()] = "duplicate"
        keys = events["event_key"].astype(str).tolist()
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS chunk_keys(event_key TEXT PRIMARY KEY)")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM chunk_keys")
            self.db.executemany("INSERT OR IGNORE INTO chunk_keys VALUES (?)", ((k,) for k in keys))
            existing = dict(
                self.db.execute(
                    "SELECT e.event_key, CASE WHEN e.status = 'sent' OR e.run_id = ? THEN 'duplicate' ELSE 'replan' END "
                    "FROM events e JOIN chunk_keys c USING (event_key)",
                    (run_id,),
                ).fetchall()
            )
            verdict = events["event_key"].map(existing)
            buckets[(verdict == "duplicate").fillna(False).to_numpy(dtype=bool)] = "duplicate"
            to_write = events[(buckets == "planned").to_numpy()]
            now = _now()
            rows = [
                (
                    r.event_key, r.source, r.event_name, _none(r.transaction_id), r.client_id, _none(r.user_id),
                    _none(r.consent_json), int(r.timestamp_micros), r.event_date, int(bool(r.has_session)),
                    r.event_json.encode() if isinstance(r.event_json, str) else r.event_json, run_id, int(r.row), now, now,
                )
                for r in to_write.itertuples(index=False)
            ]
            self.db.executemany(
                "INSERT INTO events(event_key, source, event_name, transaction_id, client_id, user_id, consent_json, "
                "timestamp_micros, event_date, has_session, event_json, status, run_id, source_row, planned_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?, ?) "
                "ON CONFLICT(event_key) DO UPDATE SET client_id = excluded.client_id, user_id = excluded.user_id, "
                "consent_json = excluded.consent_json, timestamp_micros = excluded.timestamp_micros, "
                "event_date = excluded.event_date, has_session = excluded.has_session, event_json = excluded.event_json, "
                "status = 'planned', run_id = excluded.run_id, source_row = excluded.source_row, updated_at = excluded.updated_at",
                rows,
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return buckets

    # -- sending ---------------------------------------------------------------------------------
    def snapshot_pending(self) -> int:
        """Freeze the send order (grouped by request identity) so marking rows never disturbs paging."""
        self.db.execute("DROP TABLE IF EXISTS temp.send_queue")
        self.db.execute("CREATE TEMP TABLE send_queue(seq INTEGER PRIMARY KEY, event_key TEXT NOT NULL)")
        self.db.execute(
            "INSERT INTO send_queue(event_key) SELECT event_key FROM events WHERE status IN ('planned', 'failed') "
            "ORDER BY client_id, IFNULL(user_id, ''), IFNULL(consent_json, ''), timestamp_micros, event_key"
        )
        return self.db.execute("SELECT COUNT(*) FROM send_queue").fetchone()[0]

    def iter_pending(self, page: int = 5000) -> Iterator[PendingEvent]:
        """Pending events in send order, read page by page (bounded memory)."""
        last = 0
        while True:
            rows = self.db.execute(
                "SELECT q.seq, e.event_key, e.client_id, e.user_id, e.consent_json, e.event_json "
                "FROM send_queue q JOIN events e USING (event_key) WHERE q.seq > ? ORDER BY q.seq LIMIT ?",
                (last, page),
            ).fetchall()
            if not rows:
                return
            for seq, key, client_id, user_id, consent_json, event_json in rows:
                last = seq
                yield PendingEvent(key, client_id, user_id, consent_json, bytes(event_json))

    def mark(self, keys: list[str], status: str, *, request_hash: str | None = None, http_status: int | None = None,
             attempts: int | None = None, sent_run_id: str | None = None, possible_duplicate: bool | None = None) -> None:
        """Record a state change for the events of one request, in one transaction."""
        now = _now()
        sent_at = now if status == "sent" else None
        dup = None if possible_duplicate is None else int(possible_duplicate)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "UPDATE events SET status = ?, request_hash = COALESCE(?, request_hash), "
                "http_status = COALESCE(?, http_status), attempts = COALESCE(?, attempts), "
                "sent_run_id = COALESCE(?, sent_run_id), sent_at = COALESCE(?, sent_at), "
                "possible_duplicate = MAX(possible_duplicate, COALESCE(?, 0)), updated_at = ? WHERE event_key = ?",
                ((status, request_hash, http_status, attempts, sent_run_id, sent_at, dup, now, k) for k in keys),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # -- accounting ------------------------------------------------------------------------------
    def run_outcome(self, run_id: str) -> dict[str, int]:
        """How this run's planned events ended: sent / failed / pending, and the resend flags."""
        out = {"sent": 0, "failed": 0, "pending": 0}
        for status, count in self.db.execute("SELECT status, COUNT(*) FROM events WHERE run_id = ? GROUP BY status", (run_id,)):
            key = "sent" if status == "sent" else "failed" if status == "failed" else "pending"
            out[key] += count
        out["possible_duplicates"] = self.db.execute(
            "SELECT COUNT(*) FROM events WHERE sent_run_id = ? AND possible_duplicate = 1", (run_id,)
        ).fetchone()[0]
        out["sent_for_earlier_runs"] = self.db.execute(
            "SELECT COUNT(*) FROM events WHERE sent_run_id = ? AND run_id != ?", (run_id, run_id)
        ).fetchone()[0]
        return out

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _none(value: object) -> object:
    return None if value is None or value is pd.NA or (isinstance(value, float) and value != value) else value
