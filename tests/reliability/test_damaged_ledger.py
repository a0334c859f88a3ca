"""A damaged SQLite ledger is refused before anything is planned or sent: one line, exit 2, the file
named with what to do, and nothing sent again (issue 23: bits flipped in a table page that quick_check
already called damaged, and the rerun exited 0; a flipped byte in a key made the rerun send it again)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from etl.load import open_ledger
from tests.reliability.harness import (
    assert_no_traceback,
    cli,
    config_for,
    generic_source,
    ledger_path,
    run_args,
    stored_events,
    write_orders,
)
from tests.support import cli_errors


def _damage_quick_check_sees_but_reads_do_not(path: Path, seed: int = 23) -> None:
    """Flip 8 bits in one page of the events table, at seeded places, until SQLite's quick_check calls
    the file damaged while plain reads of every row (by the table and by the key index) still work: the
    damage a run would not trip over by itself."""
    pristine = path.read_bytes()
    db = sqlite3.connect(path)
    pages = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf'")]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    rng = random.Random(seed)
    for _ in range(1000):
        data = bytearray(pristine)
        start = (rng.choice(pages) - 1) * size + rng.randrange(8, size - 8)
        for i in range(start, start + 8):
            data[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        db = sqlite3.connect(path)
        try:
            if db.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok":
                continue
            db.execute("SELECT * FROM events").fetchall()
            db.execute("SELECT * FROM events INDEXED BY events_key").fetchall()
            return
        except sqlite3.Error:
            continue
        finally:
            db.close()
    raise AssertionError("no such damage found: the premise of the test does not hold")


def _damage_one_key(path: Path, tid: str) -> None:
    """One byte of one sent event's key: invisible to quick_check (SQLite keeps no checksums)."""
    data = path.read_bytes()
    needle = f"|purchase|{tid}".encode()
    assert data.count(needle) == 1
    path.write_bytes(data.replace(needle, needle[:-1] + b"#"))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    db.close()


@pytest.mark.parametrize("damage", ["a table page", "one key"])
def test_a_damaged_ledger_is_refused_in_one_line_and_nothing_is_sent_again(tmp_path, collector, damage):
    server = collector()
    tids = write_orders(tmp_path / "orders.csv", prefix="D", clients=300, per_client=2)
    config = config_for(tmp_path, [generic_source(tmp_path / "orders.csv")], endpoint=server.url)
    first = cli(*run_args(config, tmp_path / "night-1"))
    assert first.code == 0, first.stderr[-2000:]
    assert stored_events(server.data_dir) == {("purchase", tid): 1 for tid in tids}

    ledger = ledger_path(tmp_path)
    assert not Path(f"{ledger}-wal").exists()  # a finished run leaves everything in the file itself
    if damage == "a table page":
        _damage_quick_check_sees_but_reads_do_not(ledger)
    else:
        _damage_one_key(ledger, tids[123])
    damaged = ledger.read_bytes()

    rerun = cli(*run_args(config, tmp_path / "night-2"))
    assert_no_traceback(rerun.stdout, rerun.stderr)
    assert rerun.code == 2, rerun.stderr[-2000:]
    (line,) = cli_errors(rerun.stderr)  # the one error line among the run's JSON log lines
    assert line.startswith(f"ledger {ledger}: the database is damaged (")
    assert "nothing was sent: restore it from a backup, or salvage it" in line
    assert stored_events(server.data_dir) == {("purchase", tid): 1 for tid in tids}, "an event was sent again"
    if damage == "a table page":  # refused at open, before the first write
        assert ledger.read_bytes() == damaged  # never "repaired" into a ledger that forgets what was sent
    else:  # refused when the chunk met the damaged key: the chunk rolled back, the sent events kept
        with open_ledger(ledger, read_only=True) as after:
            counts = after.state_counts()
        assert (counts["sent"], sum(v for k, v in counts.items() if k != "runs")) == (600, 600)
    assert not (tmp_path / "night-2" / "summary.json").exists()
