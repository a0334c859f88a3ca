"""Measuring a child process from its parent: wall time, peak RSS (sampled with psutil), CPU seconds.

Why from a parent: the figure must include the interpreter's start-up and every import, as a cron run
pays them, and RSS sampled from outside cannot be flattered by the measured code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MPETL = ROOT / ".venv" / "bin" / "mpetl"


@dataclass
class ChildRun:
    exit_code: int
    wall_s: float
    peak_rss_mb: float
    cpu_s: float                      # user + system of the child and its reaped children (wait4)
    marks: dict[str, float] = field(default_factory=dict)   # CPU seconds at stderr events, see run_child
    stderr_tail: str = ""
    peak_rss_mb_at: dict[str, float] = field(default_factory=dict)  # the peak so far when each mark came
    wall_at: dict[str, float] = field(default_factory=dict)  # seconds from exec when each mark came


def _rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_child(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT, interval_s: float = 0.05,
              mark_on: Callable[[str], str | None] | None = None) -> ChildRun:
    """Run `cmd`; sample its RSS every `interval_s`; `mark_on(line)` naming a mark snapshots the child's CPU."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    marks: dict[str, float] = {}
    peak_at: dict[str, float] = {}
    wall_at: dict[str, float] = {}
    tail: list[str] = []
    peak = 0

    def pump() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            tail.append(line)
            del tail[:-20]
            name = mark_on(line) if mark_on else None
            if name:
                wall_at.setdefault(name, time.perf_counter() - start)
                with contextlib.suppress(psutil.Error):
                    peak_at[name] = max(peak, _rss(ps)) / 2**20
                try:
                    t = ps.cpu_times()
                    marks[name] = t.user + t.system
                except psutil.Error:
                    pass

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(psutil.Error):
            peak = max(peak, _rss(ps))
        time.sleep(interval_s)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=5)
    return ChildRun(proc.returncode, wall, peak / 2**20, usage.ru_utime + usage.ru_stime, marks, "".join(tail), peak_at,
                    wall_at)


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system
