"""`mpetl nightly`: send yesterday's conversions, then reconcile the dates whose export became final.

Why a command of the package (it was a shell script with a Python heredoc): cron needs one command
with one exit code that works wherever the package is installed, whatever `python3` is on PATH.

The window is "yesterday" in the property's reporting zone (GA4 reports and the export are cut in that
zone, not UTC), so a night's run and the export's daily table line up. A lock next to the ledger
(flock, released by the kernel even on kill -9) keeps two nightly runs from overlapping: the second
exits 5 at once. Exit code: the worst (highest) of the run's and the reconcile's.

Every run of a night gets its own folder, `<out>/nightly/<day>/run-<run_id>/{run,reconcile}` (a
retry or a same-day rerun never overwrites the outputs that explain the run before it, as the
Airflow DAG's per-try folders), and two links, each swapped in one rename so a reader never sees it
missing: `<out>/nightly/<day>/latest` (that night's newest run) and `<out>/nightly/latest` (the newest).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from etl import log
from etl.clock import wall_micros
from etl.config import Config
from etl.errors import EXIT_LOCKED, LedgerLockedError, MpetlError
from etl.lockfile import try_lock

MAX_DAYS = 3  # GA4 takes events up to 72 h old


@dataclass(frozen=True)
class NightlyPlan:
    """[since, until) = the last `days` whole days in the zone; reconcile [reconcile_since, last_day]."""

    zone: str
    since: datetime
    until: datetime
    last_day: date
    reconcile_since: date


def plan(config: Config, now: datetime, days: int) -> NightlyPlan:
    zone = ZoneInfo(config.property.timezone)
    today = now.astimezone(zone).date()
    first_day, last_day = today - timedelta(days=days), today - timedelta(days=1)
    since = datetime.combine(first_day, time(), zone).astimezone(UTC)
    until = datetime.combine(today, time(), zone).astimezone(UTC)
    # The newest date whose export is final: its end + provisional_hours has passed.
    settled = (now - timedelta(hours=config.reconcile.provisional_hours)).astimezone(zone).date()
    newest_final = settled - timedelta(days=1)
    reconcile_since = min(newest_final - timedelta(days=days - 1), last_day)
    return NightlyPlan(config.property.timezone, since, until, last_day, reconcile_since)


class NightlyLock:
    """An exclusive, non-blocking flock on `<ledger>.nightly.lock` for the whole job."""

    def __init__(self, ledger_path: Path) -> None:
        self.path = Path(str(ledger_path) + ".nightly.lock")
        self._fd: int | None = None

    def __enter__(self) -> NightlyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = try_lock(self.path, 0o600)
        if self._fd is None:
            raise LedgerLockedError(f"another nightly run holds {self.path}; refusing to start (nothing sent)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


Step = Callable[[], int]


def run_nightly(config: Config, *, now: datetime, days: int, out_root: Path, pinned: bool,
                run_step: Callable[[NightlyPlan, Path, str], int],
                reconcile_step: Callable[[NightlyPlan, Path], int]) -> int:
    """Lock, run into this run's own folder, reconcile, point the `latest` links at it; the worst exit code.

    `run_step(plan, folder, run_id)` must run with that run id: the folder is named by it.
    """
    from etl.pipeline import new_run_id

    nightly = plan(config, now, days)
    with NightlyLock(config.ledger_path):
        run_id = new_run_id(datetime.fromtimestamp(wall_micros() / 1e6, UTC))
        day = nightly.last_day.isoformat()
        run_dir = out_root / "nightly" / day / f"run-{run_id}"
        run_dir.mkdir(parents=True)  # never there before: the run id is new
        log.emit("nightly_started", config=str(config.file), timezone=nightly.zone, since=nightly.since.isoformat(),
                 until=nightly.until.isoformat(), out=str(run_dir), run_id=run_id, now=now.isoformat() if pinned else None)
        run_code = _guarded(lambda: run_step(nightly, run_dir / "run", run_id))
        log.emit("nightly_run_finished", exit_code=run_code)
        reconcile_code = _guarded(lambda: reconcile_step(nightly, run_dir / "reconcile"))
        log.emit("nightly_reconcile_finished", exit_code=reconcile_code, since=nightly.reconcile_since.isoformat(),
                 until=nightly.last_day.isoformat())
        _point_link(out_root / "nightly" / day / "latest", run_dir.name)
        _point_link(out_root / "nightly" / "latest", f"{day}/{run_dir.name}")
    code = max(run_code, reconcile_code)
    log.emit("nightly_finished", exit_code=code)
    return code


def _guarded(step: Step) -> int:
    """A step's exit code; a one-line error (not a traceback) when it raises one of ours, and the
    night goes on: a failed send must not stop the reconcile of earlier, final dates."""
    from etl.commandline import echo_error

    try:
        return step()
    except MpetlError as exc:
        for line in getattr(exc, "lines", None) or [str(exc)]:  # a config's problems, one line each
            echo_error(line, exit_code=exc.exit_code)
        return exc.exit_code


def _point_link(link: Path, target: str) -> None:
    """Swap a `latest` link in one rename, so a reader never sees it missing (or half-made)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


__all__ = ["EXIT_LOCKED", "MAX_DAYS", "NightlyLock", "NightlyPlan", "plan", "run_nightly"]
