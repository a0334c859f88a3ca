"""One run: extract → transform → plan (ledger) → send → account. The CLI, cron and Airflow call this.

Two phases, as in dlt's load packages: every source is streamed chunk by chunk into the ledger
(`planned`), then the sender drains the ledger. So a run killed at any point resumes from the ledger,
and memory stays bounded by one chunk plus the send queue. Every input row lands in exactly one of
sent / rejected / duplicate / deferred / failed, and the run refuses to report otherwise.
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
from etl.config import Config, SourceConfig, read_api_secret
from etl.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_SEND_FAILURES, ConfigError, MpetlError, SourceError
from etl.extract import iter_source_chunks
from etl.load import HttpTransport, Ledger, OutboxTransport, PrivacyManifest, RetryPolicy, SendStats, send_pending
from etl.protocol import to_micros
from etl.safe_csv import neutralise
from etl.shard import Shard
from etl.transform import check_params, transform_chunk

MODES = ("send", "dry-run", "validate")
LOCAL_ENDPOINT = "local"


@dataclass
class RunOptions:
    out_dir: Path
    mode: str = "send"
    now: datetime | None = None
    concurrency: int | None = None
    fail_fast: bool = False
    chunk_rows: int = 100_000
    only_sources: tuple[str, ...] = ()
    seed: int | None = None
    since: datetime | None = None  # incremental window on event time: [since, until)
    until: datetime | None = None
    sample_requests: int | None = None  # validate: send only this many requests to the debug endpoint
    progress: Callable[[SendStats], None] | None = None
    shard: tuple[int, int] | None = None  # (K, N): plan and send only shard K's clients (etl/shard.py)


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
    """The run's files in out_dir. Rejects and deferrals are appended chunk by chunk (bounded memory)."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("rejects.ndjson", "requests.ndjson", "deferred.csv", ".deferred.ndjson"):
            (out_dir / name).unlink(missing_ok=True)
        self._rejects = (out_dir / "rejects.ndjson").open("wb")
        self._deferred_tmp = out_dir / ".deferred.ndjson"
        self._deferred = self._deferred_tmp.open("wb")
        self.deferred_rows = 0

    def mark(self) -> tuple[int, int, int]:
        """Where the files stand now, to withdraw a source that fails part-way through."""
        self._rejects.flush()
        self._deferred.flush()
        return self._rejects.tell(), self._deferred.tell(), self.deferred_rows

    def withdraw_to(self, mark: tuple[int, int, int]) -> None:
        """Forget what was written since `mark`: a failed source leaves nothing in the outputs."""
        rejects_at, deferred_at, self.deferred_rows = mark
        for handle, position in ((self._rejects, rejects_at), (self._deferred, deferred_at)):
            handle.flush()
            handle.truncate(position)
            handle.seek(position)

    def add_rejects(self, rejects: pd.DataFrame) -> None:
        for source, row, reasons in rejects.itertuples(index=False):
            self._rejects.write(orjson.dumps({"source": source, "row": int(row), "reasons": reasons}) + b"\n")

    def add_deferred(self, deferred: pd.DataFrame) -> None:
        if deferred.empty:
            return
        safe = neutralise(deferred.astype("string"))
        text = safe.to_json(orient="records", lines=True, force_ascii=False)
        self._deferred.write(text.encode() if text.endswith("\n") else (text + "\n").encode())
        self.deferred_rows += len(deferred)

    def close(self) -> None:
        self._rejects.close()
        self._deferred.close()
        self._write_deferred_csv()

    def _write_deferred_csv(self) -> None:
        """deferred.csv for GA4 Data Import (offline events); deferred_index.csv ties each line to its row.

        Two streaming passes over the spool, so a backfill where every row is deferred stays within
        bounded memory: the first finds the columns (item<N>.* depend on the largest order), the
        second writes chunk by chunk.
        """
        if self.deferred_rows == 0:
            self._deferred_tmp.unlink(missing_ok=True)
            return

        def chunks() -> Iterator[pd.DataFrame]:
            return pd.read_json(self._deferred_tmp, lines=True, dtype=False, chunksize=50_000)

        columns: list[str] = []
        for frame in chunks():
            columns.extend(c for c in frame.columns if c not in columns)
        import_columns = [c for c in columns if c not in ("source", "row")]
        index_columns = ["source", "row", "event_name", "event_param.transaction_id"]
        for i, frame in enumerate(chunks()):
            data = frame.reindex(columns=columns).astype("string")
            mode, header = ("w", True) if i == 0 else ("a", False)
            data[import_columns].to_csv(self.dir / "deferred.csv", index=False, mode=mode, header=header)
            data[index_columns].to_csv(self.dir / "deferred_index.csv", index=False, mode=mode, header=header)
        self._deferred_tmp.unlink(missing_ok=True)


