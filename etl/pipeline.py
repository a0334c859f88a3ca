"""One run: extract → transform → plan (ledger) → send → account. The CLI, cron and Airflow call this.

Two phases, as in dlt's load packages: every source is streamed chunk by chunk into the ledger
(`planned`), then the sender drains the ledger. So a run killed at any point resumes from the ledger,
and memory stays bounded by one chunk plus the send queue. Every input row lands in exactly one of
sent / rejected / duplicate / deferred / expired / rejected_at_send / failed, and the run refuses to
report otherwise. Age is always measured on the wall clock (`etl.clock`): `--now` only selects rows.

What a run leaves behind: `--out D` is this run's folder (etl/run_folder.py: never another run's), and
its deferred.csv and the [historical] write each take, exactly once, every deferred event no output
of that kind has taken yet — this run's and those a killed run left (etl/load/outputs.py).
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from etl import log
from etl.clock import wall_micros
from etl.config import Config, SourceConfig, read_api_secret
from etl.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_SEND_FAILURES,
    EXIT_STOPPED,
    ConfigError,
    MpetlError,
    OutputError,
    SourceError,
)
from etl.extract import iter_source_chunks
from etl.load import (
    Delivery,
    HttpTransport,
    Ledger,
    OutboxTransport,
    PrivacyManifest,
    RetryPolicy,
    RunOutcome,
    SendSettings,
    SendStats,
    Stopper,
    deliver_data_import,
    deliver_historical,
    open_ledger,
    send_pending,
    write_atomic,
)
from etl.load import is_url as is_ledger_url
from etl.protocol import to_micros
from etl.run_folder import RunFolder
from etl.shard import Shard
from etl.transform import check_params, transform_chunk

MODES = ("send", "dry-run", "validate")
LOCAL_ENDPOINT = "local"


@dataclass
class RunOptions:
    out_dir: Path
    mode: str = "send"
    # Selects rows (a past night's re-run): rows timed at or after it are outside this run, like
    # --until. It never changes an event's age: that is the wall clock's, as it is Google's.
    now: datetime | None = None
    concurrency: int | None = None
    fail_fast: bool = False
    chunk_rows: int = 50_000  # peak memory follows the chunk: 50k rows keeps a run near 370 MB
    only_sources: tuple[str, ...] = ()
    seed: int | None = None
    since: datetime | None = None  # incremental window on event time: [since, until)
    until: datetime | None = None
    sample_requests: int | None = None  # validate: send only this many requests to the debug endpoint
    progress: Callable[[SendStats], None] | None = None
    clock: Callable[[], int] = wall_micros  # µs; tests inject another, nothing else should
    shard: tuple[int, int] | None = None
    replace: bool = False  # out_dir may hold another run's outputs: remove them first (--replace)
    run_id: str | None = None  # chosen by the caller (nightly names the run's folder by it); default: new

    @property
    def select_until(self) -> datetime | None:
        """The end of the rows this run takes: --until, or --now when earlier."""
        ends = [t for t in (self.until, self.now) if t is not None]
        return min(ends) if ends else None


@dataclass
class SourceTally:
    rows_in: int = 0
    lines: int = 0
    rejected: int = 0
    deferred: int = 0
    duplicate: int = 0
    planned: int = 0
    outside_window: int = 0
    other_shard: int = 0
    no_session: int = 0
    counters: Counter[str] = field(default_factory=Counter)
    detectors: Counter[str] = field(default_factory=Counter)
    reject_codes: Counter[str] = field(default_factory=Counter)


@dataclass
class RunResult:
    summary: dict[str, Any]
    exit_code: int


def new_run_id(now: datetime) -> str:
    """Sortable and non-personal: it rides on every event as the `mpetl_run` marker."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"




def _check_allowlists(config: Config) -> None:
    """Stop before anything is read or sent if a configured param is outside the allowlist."""
    extra = config.privacy_extra_params
    for source in config.sources:
        check_params(source.event, set(source.params), source=source.name, extra=extra)


