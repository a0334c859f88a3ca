"""One run: extract → transform → plan (ledger) → send → account. The CLI, cron and Airflow call this.

Two phases, as in dlt's load packages: every source is streamed chunk by chunk into the ledger
(`planned`), then the sender drains the ledger. So a run killed at any point resumes from the ledger,
and memory stays bounded by one chunk plus the send queue. Every input row lands in exactly one bucket
(`etl.accounting.Buckets`: sent / filtered / rejected / duplicate / deferred / expired /
rejected_at_send / failed / outside_window / other_shard), and the run refuses to report otherwise. Age is always measured on the wall clock (`etl.clock`): `--now` only selects rows.

What a run leaves behind: `--out D` is this run's folder (etl/run_folder.py: never another run's), and
its deferred.csv and the [historical] write each take, exactly once, every deferred event no output
of that kind has taken yet — this run's and those a killed run left (etl/load/outputs.py).
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from etl import log
from etl.accounting import Buckets, Money, Tally, add_money, money_to_dict, sent_label, sum_by_currency
from etl.clock import wall_micros
from etl.config import Config, SourceConfig
from etl.destination import credentials, max_age_micros, open_transport, send_settings
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
    Ledger,
    PrivacyManifest,
    RunOutcome,
    SendStats,
    Stopper,
    deliver_data_import,
    deliver_historical,
    open_ledger,
    send_pending,
    write_atomic,
)
from etl.next_steps import not_delivered_message
from etl.protocol import to_micros
from etl.run_folder import RunFolder
from etl.shard import Shard
from etl.transform import TransformOptions, check_params, order_ids, refund_deltas, transform_chunk

MODES = ("send", "dry-run", "validate")


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
class SourceTally(Tally):
    """One source's tally over its chunks, plus what only the pipeline sees (lines read, planned)."""

    lines: int = 0
    planned: int = 0  # handed to the sender: each ends sent, expired, rejected_at_send or failed
    # The money of the rows the ledger now owns (planned or deferred), by key hash: joined at the end
    # with the state each event ended in (`Ledger.own_fates`), so value_sent is the value of the rows
    # sent. About 30 bytes an event (hash, currency, exact decimal).
    owned: list[pd.DataFrame] = field(default_factory=list)

    def own(self, events: pd.DataFrame) -> None:
        if events.empty or "money_value" not in events.columns:
            return
        self.owned.append(pd.DataFrame({
            "hash": pd.util.hash_pandas_object(events["event_key"].astype(str), index=False).to_numpy(),
            "currency": events["money_currency"].astype("category"),
            "value": events["money_value"].astype("string"),
        }))


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

    def add_rejected_at_send(self, rejected: list[tuple[str, int | None, str]], config: Config | None = None) -> None:
        for source, row, reason in rejected:
            reasons = _data_manager_reasons(reason, source, config) or [
                {"fieldPath": "events", "description": reason, "validationCode": "VALUE_OUT_OF_BOUNDS"}]
            self._rejects.write(orjson.dumps({"source": source, "row": row, "at": "send", "reasons": reasons}) + b"\n")

    def close(self) -> None:
        self._rejects.close()


def _data_manager_reasons(reason: str, source: str, config: Config | None) -> list[dict] | None:
    """A Data Manager refusal (`dm:[…]`) in the reasons' shape, columns named as the source's config does."""
    if not reason.startswith("dm:"):
        return None
    from etl.load.datamanager import reject_reasons

    columns = None
    if config is not None:
        with contextlib.suppress(KeyError):
            columns = dict(config.source(source).columns or {})
    return reject_reasons(reason, columns)