def _process_source(source: SourceConfig, config: Config, ledger: Ledger, outputs: _Outputs, *, run_id: str,
                    now_micros: int, options: RunOptions) -> SourceTally:
    tally = SourceTally()
    log.emit("source_started", source=source.name, kind=source.kind, path=str(source.path))
    for chunk in iter_source_chunks(source, chunk_rows=options.chunk_rows):
        result = transform_chunk(
            chunk, source, config.property, config.window, now_micros=now_micros, run_id=run_id,
            since_micros=to_micros(options.since) if options.since else None,
            until_micros=to_micros(options.until) if options.until else None,
            extra_params=config.privacy_extra_params,
            shard=Shard(*options.shard) if options.shard else None,
        )
        buckets = ledger.plan(result.events, run_id)
        outputs.add_rejects(result.rejects)
        outputs.add_deferred(result.deferred)
        c = result.counters
        planned = int((buckets == "planned").sum())
        log.detail("chunk_planned", source=source.name, rows=c["rows"], planned=planned,
                   rejected=c["rejected"], deferred=c["deferred"], outside_window=c.get("outside_window", 0))
        tally.rows_in += c["rows"] + c.get("other_shard", 0)
        tally.other_shard += c.get("other_shard", 0)
        tally.lines += int(getattr(chunk, "lines", c["rows"]))
        tally.rejected += c["rejected"]
        tally.deferred += c["deferred"]
        tally.duplicate += int((buckets == "duplicate").sum())
        tally.planned += planned
        tally.no_session += c["no_session"]
        tally.outside_window += c.get("outside_window", 0)
        for name in ("session_cookie_unparsed", "session_too_old_to_attribute", "timestamp_before_session_start"):
            tally.counters[name] += c.get(name, 0)
        tally.detectors.update(c.get("detectors", {}))
        tally.reject_codes.update(c.get("reject_codes", {}))
    log.emit("source_planned", source=source.name, rows_in=tally.rows_in, planned=tally.planned,
             rejected=tally.rejected, deferred=tally.deferred, duplicate=tally.duplicate)
    return tally


@contextlib.contextmanager
def _destination(config: Config, options: RunOptions, secret: str | None, now: datetime) -> Iterator[Any]:
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
        pinned = now if options.now is not None else None
        with CollectorServer(store, measurement_id=config.property.measurement_id, api_secret=secret,
                             timezone=config.property.timezone, now=pinned) as server:
            log.emit("local_collector_started", url=server.url, store=str(store))
            yield HttpTransport(server.url, config.property.measurement_id, secret, concurrency=concurrency,
                                timeout_s=config.destination.timeout_s, debug=options.mode == "validate")
        return
    yield HttpTransport(endpoint, config.property.measurement_id, secret, concurrency=concurrency,
                        timeout_s=config.destination.timeout_s, debug=options.mode == "validate")