class _Outputs:
    """The run's files in out_dir (cleared by `RunFolder.begin`). Rejects are appended chunk by chunk
    (bounded memory)."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir
        self._rejects = (out_dir / "rejects.ndjson").open("wb")

    def mark(self) -> int:
        """Where the rejects stand now, to withdraw a source that fails part-way through."""
        self._rejects.flush()
        return self._rejects.tell()

    def withdraw_to(self, mark: int) -> None:
        """Forget what was written since `mark`: a failed source leaves nothing in the outputs."""
        self._rejects.flush()
        self._rejects.truncate(mark)
        self._rejects.seek(mark)

    def add_rejects(self, rejects: pd.DataFrame) -> None:
        for source, row, reasons in rejects.itertuples(index=False):
            self._rejects.write(orjson.dumps({"source": source, "row": int(row), "reasons": reasons}) + b"\n")

    def add_refused_at_send(self, refused: list[tuple[str, int | None, str]]) -> None:
        for source, row, reason in refused:
            self._rejects.write(orjson.dumps({"source": source, "row": row, "at": "send", "reasons": [
                {"fieldPath": "events", "description": reason, "validationCode": "VALUE_OUT_OF_BOUNDS"}]}) + b"\n")

    def close(self) -> None:
        self._rejects.close()


def max_age_micros(config: Config) -> int:
    """How old an event may be when it leaves: the 72 h window minus its safety margin."""
    window = config.window
    return int((window.max_age_hours * 60 - window.safety_margin_minutes) * 60_000_000)


def _process_source(source: SourceConfig, config: Config, ledger: Ledger, outputs: _Outputs, *, run_id: str,
                    options: RunOptions, stopper: Stopper) -> SourceTally:
    tally = SourceTally()
    log.emit("source_started", source=source.name, kind=source.kind, path=str(source.path))
    until = options.select_until
    for chunk in iter_source_chunks(source, chunk_rows=options.chunk_rows, since=options.since, until=until):
        if stopper.stopped:
            break  # what was read is planned; the rest of the file is read again by the next run
        now_micros = options.clock()
        result = transform_chunk(
            chunk, source, config.property, config.window, now_micros=now_micros, run_id=run_id,
            since_micros=to_micros(options.since) if options.since else None,
            until_micros=to_micros(until) if until else None,
            extra_params=config.privacy_extra_params,
            shard=Shard(*options.shard) if options.shard else None,
        )
        buckets = ledger.plan(result.events, run_id, oldest_sendable_micros=options.clock() - max_age_micros(config))
        outputs.add_rejects(result.rejects)
        c = result.counters
        planned = int((buckets == "planned").sum())
        deferred = int((buckets == "deferred").sum())
        log.detail("chunk_planned", source=source.name, rows=c["rows"], planned=planned,
                   rejected=c["rejected"], deferred=deferred, outside_window=c.get("outside_window", 0))
        tally.rows_in += c["rows"] + c.get("other_shard", 0)
        tally.other_shard += c.get("other_shard", 0)
        tally.lines += int(getattr(chunk, "lines", c["rows"]))
        tally.rejected += c["rejected"]
        tally.deferred += deferred
        tally.duplicate += int((buckets == "duplicate").sum())
        tally.planned += planned
        tally.no_session += c["no_session"]
        tally.outside_window += c.get("outside_window", 0)
        for name in ("session_cookie_unparsed", "session_too_old_to_attribute", "timestamp_before_session_start",
                     "session_cookie_other_property", "purchase_without_items", "refunds_outside_window"):
            tally.counters[name] += c.get(name, 0)
        tally.detectors.update(c.get("detectors", {}))
        tally.reject_codes.update(c.get("reject_codes", {}))
    log.emit("source_planned", source=source.name, rows_in=tally.rows_in, planned=tally.planned,
             rejected=tally.rejected, deferred=tally.deferred, duplicate=tally.duplicate)
    return tally


@contextlib.contextmanager
def _destination(config: Config, options: RunOptions, secret: str | None) -> Iterator[Any]:
    """The transport for this mode; for endpoint = "local", the project's collector, started here."""
    out = options.out_dir
    concurrency = options.concurrency or config.destination.concurrency
    if options.mode == "dry-run":
        yield OutboxTransport(out / "requests.ndjson")
        return
    assert secret is not None
    endpoint = config.destination.endpoint
    if endpoint == LOCAL_ENDPOINT:
        from etl.collector import CollectorServer

        store = config.reconcile.store or (config.base_dir / "state" / "collector")
        # The collector reads the same (process) clock as the sender, as Google reads its own.
        with CollectorServer(store, measurement_id=config.property.measurement_id, api_secret=secret,
                             timezone=config.property.timezone) as server:
            log.emit("local_collector_started", url=server.url, store=str(store))
            yield HttpTransport(server.url, config.property.measurement_id, secret, concurrency=concurrency,
                                timeout_s=config.destination.timeout_s, debug=options.mode == "validate")
        return
    yield HttpTransport(endpoint, config.property.measurement_id, secret, concurrency=concurrency,
                        timeout_s=config.destination.timeout_s, debug=options.mode == "validate")