def _process_source(source: SourceConfig, config: Config, ledger: Ledger, outputs: _Outputs, *, run_id: str,
                    options: RunOptions, stopper: Stopper) -> SourceTally:
    tally = SourceTally()
    log.emit("source_started", source=source.name, kind=source.kind, path=str(source.path))
    until = options.select_until
    # A row later than the wall clock + tolerance is read whatever `until` says: the transform rejects it.
    future_after = datetime.fromtimestamp(options.clock() / 1e6, UTC) + timedelta(
        minutes=config.window.future_tolerance_minutes)
    for chunk in iter_source_chunks(source, chunk_rows=options.chunk_rows, since=options.since, until=until,
                                    future_after=future_after):
        if stopper.stopped:
            break  # what was read is planned; the rest of the file is read again by the next run
        result = transform_chunk(chunk, TransformOptions(
            source=source, prop=config.property, window=config.window, wall_micros=options.clock(),
            since_micros=to_micros(options.since) if options.since else None,
            until_micros=to_micros(until) if until else None,
            extra_params=config.privacy_extra_params,
            shard=Shard(*options.shard) if options.shard else None, locations=config.locations,
        ))
        events, chunk_tally = result.events, result.tally
        nothing_new = events.iloc[0:0]
        ids = order_ids(events)
        if ids:  # cumulative refunds: send the delta over what the ledger holds for each order
            deltas = refund_deltas(events, ledger.order_history(source.name, ids))
            events, nothing_new = deltas.events, deltas.nothing_new
            chunk_tally.notes += deltas.notes
        fates = ledger.plan(events, run_id, oldest_sendable_micros=options.clock() - max_age_micros(config))
        outputs.add_rejects(result.rejects)
        b = chunk_tally.buckets
        planned = int((fates == "planned").sum())
        chunk_tally.buckets = replace(b, deferred=int((fates == "deferred").sum()),
                                      duplicate=int((fates == "duplicate").sum()) + len(nothing_new))
        duplicates = pd.concat([events[(fates == "duplicate").to_numpy()], nothing_new], ignore_index=True)
        if "money_value" in duplicates.columns:
            for code, value in sum_by_currency(duplicates["money_currency"], duplicates["money_value"]).items():
                chunk_tally.add_value("duplicate", code, value)
        tally.own(events[(fates != "duplicate").to_numpy()])
        log.detail("chunk_planned", source=source.name, rows=b.rows_in, planned=planned, filtered=b.filtered,
                   rejected=b.rejected, deferred=chunk_tally.buckets.deferred, outside_window=b.outside_window)
        tally.add(chunk_tally)
        tally.lines += int(getattr(chunk, "lines", b.rows_in))
        tally.planned += planned
    b = tally.buckets
    log.emit("source_planned", source=source.name, rows_in=b.rows_in, planned=tally.planned, filtered=b.filtered,
             rejected=b.rejected, deferred=b.deferred, duplicate=b.duplicate, outside_window=b.outside_window)
    return tally


def _open_run_ledger(config: Config, options: RunOptions) -> Ledger:
    """The real ledger for a send; a scratch copy for dry-run and validate (they must not change it)."""
    return open_ledger(config.ledger_location, lock=options.mode == "send", clock=options.clock, shard=options.shard,
                       scratch=options.mode != "send", scratch_dir=options.out_dir)


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
    creds = credentials(config, mode=options.mode, clock=options.clock)  # first: a wrong one is exit 2 before anything

    out = options.out_dir
    folder = RunFolder(out, replace=options.replace, mode=options.mode)  # refused before anything happens
    stopper = Stopper()
    stopper.install()
    # The deadline covers the whole run, not only the send: reading and planning stop between chunks
    # (each at most chunk_rows rows), the send between requests; the outputs written after it hold only
    # what this run planned.
    stopper.set_deadline(config.destination.deadline_s)
    try:
        ledger = _open_run_ledger(config, options)
    except BaseException:
        stopper.uninstall()
        folder.close()
        raise
    try:
        ledger.bind_property(config.property.mp_stream_id, config.destination.endpoint)
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
        settings = send_settings(config, run_id, concurrency=options.concurrency, clock=options.clock,
                                 validate=options.mode == "validate", sample_requests=options.sample_requests,
                                 shard=options.shard, seed=options.seed, creds=creds, dry_run=options.mode == "dry-run")
        if stopper.stopped:
            stats = SendStats(stopped=stopper.reason)
        else:
            outbox = out / "requests.ndjson" if options.mode == "dry-run" else None
            with open_transport(config, creds, concurrency=settings.concurrency, debug=options.mode == "validate",
                                outbox=outbox) as transport:
                stats = send_pending(ledger, transport, settings, manifest=manifest, progress=options.progress,
                                     stopper=stopper)
        outputs.add_rejected_at_send(ledger.rejected_at_send(run_id), config)
        outputs.close()
        csv = _write_deferred_csv(ledger, run_id, out, config, dry=options.mode != "send")
        historical = (deliver_historical(ledger, run_id, config.historical, config.property)
                      if config.historical and options.mode == "send" else None)
        outcome = ledger.outcome(run_id)
        owned = _owned_money(ledger, run_id, tallies)
        summary = _summarise(config, options, run_id, wall, tallies, outcome, stats, source_errors, recovered,
                             csv, historical, owned)
        if creds.data_manager is not None:
            from etl import data_manager

            summary["data_manager"] = data_manager.summary(creds.data_manager, stats, mode=options.mode)
        write_atomic(out / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        write_atomic(out / "privacy_manifest.json",
                     orjson.dumps(_manifest(config, manifest, tallies, summary["detectors"]), option=orjson.OPT_INDENT_2))
        ledger.finish_run(run_id, orjson.dumps(summary).decode())
        counted = (sent_label(options.mode) if b == "sent" else b for b in Buckets.NAMES)
        log.emit("run_finished", **{k: summary[k] for k in ("run_id", "rows_in", *counted, "exit_code")})
        problem = not_delivered_message(summary)
        if problem:
            log.error("events_not_delivered", run_id=run_id, message=problem, errors=summary["send"]["errors"],
                      last_error=summary["send"]["last_error"])
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
                                   config.property.mp_stream_id, dry=dry)
    except OSError as exc:
        if exc.filename is None:  # a failed write names no file: name the one it was for
            exc = OSError(exc.errno, exc.strerror, str(out / "deferred.csv"))
        raise OutputError(exc) from None