def run_pipeline(config: Config, options: RunOptions) -> RunResult:
    """Run the job once; return the summary (also written to out_dir/summary.json) and the exit code."""
    if options.mode not in MODES:
        raise ConfigError("-", "mode", f"expected one of {', '.join(MODES)}")
    unknown = sorted(set(options.only_sources) - {s.name for s in config.sources})
    if unknown:
        raise ConfigError(str(config.file), "sources", f"no source named {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(s.name for s in config.sources)}")
    now = options.now or datetime.now(UTC)
    now_micros = to_micros(now)
    run_id = new_run_id(datetime.now(UTC))
    _check_allowlists(config)
    secret = None
    if options.mode != "dry-run":
        secret = read_api_secret(config.destination)
        if not secret:
            raise ConfigError(str(config.file), "destination.api_secret_file",
                              "no API secret: set MP_API_SECRET or point api_secret_file at a file holding it")

    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    ledger_path = config.ledger_path
    if options.mode != "send":
        # Dry-run and validate must not change the real ledger: they work on a copy of it.
        scratch = out / f"ledger.{options.mode}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(scratch) + suffix).unlink(missing_ok=True)
        if ledger_path.exists():
            with Ledger(ledger_path) as original:
                original.db.execute("VACUUM INTO ?", (str(scratch),))
        ledger_path = scratch

    ledger = Ledger(ledger_path, lock=True)
    try:
        ledger.begin_run(run_id, options.mode)
        recovered = ledger.recover_in_flight()
        log.emit("run_started", run_id=run_id, mode=options.mode, now=now.isoformat(), recovered_in_flight=recovered)
        outputs = _Outputs(out)
        tallies: dict[str, SourceTally] = {}
        source_errors: list[dict[str, Any]] = []
        for source in config.sources:
            if options.only_sources and source.name not in options.only_sources:
                continue
            mark = outputs.mark()
            try:
                tallies[source.name] = _process_source(source, config, ledger, outputs, run_id=run_id,
                                                       now_micros=now_micros, options=options)
            except SourceError as exc:
                # Nothing from a broken source is sent or reported row by row: withdraw what this run
                # planned for it and what it wrote to rejects/deferred before the broken row.
                ledger.db.execute("DELETE FROM events WHERE run_id = ? AND source = ? AND status = 'planned'",
                                  (run_id, source.name))
                outputs.withdraw_to(mark)
                source_errors.append({"source": source.name, "error": str(exc)})
                log.emit("source_failed", source=source.name, error=str(exc))
                if options.fail_fast:
                    raise
        outputs.close()

        manifest = PrivacyManifest()
        policy = RetryPolicy(config.destination.max_attempts, config.destination.backoff_base_s,
                             config.destination.backoff_max_s)
        with _destination(config, options, secret, now) as transport:
            stats = send_pending(ledger, transport, run_id=run_id, now_micros=now_micros, policy=policy,
                                 concurrency=options.concurrency or config.destination.concurrency,
                                 manifest=manifest, progress=options.progress, seed=options.seed,
                                 extra_params=config.privacy_extra_params,
                                 max_requests=options.sample_requests if options.mode == "validate" else None)
        outcome = ledger.run_outcome(run_id)
        summary = _summarise(config, options, run_id, now, tallies, outcome, stats, source_errors, recovered, ledger)
        (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        (out / "privacy_manifest.json").write_bytes(
            orjson.dumps(_manifest(config, manifest, tallies, summary["detectors"]), option=orjson.OPT_INDENT_2)
        )
        ledger.finish_run(run_id, orjson.dumps(summary).decode())
        log.emit("run_finished", **{k: summary[k] for k in ("run_id", "rows_in", "sent", "rejected", "duplicate",
                                                                 "deferred", "failed", "exit_code")})
        return RunResult(summary, summary["exit_code"])
    finally:
        ledger.close()


def _summarise(config: Config, options: RunOptions, run_id: str, now: datetime, tallies: dict[str, SourceTally],
               outcome: dict[str, int], stats: SendStats, source_errors: list[dict[str, Any]], recovered: int,
               ledger: Ledger) -> dict[str, Any]:
    per_source_status = {
        (src, status): n
        for src, status, n in ledger.db.execute(
            "SELECT source, status, COUNT(*) FROM events WHERE run_id = ? GROUP BY source, status", (run_id,)
        )
    }
    sources = {}
    for name, t in tallies.items():
        sent = per_source_status.get((name, "sent"), 0)
        sources[name] = {
            "rows_in": t.rows_in,
            "lines_read": t.lines,
            "sent": sent,
            "rejected": t.rejected,
            "duplicate": t.duplicate,
            "deferred": t.deferred,
            "failed": t.planned - sent,
            "other_shard": t.other_shard,
            "no_session": t.no_session,
            "outside_window": t.outside_window,
            "session_too_old_to_attribute": t.counters["session_too_old_to_attribute"],
            "timestamp_before_session_start": t.counters["timestamp_before_session_start"],
            "reject_codes": dict(t.reject_codes),
            "consent_default": config.source(name).consent_default,
        }
    total = {k: sum(s[k] for s in sources.values())
             for k in ("rows_in", "sent", "rejected", "duplicate", "deferred", "failed", "other_shard")}
    if total["rows_in"] != (total["sent"] + total["rejected"] + total["duplicate"] + total["deferred"] + total["failed"]
                            + total["other_shard"]):
        raise MpetlError(f"accounting does not balance: {total}")  # a bug, never a data problem: refuse to report
    if outcome["sent"] != total["sent"]:
        raise MpetlError(f"ledger says {outcome['sent']} sent for this run, tallies say {total['sent']}")
    exit_code = EXIT_SEND_FAILURES if total["failed"] else EXIT_BAD_INPUT if source_errors else EXIT_OK
    detectors: Counter[str] = Counter()
    for t in tallies.values():
        detectors.update(t.detectors)
    return {
        "run_id": run_id,
        "mode": options.mode,
        "shard": "/".join(map(str, options.shard)) if options.shard else None,
        "now": now.isoformat(),
        **total,
        "balanced": True,
        "no_session": sum(s["no_session"] for s in sources.values()),
        "outside_window": sum(s["outside_window"] for s in sources.values()),
        "session_too_old_to_attribute": sum(s["session_too_old_to_attribute"] for s in sources.values()),
        "timestamp_before_session_start": sum(s["timestamp_before_session_start"] for s in sources.values()),
        "window": {"since": options.since.isoformat() if options.since else None,
                   "until": options.until.isoformat() if options.until else None},
        "possible_duplicates": outcome["possible_duplicates"],
        "sent_for_earlier_runs": outcome["sent_for_earlier_runs"],
        "recovered_in_flight": recovered,
        "detectors": dict(detectors),
        "sources": sources,
        "source_errors": source_errors,
        "send": stats.to_dict(),
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
