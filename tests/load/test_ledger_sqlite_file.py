"""What only the SQLite file must do: one lock whatever the name (hard links too), no journal left behind
under another name, a damaged file refused before anything is planned, an older schema upgraded in place
(or named precisely), never "restore from a backup" for a file that is merely old."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from etl.errors import LedgerError, LedgerLockedError
from etl.load import SqliteLedger
from etl.load.ledger.errors import LedgerDamagedError, LedgerSchemaError
from etl.load.ledger.sqlite import SCHEMA_VERSION
from tests.load.conftest import ENDPOINT, MID, T0, events_frame
from tests.support import REPO

HOUR = 3_600_000_000


def _in_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)


def _sent_ledger(path: Path, n: int = 600) -> list[str]:
    """A ledger holding `n` sent events (keys crm|purchase|T0000…); the keys."""
    keys = [f"crm|purchase|T{i:04d}" for i in range(n)]
    with SqliteLedger(path, lock=True, clock=lambda: T0) as ledger:
        ledger.bind_property(MID, ENDPOINT)
        ledger.begin_run("night-1", "send")
        ledger.plan(events_frame(keys, ts=T0 - HOUR), "night-1", oldest_sendable_micros=T0 - 71 * HOUR)
        ledger.snapshot_pending()
        ids = [e.id for e in ledger.iter_pending()]
        ledger.mark_in_flight(ids)
        ledger.mark_sent(ids, "night-1", attempts=[1] * n, maybe_delivered=[False] * n)
        ledger.finish_run("night-1", "{}")
    return keys


def test_a_hard_link_is_the_same_ledger_and_meets_the_same_lock(tmp_path):
    path, link = tmp_path / "ledger.sqlite", tmp_path / "other-name.sqlite"
    with SqliteLedger(path, lock=True):
        os.link(path, link)
        with pytest.raises(LedgerLockedError, match=f"another run holds the ledger {link}"):
            SqliteLedger(link, lock=True)
        child = _in_child("import sys\nfrom etl.load import SqliteLedger\nfrom etl.errors import LedgerLockedError\n"
                          f"try:\n    SqliteLedger(r'{link}', lock=True)\nexcept LedgerLockedError:\n    sys.exit(5)\n")
        assert child.returncode == 5, child.stderr
    with SqliteLedger(link, lock=True):  # released with the first
        pass
    assert not Path(f"{path}.lock").exists() and not Path(f"{link}.lock").exists()  # the lock is the file's own


def test_a_journal_left_under_another_name_is_refused_naming_that_name(tmp_path):
    """SQLite keeps the write-ahead log beside the *name* it was opened by: a run killed while writing
    through one name leaves changes the other name cannot see. Opening through the other name is refused
    until the first name has folded its log back in."""
    path, link = tmp_path / "ledger.sqlite", tmp_path / "other-name.sqlite"
    _sent_ledger(path, n=3)
    os.link(path, link)
    killed = _in_child(
        "import os\nfrom etl.load import SqliteLedger\nfrom tests.load.conftest import events_frame, MID, ENDPOINT, T0\n"
        f"l = SqliteLedger(r'{path}', lock=True, clock=lambda: T0)\nl.bind_property(MID, ENDPOINT)\n"
        "l.begin_run('night-2', 'send')\n"
        "l.plan(events_frame(['crm|purchase|N1', 'crm|purchase|N2'], ts=T0 - 3_600_000_000), 'night-2', "
        "oldest_sendable_micros=0)\nos._exit(9)  # killed: no close, no checkpoint\n")
    assert killed.returncode == 9, killed.stderr
    assert Path(f"{path}-wal").stat().st_size > 0
    with pytest.raises(LedgerError, match=f"ledger {link}: the same file as {path}, whose write-ahead log {path}-wal "
                                          "holds changes not yet in the file"):
        SqliteLedger(link, lock=True)
    with SqliteLedger(path, lock=True) as through_first:  # recovers its log, checkpoints it at close
        assert through_first.state_counts() == {"sent": 3, "planned": 2, "runs": 2}
    with SqliteLedger(link, lock=True) as through_link:
        assert through_link.state_counts() == {"sent": 3, "planned": 2, "runs": 2}


def _events_leaf_pages(path: Path) -> tuple[list[int], int]:
    db = sqlite3.connect(path)
    try:
        pages = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' "
                                           "ORDER BY pageno")]
        return pages, db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()


def _quick_check(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA quick_check(1)").fetchone()[0]
    finally:
        db.close()


def test_a_table_page_that_quick_check_calls_damaged_is_refused_at_open(tmp_path):
    path = tmp_path / "ledger.sqlite"
    _sent_ledger(path)
    pages, size = _events_leaf_pages(path)
    data = bytearray(path.read_bytes())
    start = (pages[len(pages) // 2] - 1) * size
    cells = int.from_bytes(data[start + 3:start + 5], "big")
    data[start + 3:start + 5] = (cells - 3).to_bytes(2, "big")  # three sent events fall out of their page
    path.write_bytes(bytes(data))
    assert _quick_check(path) != "ok"  # the premise: SQLite's own check sees it
    before = path.read_bytes()
    with pytest.raises(LedgerDamagedError) as caught:
        SqliteLedger(path, lock=True)
    message = str(caught.value)
    assert message.startswith(f"ledger {path}: the database is damaged (quick_check: ")
    assert "nothing was sent" in message and ".recover" in message and "\n" not in message
    assert caught.value.exit_code == 2
    assert path.read_bytes() == before
    with SqliteLedger(path, read_only=True) as reader:  # a reader may still look (it cannot send)
        assert reader.state_counts()["sent"] == 600 - 3


def test_a_damaged_key_quick_check_cannot_see_is_caught_by_its_hash_when_planned(tmp_path):
    """A flipped byte inside a row's key is invisible to quick_check (SQLite keeps no checksums), and the
    rerun would take the damaged event for a new one and send it again; its key_hash is its checksum."""
    path = tmp_path / "ledger.sqlite"
    keys = _sent_ledger(path)
    data = path.read_bytes()
    assert data.count(b"crm|purchase|T0123") == 1
    path.write_bytes(data.replace(b"crm|purchase|T0123", b"crm|purchase|T01#3"))
    assert _quick_check(path) == "ok"
    with SqliteLedger(path, lock=True, clock=lambda: T0) as ledger:
        ledger.bind_property(MID, ENDPOINT)
        ledger.begin_run("night-2", "send")
        with pytest.raises(LedgerDamagedError, match=r"the database is damaged \(event 124: its key no longer matches"):
            ledger.plan(events_frame(keys, ts=T0 - HOUR), "night-2", oldest_sendable_micros=T0 - 71 * HOUR)
        assert ledger.state_counts() == {"sent": 600, "runs": 2}  # the chunk was rolled back: nothing to send


# The first schema-2 layout, as mpetl wrote it before the key hash (git 2463710^, etl/load/ledger/sqlite.py).
SCHEMA_2_BEFORE_KEY_HASH = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE properties (property INTEGER PRIMARY KEY, measurement_id TEXT NOT NULL UNIQUE, endpoint TEXT NOT NULL);
CREATE TABLE runs (run INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, mode TEXT NOT NULL, shard TEXT,
    started_us INTEGER NOT NULL, finished_us INTEGER, summary_json TEXT);
CREATE TABLE events (id INTEGER PRIMARY KEY, event_key TEXT NOT NULL UNIQUE, client_id TEXT NOT NULL, user_id TEXT,
    consent INTEGER NOT NULL, ts INTEGER NOT NULL, event_date INTEGER NOT NULL, params BLOB NOT NULL,
    status TEXT NOT NULL, reason TEXT, property INTEGER NOT NULL, run INTEGER NOT NULL, first_run INTEGER NOT NULL,
    prev_run INTEGER, fate_run INTEGER, fate_us INTEGER, source_row INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    flags INTEGER NOT NULL DEFAULT 0, exported_run INTEGER);
CREATE INDEX events_pending ON events(status, client_id) WHERE status IN ('planned', 'failed', 'in_flight');
CREATE INDEX events_run ON events(run);
CREATE INDEX events_fate_run ON events(fate_run);
CREATE INDEX events_date ON events(event_date);
CREATE INDEX events_to_export ON events(event_date) WHERE status = 'deferred' AND exported_run IS NULL;
INSERT INTO meta VALUES ('schema', '2');
"""


