"""Outputs exactly once: every deferred event reaches one deferred.csv, one historical write, and (for
those who use it) one `mpetl deferred` file — whatever was killed, when.

Why: the ledger defers an event once, ever; before this protocol the files were written after that
and not recorded, so a run killed before or while writing them left its deferred events in no file
(issue 23: 3,000 fresh + 20,000 old rows killed mid-send, the rerun said "deferred 0, duplicate
20000", and no deferred.csv or historical row ever held them). Now an output *takes* its events from
the ledger, in these steps (one output = one run's files of one kind; the ledger records it):

  1. settle  Outputs of earlier runs left unsettled (killed) are settled first, as below.
  2. claim   One ledger transaction: the output's record (`claimed`, its folder) and every deferred
             event no output of that kind holds — deferred by this run or by any earlier one.
  3. write   Into hidden temporary names in the final folder (`.<name>.<run_id>.partial`), closed,
             then fsync'ed.
  4. written The record lists each file: final and temporary path, size, SHA-256.
  5. rename  Each temporary file onto its final name (`os.replace`, atomic), then fsync the folder.
  6. taken   The record becomes `taken`: the events are this output's for good.

A kill at any point leaves no file or a whole one under a final name, and the next run settles:
  - killed before 2: nothing claimed; the next claim takes everything.
  - killed in 2–4 (`claimed`): renames come after 4, so no final name holds anything of it; its
    temporary files are deleted and its events released: the next claim takes them.
  - killed in 4–6 (`written`, renamed or not): every file is whole under its final name or still whole
    under its temporary one (same size and SHA-256): the renames are finished and the record marked
    `taken` — the events are never written a second time. If a file is in neither place (deleted by
    hand), the output is incomplete: its whole files are removed and its events released.
  - after 6: settled.
An error while writing (a full disk) deletes the temporary files and releases the claim at once, then
stops the run with one line: nothing was marked taken, the next run writes those events.
Dry runs settle their scratch copy of the ledger without touching any file.

Each kind has its own claim (a deferred.csv does not take an event from the historical table); the
files of a run's deferred.csv and of `mpetl deferred` are separate channels: upload one of them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl import failpoints, log
from etl.errors import LedgerError
from etl.load.ledger import DeferredEvent, Ledger, OutputClaim, OutputKind

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

Events = Callable[[], Iterator[DeferredEvent]]
Landed = Callable[[dict[str, Any]], bool | None]  # a remote write's job landed? None: cannot tell now


def partial_path(final: Path, run_id: str) -> Path:
    """The hidden temporary name of `final` while `run_id` writes it (never matches `<table>_*` globs)."""
    return final.with_name(f".{final.name}.{_UNSAFE.sub('_', run_id)}.partial")


def is_partial(name: str) -> bool:
    return name.startswith(".") and name.endswith(".partial")


def fsync_dir(folder: Path) -> None:
    """A rename is durable once its folder is: without this, power loss can undo it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """A small file (summary.json) replaced in one rename: a reader sees the old one or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _described(path: Path) -> tuple[int, str] | None:
    try:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            return os.fstat(handle.fileno()).st_size, digest
    except (FileNotFoundError, NotADirectoryError):
        return None


class Staging:
    """One output's temporary files, each in its final folder under a hidden name."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.pairs: list[tuple[Path, Path]] = []

    def file(self, final: Path) -> Path:
        """The temporary path to write `final` to (published in the order asked for)."""
        tmp = partial_path(final, self.run_id)
        self.pairs.append((tmp, final))
        return tmp

    def seal(self) -> list[dict[str, Any]]:
        """fsync every file (the writers closed them) and describe it for the ledger."""
        files = []
        for tmp, final in self.pairs:
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            size, sha = _described(tmp) or (0, "")
            files.append({"path": str(final), "tmp": str(tmp), "bytes": size, "sha256": sha})
        return files

    def publish(self) -> None:
        for tmp, final in self.pairs:
            os.replace(tmp, final)
        for folder in {final.parent for _, final in self.pairs}:
            fsync_dir(folder)

    def discard(self) -> None:
        for tmp, _ in self.pairs:
            tmp.unlink(missing_ok=True)


@dataclass
class Delivery:
    """What one output took: the summary's numbers (`rows` = `this_run` + `earlier_runs`)."""

    kind: str
    rows: int = 0
    this_run: int = 0  # deferred by this run
    earlier_runs: int = 0  # deferred by earlier runs whose outputs never took them (killed, failed writes)
    other_runs: int = 0  # deferred by this run but taken by a concurrent run's output (PostgreSQL shards)
    unclaimed: int = 0  # deferred by this run and in no output of this kind: must be 0
    recovered: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        return {"rows": self.rows, "this_run": self.this_run, "earlier_runs": self.earlier_runs,
                "other_runs": self.other_runs, "recovered": self.recovered}