def _owned_money(ledger: Ledger, run_id: str, tallies: dict[str, SourceTally]) -> dict[str, dict[str, Money]]:
    """The money of the rows each source planned (or deferred when planning), by the bucket their
    events ended in: the ledger's states of the run's own events joined to the rows' values by key.

    Refuses (a bug, never data) when a planned row's event is not among the run's own events: then
    money would be counted that no bucket holds.
    """
    frames = [t_owned.assign(source=name) for name, t in tallies.items() for t_owned in t.owned]
    if not frames:
        return {}
    planned = pd.concat(frames, ignore_index=True)
    planned["currency"] = planned["currency"].astype("string")
    out: dict[str, dict[str, Money]] = {}
    matched = 0
    for page in ledger.own_fates(run_id):
        keys = pd.DataFrame({"hash": pd.util.hash_pandas_object(page["event_key"].astype(str), index=False).to_numpy(),
                             "bucket": page["bucket"]})
        joined = keys.merge(planned, on="hash", how="inner")
        matched += len(joined)
        for (source, bucket), group in joined.groupby(["source", "bucket"], sort=False):
            per = out.setdefault(source, {})
            for code, value in sum_by_currency(group["currency"], group["value"]).items():
                part = Money(**{"value_in": value, f"value_{bucket}": value})
                per[code] = per[code] + part if code in per else part
    if matched != len(planned):
        raise MpetlError(f"money accounting does not balance: {len(planned) - matched} of the {len(planned)} events "
                         "this run planned are not among its own events in the ledger")
    return out


def _money_summary(money: dict[str, Money], sampled: bool) -> dict[str, Money]:
    if not sampled:
        return money
    return {code: replace(m, value_sent=m.value_sent + m.value_failed, value_failed=m.value_failed * 0)
            for code, m in money.items()}


