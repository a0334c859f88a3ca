"""One exclusive, non-blocking file lock: the ledger's run lock and the nightly job's lock are both this.

Why flock on a side file: the kernel drops it when the process dies (kill -9 included), so a crash
never leaves a stale lock behind, and a second run learns at once that it must not start.
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