def _schema_2_ledger(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_2_BEFORE_KEY_HASH)
    db.execute("INSERT INTO properties VALUES (1, ?, ?)", (MID, ENDPOINT))
    db.execute("INSERT INTO runs VALUES (1, 'night-1', 'send', NULL, ?, ?, '{}')", (T0 - 2 * HOUR, T0 - HOUR))
    rows = [("crm|purchase|T1", "sent", None, 1), ("crm|purchase|T2", "failed", "http 503", 1),
            ("crm|purchase|OLD", "deferred", "too_old", 1), ("crm|generate_lead|row:00ff00ff00ff00ff", "sent", None, 1)]
    for i, (key, status, reason, fate) in enumerate(rows, start=1):
        params = orjson.dumps({"transaction_id": key.split("|")[2], "value": 10.5, "currency": "EUR"})
        db.execute("INSERT INTO events VALUES (?, ?, '111.222', NULL, 0, ?, 20261121, ?, ?, ?, 1, 1, 1, NULL, ?, ?, ?, 1, ?, NULL)",
                   (i, key, T0 - HOUR, params, status, reason, fate, T0 - HOUR, i, 4))
    db.commit()
    db.close()


def _meta(path: Path) -> dict[str, str]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT k, v FROM meta WHERE k IN ('schema', 'written_by')").fetchall())
    finally:
        db.close()