def _open_run_ledger(config: Config, options: RunOptions) -> Ledger:
    """The real ledger for a send; a scratch copy for dry-run and validate (they must not change it)."""
    location = config.ledger_location
    if is_ledger_url(location):  # PostgreSQL: the run lock is per shard; a scratch session for dry runs
        return open_ledger(location, lock=options.mode == "send", clock=options.clock, shard=options.shard,
                           scratch=options.mode != "send")
    if options.mode != "send":
        scratch = options.out_dir / f"ledger.{options.mode}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(scratch) + suffix).unlink(missing_ok=True)
        if Path(location).exists():
            with open_ledger(location, clock=options.clock) as original:
                original.copy_to(scratch)
        return open_ledger(scratch, lock=True, clock=options.clock, scratch=True)
    return open_ledger(location, lock=True, clock=options.clock)


def run_pipeline(config: Config, options: RunOptions) -> RunResult:
    """Run the job once; return the summary (also written to out_dir/summary.json) and the exit code."""
    if options.mode not in MODES:
        raise ConfigError("-", "mode", f"expected one of {', '.join(MODES)}")
    unknown = sorted(set(options.only_sources) - {s.name for s in config.sources})
    if unknown:
        raise ConfigError(str(config.file), "sources", f"no source named {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(s.name for s in config.sources)}")
    wall = datetime.fromtimestamp(options.clock() / 1e6, UTC)
    run_id = options.run_id or new_run_id(wall)
    _check_allowlists(config)
    secret = None
    if options.mode != "dry-run":
        secret = read_api_secret(config.destination)
        if not secret:
            raise ConfigError(str(config.file), "destination.api_secret_file",
                              "no API secret: set MP_API_SECRET or point api_secret_file at a file holding it")

    out = options.out_dir
    folder = RunFolder(out, replace=options.replace, mode=options.mode)  # refused before anything happens
    stopper = Stopper()
    try:
        ledger = _open_run_ledger(config, options)
    except BaseException:
        folder.close()
        raise
    stopper.install()
    try:
        ledger.bind_property(config.property.measurement_id, config.destination.endpoint)
        folder.begin(run_id, ledger, options.mode)
        ledger.begin_run(run_id, options.mode, shard="/".join(map(str, options.shard)) if options.shard else None)
        recovered = ledger.recover_in_flight()
        log.emit("run_started", run_id=run_id, mode=options.mode, wall_clock=wall.isoformat(),
                 select_until=options.select_until.isoformat() if options.select_until else None,
                 recovered_in_flight=recovered)
        outputs = _Outputs(out)
        tallies: dict[str, SourceTally] = {}
        source_errors: list[dict[str, Any]] = []
        for source in config.sources:
            if options.only_sources and source.name not in options.only_sources:
                continue
            if stopper.stopped:
                break
            mark = outputs.mark()
            try:
                tallies[source.name] = _process_source(source, config, ledger, outputs, run_id=run_id,
                                                       options=options, stopper=stopper)
            except SourceError as exc:
                # Nothing from a broken source is sent or reported row by row: withdraw what this run
                # created for it (events it merely took over from earlier runs keep their state).
                ledger.withdraw(run_id, source.name)
                outputs.withdraw_to(mark)
                source_errors.append({"source": source.name, "error": str(exc)})
                log.emit("source_failed", source=source.name, error=str(exc))
                if options.fail_fast:
                    raise

        manifest = PrivacyManifest()
        destination = config.destination
        settings = SendSettings(
            run_id=run_id,
            policy=RetryPolicy(destination.max_attempts, destination.backoff_base_s, destination.backoff_max_s),
            concurrency=options.concurrency or destination.concurrency,
            max_age_micros=max_age_micros(config),
            clock=options.clock,
            request_deadline_s=destination.request_deadline_s,
            validation_behavior="ENFORCE_RECOMMENDATIONS" if options.mode == "validate" else None,
            max_requests=options.sample_requests if options.mode == "validate" else None,
            shard=options.shard,
            seed=options.seed,
            extra_params=config.privacy_extra_params,
        )
        stopper.set_deadline(destination.deadline_s)
        if stopper.stopped:
            stats = SendStats(stopped=stopper.reason)
        else:
            with _destination(config, options, secret) as transport:
                stats = send_pending(ledger, transport, settings, manifest=manifest, progress=options.progress,
                                     stopper=stopper)
        outputs.add_refused_at_send(ledger.refused(run_id))
        outputs.close()
        csv = _write_deferred_csv(ledger, run_id, out, config, dry=options.mode != "send")
        historical = (deliver_historical(ledger, run_id, config.historical, config.property)
                      if config.historical and options.mode == "send" else None)
        outcome = ledger.outcome(run_id)
        summary = _summarise(config, options, run_id, wall, tallies, outcome, stats, source_errors, recovered,
                             csv, historical)
        write_atomic(out / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        write_atomic(out / "privacy_manifest.json",
                     orjson.dumps(_manifest(config, manifest, tallies, summary["detectors"]), option=orjson.OPT_INDENT_2))
        ledger.finish_run(run_id, orjson.dumps(summary).decode())
        log.emit("run_finished", **{k: summary[k] for k in ("run_id", "rows_in", "sent", "rejected", "duplicate",
                                                                 "deferred", "expired", "failed", "exit_code")})
        return RunResult(summary, summary["exit_code"])
    finally:
        ledger.close()
        stopper.uninstall()
        folder.close()


def _write_deferred_csv(ledger: Ledger, run_id: str, out: Path, config: Config, *, dry: bool) -> Delivery:
    """deferred.csv (+ its index), exactly once; a write that fails (full disk) stops the run in one line
    with nothing marked taken: the next run writes those events."""
    try:
        return deliver_data_import(ledger, run_id, out / "deferred.csv", out / "deferred_index.csv",
                                   config.property.measurement_id, dry=dry)
    except OSError as exc:
        if exc.filename is None:  # a failed write names no file: name the one it was for
            exc = OSError(exc.errno, exc.strerror, str(out / "deferred.csv"))
        raise OutputError(exc) from None


SOURCE_BUCKETS = ("sent", "rejected", "duplicate", "deferred", "expired", "rejected_at_send", "failed", "other_shard")


def _summarise(config: Config, options: RunOptions, run_id: str, wall: datetime, tallies: dict[str, SourceTally],
               outcome: RunOutcome, stats: SendStats, source_errors: list[dict[str, Any]], recovered: int,
               csv: Delivery, historical: dict[str, Any] | None) -> dict[str, Any]:
    sources = {}
    for name, t in tallies.items():
        fate = outcome.by_source.get(name, {})
        sent, expired, refused = fate.get("sent", 0), fate.get("expired", 0), fate.get("rejected_at_send", 0)
        failed = fate.get("failed", 0)
        if sent + expired + refused + failed != t.planned or fate.get("deferred", 0) != t.deferred:
            # A bug, never a data problem: refuse to report numbers that do not add up.
            raise MpetlError(f"accounting does not balance for source {name!r}: planned {t.planned}, "
                             f"deferred {t.deferred}, ledger says {fate}")
        sources[name] = {
            "rows_in": t.rows_in,
            "lines_read": t.lines,
            "sent": sent,
            "rejected": t.rejected,
            "duplicate": t.duplicate,
            "deferred": t.deferred,
            "expired": expired,
            "rejected_at_send": refused,
            "failed": failed,
            "other_shard": t.other_shard,
            "no_session": t.no_session,
            "outside_window": t.outside_window,
            "session_too_old_to_attribute": t.counters["session_too_old_to_attribute"],
            "timestamp_before_session_start": t.counters["timestamp_before_session_start"],
            # Google-exact notes (issue 14): sent, but worth knowing.
            "session_cookie_other_property": t.counters["session_cookie_other_property"],
            "purchase_without_items": t.counters["purchase_without_items"],
            "refunds_outside_window": t.counters["refunds_outside_window"],
            "reject_codes": dict(t.reject_codes),
            "consent_default": config.source(name).consent_default,
        }
        if t.rows_in != sum(sources[name][k] for k in SOURCE_BUCKETS):
            raise MpetlError(f"accounting does not balance for source {name!r}: {sources[name]}")
    total = {k: sum(s[k] for s in sources.values()) for k in ("rows_in", *SOURCE_BUCKETS)}
    earlier = {k: outcome.earlier_runs.get(k, 0) for k in ("sent", "failed", "expired", "rejected_at_send")}
    # What this run wrote = what no deferred.csv had taken yet: every event it deferred (unless a concurrent
    # shard's file took it first) plus what earlier runs left in no file (killed, or a write that failed).
    own = total["deferred"] + total["expired"] + earlier["expired"]
    if csv.unclaimed or csv.this_run + csv.other_runs != own or csv.rows != csv.this_run + csv.earlier_runs:
        raise MpetlError(f"deferred.csv holds {csv.this_run} of the {own} events this run deferred "
                         f"({csv.other_runs} in other runs' files, {csv.unclaimed} in none) and {csv.earlier_runs} "
                         f"of earlier runs, {csv.rows} rows in all")
    not_delivered = total["failed"] + total["expired"] + earlier["failed"] + earlier["expired"]
    historical_failed = historical is not None and "error" in historical
    exit_code = (EXIT_STOPPED if stats.stopped else EXIT_SEND_FAILURES if not_delivered or historical_failed
                 else EXIT_BAD_INPUT if source_errors else EXIT_OK)
    detectors: Counter[str] = Counter()
    for t in tallies.values():
        detectors.update(t.detectors)
    return {
        "run_id": run_id,
        "mode": options.mode,
        "wall_clock": wall.isoformat(),
        "shard": "/".join(map(str, options.shard)) if options.shard else None,
        **total,
        "balanced": True,
        "earlier_runs": earlier,
        "deferred_csv_rows": csv.rows,
        "deferred_csv": csv.counts(),
        "no_session": sum(s["no_session"] for s in sources.values()),
        "outside_window": sum(s["outside_window"] for s in sources.values()),
        "session_too_old_to_attribute": sum(s["session_too_old_to_attribute"] for s in sources.values()),
        "timestamp_before_session_start": sum(s["timestamp_before_session_start"] for s in sources.values()),
        "session_cookie_other_property": sum(s["session_cookie_other_property"] for s in sources.values()),
        "purchase_without_items": sum(s["purchase_without_items"] for s in sources.values()),
        "refunds_outside_window": sum(s["refunds_outside_window"] for s in sources.values()),
        "window": {"since": options.since.isoformat() if options.since else None,
                   "until": options.select_until.isoformat() if options.select_until else None},
        "possible_duplicates": outcome.possible_duplicates,
        "resent": outcome.resent,
        "sent_for_earlier_runs": earlier["sent"],
        "recovered_in_flight": recovered,
        "stopped": stats.stopped,
        "detectors": dict(detectors),
        "sources": sources,
        "source_errors": source_errors,
        "send": stats.to_dict(),
        **({"historical": historical} if historical is not None else {}),
        "exit_code": exit_code,
    }


def _manifest(config: Config, manifest: PrivacyManifest, tallies: dict[str, SourceTally],
              detectors: dict[str, int]) -> dict[str, Any]:
    return {
        **manifest.to_dict(),
        "never_sent": ["user_data", "ip_override"],
        "detectors_fired": detectors,
        "consent_policy": {
            s.name: {"consent_default": s.consent_default,
                     "columns": {k: v for k, v in s.columns.items() if k in ("consent_analytics", "ad_user_data", "ad_personalization")}}
            for s in config.sources if s.name in tallies
        },
    }
