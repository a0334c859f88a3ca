"""`--out D`: one run's folder. Nothing a run wrote is overwritten by another run.

Why: rerunning into the same `--out` used to replace `deferred.csv` (2 rows) with a header-only file
and the first summary was gone (issue 24). A run now writes into a new or empty D, or a D holding
only mpetl's own kind of files from no run (leftovers of a run that died before it began); a D
holding another run's outputs is refused (exit 2, one line naming that run) unless `--replace`,
which removes them first — never half-mixed — and gives the events of the old `deferred.csv` back to
the ledger, so this run's deferred.csv holds them (a replaced file loses no deferred event).

The run's marker `D/.mpetl-run` holds its run id from the moment it begins and carries an flock while
it runs (the kernel drops it on kill -9): a second process never writes into a D that a live run is
writing, even with `--replace`. A run killed before its summary.json is still named by its marker.
"""

from __future__ import annotations

import os
import re
from contextlib import suppress
from pathlib import Path

import orjson

from etl import log
from etl.errors import MpetlError
from etl.load import Ledger, is_partial, write_atomic
from etl.lockfile import try_lock

MARKER = ".mpetl-run"
OWN_FILES = frozenset({"summary.json", "privacy_manifest.json", "rejects.ndjson", "requests.ndjson", "deferred.csv",
                       "deferred_index.csv", MARKER})
SCRATCH = "ledger.scratch.sqlite"  # a dry run's or validation's copy of the ledger (open_ledger(scratch_dir=D))
_SCRATCH = re.compile(r"ledger\.scratch\.sqlite(-wal|-shm)?")


class OutputFolderError(MpetlError):
    """--out names a folder this run must not write into (exit 2)."""


def is_own(name: str) -> bool:
    """A file name mpetl writes into a run's folder (outputs, scratch ledgers, temporary files)."""
    return name in OWN_FILES or bool(_SCRATCH.fullmatch(name)) or is_partial(name)


def _has_deferred_rows(folder: Path) -> bool:
    with suppress(OSError), (folder / "deferred.csv").open("rb") as handle:
        handle.readline()  # the header
        return bool(handle.readline().strip())
    return False


def _mode_in(folder: Path) -> str | None:
    with suppress(OSError, orjson.JSONDecodeError, AttributeError):
        return orjson.loads((folder / "summary.json").read_bytes()).get("mode")
    return None


def _run_in(folder: Path) -> str | None:
    """The run whose outputs `folder` holds: its marker, else its summary.json (older mpetl)."""
    with suppress(OSError):
        text = (folder / MARKER).read_text().strip()
        if text:
            return text
    with suppress(OSError, orjson.JSONDecodeError, AttributeError):
        return orjson.loads((folder / "summary.json").read_bytes()).get("run_id") or "(unnamed)"
    if _has_deferred_rows(folder):  # rows some run wrote, and nothing names that run
        return "(unknown: a deferred.csv with rows and no summary.json)"
    return None


class RunFolder:
    """Held for the whole run: refuses a folder it must not write, clears what it may, marks it."""

    def __init__(self, path: Path, *, replace: bool = False, mode: str = "send") -> None:
        self.path = path
        self.replace = replace
        self._fd: int | None = None
        if path.exists() and not path.is_dir():
            raise OutputFolderError(f"{path}: --out must be a folder; this is a file")
        names = sorted(os.listdir(path)) if path.is_dir() else []
        foreign = [n for n in names if not is_own(n)]
        if foreign:
            raise OutputFolderError(f"{path}: holds {len(foreign)} file(s) mpetl did not write (e.g. {foreign[0]!r}); "
                                    "--out must be a new or empty folder")
        self.previous = _run_in(path) if names else None
        if self.previous and not replace:
            raise OutputFolderError(f"{path}: holds the outputs of run {self.previous}; choose a new --out folder, "
                                    "or pass --replace to remove them first")
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._fd = try_lock(path / MARKER)
        except OSError as exc:
            raise OutputFolderError(f"{path}: cannot write ({exc.strerror}); choose a writable --out folder") from None
        if self._fd is None:
            raise OutputFolderError(f"{path}: run {_run_in(path) or '(starting)'} is writing this folder now; "
                                    "choose another --out folder")
        self.previous = _run_in(path)  # again, under the lock: another run may have begun meanwhile
        if self.previous and not replace:
            self.close()
            raise OutputFolderError(f"{path}: holds the outputs of run {self.previous}; choose a new --out folder, "
                                    "or pass --replace to remove them first")
        if self.previous and mode != "send" and _mode_in(path) not in ("dry-run", "validate") and _has_deferred_rows(path):
            # A send's deferred.csv holds events the ledger gave it; a dry run works on a copy of the
            # ledger and could not give them to another file.
            self.close()
            raise OutputFolderError(f"{path}: the deferred.csv of run {self.previous} holds deferred events; only "
                                    "a send (not a dry run) may replace it")

    def begin(self, run_id: str, ledger: Ledger, mode: str) -> None:
        """Remove what an earlier run left (with --replace) and name this run in the marker.

        The replaced run's deferred.csv gives its events back (released in the ledger): this run's
        deferred.csv takes them.
        """
        if self.previous:
            claim = ledger.output_claim(self.previous, "deferred_csv")
            if claim is not None and claim.state == "taken" and Path(claim.target) == self.path.resolve():
                released = ledger.release_output(self.previous, "deferred_csv")
                log.emit("outputs_replaced", out=str(self.path), run_id=self.previous, deferred_released=released)
        for name in os.listdir(self.path):
            if mode != "send" and name.startswith(SCRATCH):
                continue  # this dry run's own copy of the ledger, open already
            if is_own(name) and name != MARKER:
                (self.path / name).unlink(missing_ok=True)
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, run_id.encode() + b"\n", 0)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["MARKER", "OutputFolderError", "RunFolder", "is_own", "write_atomic"]