def test_a_ledger_from_before_the_key_hash_is_upgraded_in_place_and_keeps_every_fate(tmp_path):
    path = tmp_path / "ledger.sqlite"
    _schema_2_ledger(path)
    with SqliteLedger(path, read_only=True) as reader:  # read as it is, never changed by a reader
        assert reader.for_reconcile(run_id="night-1").set_index("event_name")["transaction_id"].isna().to_dict() == {
            "purchase": False, "generate_lead": True}
    assert _meta(path) == {"schema": "2"}
    with SqliteLedger(path, lock=True, clock=lambda: T0) as ledger:
        assert _meta(path) == {"schema": str(SCHEMA_VERSION), "written_by": "mpetl 0.1.0"}
        ledger.bind_property(MID, ENDPOINT)
        ledger.begin_run("night-2", "send")
        buckets = ledger.plan(events_frame(["crm|purchase|T1", "crm|purchase|T2", "crm|purchase|OLD", "crm|purchase|T3"],
                                           ts=T0 - HOUR), "night-2", oldest_sendable_micros=T0 - 71 * HOUR)
        assert list(buckets) == ["duplicate", "planned", "duplicate", "planned"]  # nothing sent is sent again
        ledger.snapshot_pending()
        assert sorted(e.event_key for e in ledger.iter_pending()) == ["crm|purchase|T2", "crm|purchase|T3"]
        sent = ledger.for_reconcile(run_id="night-1").set_index("event_name")["transaction_id"]
        assert sent["purchase"] == "T1" and sent.isna()["generate_lead"]
        assert [(e.event_key, e.reason) for e in ledger.deferred_events(unexported=True)] == [("crm|purchase|OLD", "too_old")]
        # Schema 5's claims: night-1 wrote its deferred event into its own deferred.csv and historical files,
        # so no later output of those kinds writes it again; `mpetl deferred` never exported it.
        assert ledger.claim_deferred("night-2", "deferred_csv", "/out") == 0
        assert ledger.claim_deferred("night-2", "historical", "/hist") == 0
        assert ledger.claim_deferred("night-2", "export", "/imports") == 1
        assert ledger.integrity_ok()


def test_a_newer_or_a_first_schema_is_named_precisely_never_restore_from_a_backup(tmp_path):
    newer = tmp_path / "newer.sqlite"
    _sent_ledger(newer, n=1)
    db = sqlite3.connect(newer)
    db.execute("UPDATE meta SET v = ? WHERE k = 'schema'", (str(SCHEMA_VERSION + 1),))
    db.execute("UPDATE meta SET v = 'mpetl 0.3.0' WHERE k = 'written_by'")
    db.commit()
    db.close()
    with pytest.raises(LedgerSchemaError, match=rf"ledger {newer}: written by mpetl 0.3.0 \(schema {SCHEMA_VERSION + 1}\); this is mpetl "
                                                rf"0.1.0 \(schema {SCHEMA_VERSION}\): run the newer mpetl") as caught:
        SqliteLedger(newer, lock=True)
    assert "backup" not in str(caught.value) and caught.value.exit_code == 2

    first = tmp_path / "first.sqlite"
    db = sqlite3.connect(first)
    db.execute("CREATE TABLE events (event_key TEXT PRIMARY KEY, status TEXT NOT NULL)")
    db.close()
    with pytest.raises(LedgerSchemaError, match=rf"ledger {first}: written by mpetl 0.1.0 before 2026-11-29 \(schema 1"):
        SqliteLedger(first, lock=True)


def test_a_schema_4_ledger_is_upgraded_in_place_and_its_pending_events_still_leave(tmp_path):
    """Schema 4 (before store locations) had no `places` table and no `events.place`: a writer adds
    both in one transaction; what was pending stays pending and leaves without a location, as planned."""
    from etl.load import build_requests

    path = tmp_path / "ledger.sqlite"
    with SqliteLedger(path, lock=True, clock=lambda: T0) as ledger:
        ledger.bind_property(MID, ENDPOINT)
        ledger.begin_run("night-1", "send")
        ledger.plan(events_frame(["crm|purchase|T1", "crm|purchase|T2"], ts=T0 - HOUR), "night-1",
                    oldest_sendable_micros=T0 - 71 * HOUR)
    db = sqlite3.connect(path)  # make it exactly what mpetl wrote before issue 26
    db.executescript("ALTER TABLE events DROP COLUMN place; DROP TABLE places; UPDATE meta SET v = '4' WHERE k = 'schema';")
    db.close()
    with SqliteLedger(path, read_only=True) as reader:  # a reader reads it as it is
        assert reader.state_counts()["planned"] == 2
    assert _meta(path)["schema"] == "4"
    with SqliteLedger(path, lock=True, clock=lambda: T0) as ledger:
        assert _meta(path)["schema"] == str(SCHEMA_VERSION)
        ledger.bind_property(MID, ENDPOINT)
        ledger.begin_run("night-2", "send")
        ledger.plan(events_frame(["crm|purchase|T3"], ts=T0 - HOUR,
                                 places=['"user_location":{"country_id":"GB"}']), "night-2",
                    oldest_sendable_micros=T0 - 71 * HOUR)
        ledger.snapshot_pending()
        bodies = [orjson.loads(r.body) for r in build_requests(ledger.iter_pending(), run_id="night-2")]
        assert sorted((tuple(e["params"]["transaction_id"] for e in b["events"]), b.get("user_location"))
                      for b in bodies) == [(("T1", "T2"), None), (("T3",), {"country_id": "GB"})]
        assert ledger.integrity_ok()
