"""One exclusive, non-blocking file lock: the nightly job's lock (`<ledger>.nightly.lock`).

Why flock: the kernel drops it when the process dies (kill -9 included), so a crash never leaves a
stale lock behind, and a second run learns at once that it must not start. (The ledger's own run lock
is an flock on the database file itself, etl/load/ledger/sqlite.py: a side file named after a path
would give a hard link of the ledger a second lock.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_lock(path: Path | str, mode: int = 0o644) -> int | None:
    """Open (creating) `path` and lock it exclusively without waiting: its descriptor (close it to
    release), or None when another process holds the lock. OSError when the file cannot be opened."""
    fd = os.open(str(path), os.O_CREAT | os.O_RDWR, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