def deliver(ledger: Ledger, run_id: str, kind: OutputKind, folder: Path, write: Callable[[Events, Staging], int], *,
            dry: bool = False, since_date: str | None = None, deferred_by: str | None = None) -> Delivery:
    """Steps 1–6 for one output whose files `write(events, staging)` writes; returns what it took.

    `write` must write only through `staging.file(final)` and return the events it wrote. An error
    while writing (OSError: a full disk) deletes the temporary files, releases the claim, and is raised.
    """
    folder = folder.resolve()
    recovered = settle(ledger, kind, current_run=run_id, dry=dry)
    claimed = ledger.claim_deferred(run_id, kind, str(folder), since_date=since_date, deferred_by=deferred_by)
    failpoints.reached(f"{kind}.claimed")
    staging = Staging(run_id)
    try:
        written = write(lambda: ledger.claimed_events(run_id, kind), staging)
        if written != claimed:
            raise LedgerError(f"run {run_id}'s {kind} output claimed {claimed} events but wrote {written}")
        files = staging.seal()
    except BaseException as exc:
        staging.discard()
        ledger.release_output(run_id, kind)
        log.emit("output_failed", run_id=run_id, kind=kind, released=claimed, error=type(exc).__name__)
        raise
    ledger.output_written(run_id, kind, files)
    failpoints.reached(f"{kind}.written")
    staging.publish()
    failpoints.reached(f"{kind}.renamed")
    ledger.output_taken(run_id, kind)
    return delivery_of(ledger, run_id, kind, claimed, recovered)


def delivery_of(ledger: Ledger, run_id: str, kind: OutputKind, rows: int, recovered: list[dict[str, Any]]) -> Delivery:
    """What a taken output holds, split by who deferred it (the summary's accounting)."""
    holders = ledger.deferred_claims(run_id, kind)
    return Delivery(kind, rows=rows, this_run=holders["this_run"], earlier_runs=rows - holders["this_run"],
                    other_runs=holders["other_runs"], unclaimed=holders["unclaimed"], recovered=recovered)


def settle(ledger: Ledger, kind: OutputKind, *, current_run: str, dry: bool = False, landed: Landed | None = None) -> list[dict[str, Any]]:
    """Settle the outputs of `kind` that dead runs left claimed or written; what was done, per output."""
    done = []
    for claim in ledger.unsettled_outputs(kind):
        if claim.run_id == current_run:
            continue
        outcome = _settle(ledger, claim, dry=dry, landed=landed)
        if outcome is None:
            log.emit("output_unsettled", run_id=claim.run_id, kind=kind, rows=claim.rows)
            continue
        done.append({"run_id": claim.run_id, "rows": claim.rows, "outcome": outcome})
        log.emit("output_settled", kind=kind, **done[-1])
    return done


def _place(file: dict[str, Any]) -> str | None:
    """Where a recorded file is whole: "final", "tmp" (and nothing else under its final name, which a
    rename must never replace), or None (gone, or not the same bytes)."""
    want = (file["bytes"], file["sha256"])
    final = Path(file["path"])
    if _described(final) == want:
        return "final"
    if not final.exists() and _described(Path(file["tmp"])) == want:
        return "tmp"
    return None


def _settle(ledger: Ledger, claim: OutputClaim, *, dry: bool, landed: Landed | None) -> str | None:
    files = claim.files if claim.state == "written" else []
    jobs = [f for f in files if "job_id" in f]
    if jobs:  # a remote load job (BigQuery): it landed whole or not at all
        verdict = landed(jobs[0]) if landed is not None else None
        if verdict is None:
            return None
        if verdict:
            ledger.output_taken(claim.run_id, claim.kind)
            return "completed"
        ledger.release_output(claim.run_id, claim.kind)
        return "released"
    places = [_place(f) for f in files]
    if claim.state == "written" and all(places):
        if not dry:
            for f, place in zip(files, places, strict=True):
                if place == "tmp":
                    os.replace(f["tmp"], f["path"])
            for folder in {Path(f["path"]).parent for f in files}:
                fsync_dir(folder)
        ledger.output_taken(claim.run_id, claim.kind)
        return "completed"
    if not dry:
        for f, place in zip(files, places, strict=True):
            if place == "final":
                Path(f["path"]).unlink(missing_ok=True)
        remove_partials(Path(claim.target), claim.run_id)
    ledger.release_output(claim.run_id, claim.kind)
    return "released"


def remove_partials(folder: Path, run_id: str) -> None:
    """Delete `run_id`'s temporary files in `folder` (a dead run's leftovers)."""
    if folder.is_absolute() and folder.is_dir():
        for path in folder.glob(f".*.{_UNSAFE.sub('_', run_id)}.partial"):
            path.unlink(missing_ok=True)