def _summarise(config: Config, options: RunOptions, run_id: str, wall: datetime, tallies: dict[str, SourceTally],
               outcome: RunOutcome, stats: SendStats, source_errors: list[dict[str, Any]], recovered: int,
               csv: Delivery, historical: dict[str, Any] | None, owned: dict[str, dict[str, Money]] | None = None) -> dict[str, Any]:
    sources = {}
    run = Tally()
    # A validation sample (--sample N) leaves the events it did not reach pending: they passed every
    # local check and would be sent, so they count as would_send, not failed. Only when the sample
    # itself failed can the two not be told apart; then all count as failed (exit 4, as it should).
    sampled = options.mode == "validate" and options.sample_requests is not None and not stats.events_failed
    not_sampled = 0
    for name, t in tallies.items():
        fate = outcome.by_source.get(name, {})
        buckets = replace(t.buckets, sent=fate.get("sent", 0), expired=fate.get("expired", 0),
                          rejected_at_send=fate.get("rejected_at_send", 0), failed=fate.get("failed", 0))
        sent_or_not = buckets.sent + buckets.expired + buckets.rejected_at_send + buckets.failed
        if sent_or_not != t.planned or fate.get("deferred", 0) != t.buckets.deferred or not buckets.balanced():
            # A bug, never a data problem: refuse to report numbers that do not add up.
            raise MpetlError(f"accounting does not balance for source {name!r}: planned {t.planned}, "
                             f"{buckets.equation()}, ledger says {fate}")
        if sampled:
            not_sampled += buckets.failed
            buckets = replace(buckets, sent=buckets.sent + buckets.failed, failed=0)
        t.buckets = buckets
        t.money = _money_summary(add_money(t.money, (owned or {}).get(name, {})), sampled)
        unbalanced = [m.equation(code) for code, m in t.money.items() if not m.balanced()]
        if unbalanced:
            raise MpetlError(f"money accounting does not balance for source {name!r}: {'; '.join(unbalanced)}")
        run.add(t)
        sources[name] = {
            **buckets.labelled(options.mode),
            "lines_read": t.lines,
            # Sent, but worth knowing (issue 14): sessions GA will not attribute, purchases without items…
            **t.notes.to_dict(),
            "filtered_codes": t.filtered_codes(),
            "filtered_reasons": t.filtered_list(),
            "reject_codes": dict(t.reject_codes),
            "reject_reasons": t.reject_list(),
            # Left out of events that were sent (named, never the values).
            "pii_dropped": dict(t.pii_dropped),
            "item_keys_not_sent": dict(t.item_keys_not_sent),
            "params_not_allowed": dict(t.params_not_allowed),
            "limits": dict(t.limits),
            # Per currency, like the rows: value_in == value_sent + value_filtered + … (refunds negative).
            "money": money_to_dict(t.money),
            "value_unreadable": t.value_unreadable,
            "consent_default": config.source(name).consent_default,
        }
    total = run.buckets
    earlier = {k: outcome.earlier_runs.get(k, 0) for k in ("sent", "failed", "expired", "rejected_at_send")}
    # What this run wrote = what no deferred.csv had taken yet: every event it deferred (unless a concurrent
    # shard's file took it first) plus what earlier runs left in no file (killed, or a write that failed).
    own = total.deferred + total.expired + earlier["expired"]
    if csv.unclaimed or csv.this_run + csv.other_runs != own or csv.rows != csv.this_run + csv.earlier_runs:
        raise MpetlError(f"deferred.csv holds {csv.this_run} of the {own} events this run deferred "
                         f"({csv.other_runs} in other runs' files, {csv.unclaimed} in none) and {csv.earlier_runs} "
                         f"of earlier runs, {csv.rows} rows in all")
    not_delivered = total.failed + total.expired + earlier["failed"] + earlier["expired"]
    historical_failed = historical is not None and "error" in historical
    exit_code = (EXIT_STOPPED if stats.stopped else EXIT_SEND_FAILURES if not_delivered or historical_failed
                 else EXIT_BAD_INPUT if source_errors else EXIT_OK)
    label = sent_label(options.mode)
    return {
        "run_id": run_id,
        "mode": options.mode,
        "api": config.destination.api,
        "wall_clock": wall.isoformat(),
        "shard": "/".join(map(str, options.shard)) if options.shard else None,
        **total.labelled(options.mode),
        "balanced": total.balanced(),
        "equation": total.equation(label),
        "earlier_runs": {(label if k == "sent" else k): v for k, v in earlier.items()},
        "deferred_csv_rows": csv.rows,
        "deferred_csv": csv.counts(),
        "not_sampled": not_sampled,
        **run.notes.to_dict(),
        "filtered_codes": run.filtered_codes(),
        "window": {"since": options.since.isoformat() if options.since else None,
                   "until": options.select_until.isoformat() if options.select_until else None},
        "possible_duplicates": outcome.possible_duplicates,
        "resent": outcome.resent,
        f"{label}_for_earlier_runs": earlier["sent"],
        "recovered_in_flight": recovered,
        "stopped": stats.stopped,
        "detectors": dict(run.detectors),
        "limits": dict(run.limits),
        "money": money_to_dict(run.money),
        "money_equations": [m.equation(code, "sent" if options.mode == "send" else "would_send")
                            for code, m in sorted(run.money.items())],
        "value_unreadable": run.value_unreadable,
        "sources": sources,
        "source_errors": source_errors,
        "send": _send_block(stats, options.mode),
        **({"historical": historical} if historical is not None else {}),
        "exit_code": exit_code,
    }


#: What the send block's counters are called when nothing is sent: a dry run writes requests.ndjson, a
#: validation asks Google's debug endpoint (/debug/mp/collect), whose statuses say nothing about delivery.
_NOT_SENT_KEYS = {
    "dry-run": {"requests_sent": "requests_written", "events_sent": "events_written", "http_statuses": None},
    "validate": {"requests_sent": "requests_validated", "events_sent": "events_validated",
                 "http_statuses": "debug_http_statuses"},
}


def _send_block(stats: SendStats, mode: str) -> dict[str, Any]:
    """summary.json's `send`: a dry run's or a validation's never says sent, nor HTTP statuses of a send."""
    block = stats.to_dict()
    for key, name in _NOT_SENT_KEYS.get(mode, {}).items():
        value = block.pop(key)
        if name is not None:
            block[name] = value
    return block


def _manifest(config: Config, manifest: PrivacyManifest, tallies: dict[str, SourceTally],
              detectors: dict[str, int]) -> dict[str, Any]:
    return {
        **manifest.to_dict(),
        "never_sent": ["user_data", "ip_override"],
        "detectors_fired": detectors,
        # Google's limits applied (a parameter over its limit is not logged by GA, the event is): cut or dropped.
        "limits": dict(sum((t.limits for t in tallies.values()), Counter())),
        "consent_policy": {
            s.name: {"consent_default": s.consent_default,
                     "columns": {k: v for k, v in s.columns.items() if k in ("consent_analytics", "ad_user_data", "ad_personalization")}}
            for s in config.sources if s.name in tallies
        },
    }
