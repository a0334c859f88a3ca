"""`mpetl`: the command line analysts and schedulers use.

Exit codes (README, "Exit codes"): 0 ok, 2 bad input or config, 3 not reconciled, 4 send failures
remain (the next run retries them), 5 another run holds the ledger, 6 the export cannot judge
(absent, paused, capped), 7 the canary of `mpetl check` was not found in the export, 8 the run
stopped early. Errors are one line on stderr, never a traceback, never a cell value or the API secret.
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from etl import log
from etl.errors import EXIT_BAD_INPUT, MpetlError, OutputError, ledger_error


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"expected ISO-8601 such as 2026-11-21T06:00:00Z, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_tty() -> bool:
    return sys.stdout.isatty()


def _fail(exc: MpetlError) -> None:
    click.echo(f"mpetl: error: {exc}", err=True)
    sys.exit(exc.exit_code)


_LOADED: dict[str, Any] = {}


def _as_mpetl_error(exc: Exception) -> MpetlError | None:
    """A ledger or output problem as one of ours (one line, exit 2); None for anything else."""
    import sqlite3

    if isinstance(exc, MpetlError):
        return exc
    if isinstance(exc, sqlite3.Error):  # only the ledger is SQLite
        config = _LOADED.get("config")
        return ledger_error(config.ledger_location if config else "?", exc)
    if isinstance(exc, OSError):
        return OutputError(exc)
    return None


def _handle(exc: Exception) -> None:
    """The CLI boundary: a known failure leaves as one line on stderr with its exit code; a bug re-raises."""
    known = _as_mpetl_error(exc)
    if known is None:
        raise exc
    _fail(known)


COUNTS = ("rows_in", "sent", "rejected", "duplicate", "deferred", "failed")


def _sent_label(mode: str) -> str:
    """A dry run or a validation sends nothing: its summary says what it *would* send."""
    return "sent" if mode == "send" else "would_send"


def _relabel(summary: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    label = _sent_label(summary.get("mode", "send"))
    return {(label if k == "sent" else k): summary[k] for k in keys if k in summary}


def _print_run_summary(summary: dict[str, Any]) -> None:
    label = _sent_label(summary["mode"])
    if not _is_tty():
        shown = {(label if k == "sent" else k): v for k, v in summary.items() if k != "send"}
        click.echo(orjson.dumps({"event": "summary", **shown}).decode())
        _print_source_errors(summary)
        return
    from rich.console import Console
    from rich.table import Table

    cols = ("rows_in", "sent", "rejected", "duplicate", "deferred", "failed", "no_session")
    table = Table(title=f"run {summary['run_id']} ({summary['mode']})")
    table.add_column("source")
    for col in (*cols, "filtered"):
        table.add_column(label if col == "sent" else col, justify="right")
    for name, s in summary["sources"].items():
        filtered = s.get("reject_codes", {}).get("FILTERED", 0)
        table.add_row(name, *(f"{s[c]:,}" for c in cols), f"{filtered:,}")
    total_filtered = sum(s.get("reject_codes", {}).get("FILTERED", 0) for s in summary["sources"].values())
    table.add_row("TOTAL", *(f"{summary[c]:,}" for c in cols), f"{total_filtered:,}", style="bold")
    console = Console()
    console.print(table)
    console.print(
        f"rows_in {summary['rows_in']} == {label} {summary['sent']} + rejected {summary['rejected']} + duplicate "
        f"{summary['duplicate']} + deferred {summary['deferred']} + failed {summary['failed']}"
    )
    _print_source_errors(summary)


def _print_source_errors(summary: dict[str, Any]) -> None:
    """A failed source's reason, one line each on stderr, whatever -q says: it is why the exit code is 2."""
    for err in summary.get("source_errors", []):
        click.echo(f"mpetl: error: source {err['source']}: {err['error']}", err=True)


def _progress_printer():
    """A rich progress bar on a terminal; a JSON log line every few seconds otherwise (cron, Airflow)."""
    import time

    state: dict[str, Any] = {"last": 0.0, "bar": None}

    def report(stats) -> None:
        now = time.monotonic()
        if _is_tty():
            if state["bar"] is None:
                from rich.progress import Progress

                bar = Progress()
                bar.start()
                state["bar"] = (bar, bar.add_task("sending", total=stats.total_events))
            bar, task = state["bar"]
            bar.update(task, completed=stats.events_sent + stats.events_failed,
                       description=f"sending ({stats.rate:,.0f} ev/s, {stats.retries} retries)")
            if stats.events_sent + stats.events_failed >= stats.total_events:
                bar.stop()
        elif now - state["last"] >= 5:
            state["last"] = now
            log.emit("progress", sent=stats.events_sent, failed=stats.events_failed, total=stats.total_events,
                     events_per_second=round(stats.rate, 1), retries=stats.retries)

    return report


def _set_flag(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """-q/-v/--log-file work before or after the command: each occurrence updates the root's settings."""
    if value:
        ctx.find_root().meta[f"mpetl.{param.name}"] = value
        try:
            _apply_logging(ctx)
        except OSError as exc:  # --log-file in a missing or read-only folder
            ctx.find_root().meta.pop("mpetl.log_file", None)
            raise click.BadParameter(f"cannot write {value} ({exc.strerror})", ctx=ctx, param=param) from None


def _apply_logging(ctx: click.Context) -> None:
    meta = ctx.find_root().meta
    log.configure(quiet=bool(meta.get("mpetl.quiet")), verbose=bool(meta.get("mpetl.verbose")),
                  log_file=meta.get("mpetl.log_file"))


def _quiet(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get("mpetl.quiet"))


def verbosity(f):
    """-v/-q/--log-file on the group and on every command (`mpetl -q run` and `mpetl run -q` both work)."""
    f = click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None, expose_value=False,
                     callback=_set_flag, help="Also write the JSON log lines to this file.")(f)
    f = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_flag,
                     help="No log lines; only the final summary and errors.")(f)
    f = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_flag,
                     help="More log lines (one per chunk); on a terminal, log lines appear only with -v.")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mpetl", prog_name="mpetl", message="%(prog)s %(version)s")
@verbosity
@click.pass_context
def main(ctx: click.Context) -> None:
    """Send offline conversions to GA4 through the Measurement Protocol, and prove they arrived."""
    _apply_logging(ctx)


config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The TOML config: property, destination, ledger, sources, reconcile.",
)
now_option = click.option(
    "--now", default=None, help="Pin the clock (ISO-8601, UTC if no offset): the 72 h window is measured from it.",
)


def _load(config_path: Path):
    from etl.config import load_config

    config = load_config(config_path)
    _LOADED["config"] = config
    return config


@main.command()
@verbosity
@config_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for summary.json, rejects.ndjson, deferred.csv, privacy_manifest.json (and requests.ndjson).")
@click.option("--dry-run", is_flag=True, help="Build and validate every request, write the exact bodies to requests.ndjson, send nothing.")
@now_option
@click.option("--concurrency", type=click.IntRange(1, 256), default=None, help="Requests in flight at once (default: config, 32).")
@click.option("--source", "only_sources", multiple=True, help="Run only this source (repeatable).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first unreadable source instead of going on with the others.")
@click.option("--chunk-rows", type=click.IntRange(1000, 10_000_000), default=50_000, show_default=True,
              help="Rows read per chunk: bounds memory.")
@click.option("--since", default=None, help="Only rows whose event time is at or after this (ISO-8601; naive = UTC).")
@click.option("--until", default=None, help="Only rows whose event time is before this (ISO-8601; naive = UTC).")
@click.option("--shard", "shard_spec", default=None, metavar="K/N",
              help="Plan and send only the clients of shard K of N (README: Scale-out); other rows count as other_shard.")
@click.option("--replace", is_flag=True,
              help="--out holds another run's outputs: remove them first (its deferred.csv rows go into this run's).")
def run(config_path: Path, out_dir: Path, dry_run: bool, now: str | None, concurrency: int | None,
        only_sources: tuple[str, ...], fail_fast: bool, chunk_rows: int, since: str | None, until: str | None,
        shard_spec: str | None, replace: bool) -> None:
    """Extract, transform, send (or --dry-run) and account for every row."""
    from etl.shard import Shard

    try:
        shard = Shard.parse(shard_spec) if shard_spec is not None else None
    except ValueError as exc:
        click.echo(f"mpetl: error: --shard: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        config = _load(config_path)
        code = _run(config, out_dir, dry_run=dry_run, now=_parse_now(now), concurrency=concurrency, fail_fast=fail_fast,
                    chunk_rows=chunk_rows, only_sources=only_sources, since=_parse_now(since), until=_parse_now(until),
                    shard=(shard.index, shard.count) if shard is not None and not shard.whole else None, replace=replace)
    except Exception as exc:  # noqa: BLE001 - _handle re-raises what it does not know
        _handle(exc)
    sys.exit(code)


def _run(config, out_dir: Path, *, dry_run: bool = False, now: datetime | None = None, concurrency: int | None = None,
         fail_fast: bool = False, chunk_rows: int = 100_000, only_sources: tuple[str, ...] = (),
         since: datetime | None = None, until: datetime | None = None, shard: tuple[int, int] | None = None,
         replace: bool = False, run_id: str | None = None) -> int:
    """One run (also nightly's first step): print its summary, return its exit code."""
    from etl.pipeline import RunOptions, run_pipeline

    result = run_pipeline(config, RunOptions(
        out_dir=out_dir, mode="dry-run" if dry_run else "send", now=now, concurrency=concurrency,
        fail_fast=fail_fast, chunk_rows=chunk_rows, only_sources=only_sources, progress=_progress_printer(),
        since=since, until=until, shard=shard, replace=replace, run_id=run_id,
    ))
    _print_run_summary(result.summary)
    return result.exit_code


@main.command()
@verbosity
@config_option
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Where to keep the validation outputs (default: a temporary folder).")
@now_option
@click.option("--debug-endpoint", is_flag=True, help="Also send every request to /debug/mp/collect and report its messages.")
@click.option("--sample", type=click.IntRange(1), default=None,
              help="With --debug-endpoint: send only the first N requests (a quick check of a big run).")
@click.option("--replace", is_flag=True, help="--out holds another validation's outputs: remove them first.")
def validate(config_path: Path, out_dir: Path | None, now: str | None, debug_endpoint: bool, sample: int | None,
             replace: bool) -> None:
    """Run everything but sending; print a table of reject reasons with counts."""
    import tempfile

    from etl.pipeline import RunOptions, run_pipeline

    try:
        config = _load(config_path)
        with tempfile.TemporaryDirectory() as tmp:
            target = out_dir or Path(tmp)
            result = run_pipeline(config, RunOptions(out_dir=target, mode="validate" if debug_endpoint else "dry-run",
                                                     now=_parse_now(now), sample_requests=sample, replace=replace))
            reasons: Counter[tuple[str, str, str]] = Counter()
            rejects = target / "rejects.ndjson"
            with rejects.open("rb") as lines:  # streamed: a big export can reject millions of rows
                for line in lines:
                    record = orjson.loads(line)
                    for r in record["reasons"]:
                        reasons[(record["source"], r["validationCode"], r["description"])] += 1
    except Exception as exc:  # noqa: BLE001 - _handle re-raises what it does not know
        _handle(exc)
    summary = result.summary
    if _is_tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="reject reasons")
        for col in ("source", "code", "reason", "rows"):
            table.add_column(col, justify="right" if col == "rows" else "left")
        for (source, code, desc), count in reasons.most_common():
            table.add_row(source, code, desc, f"{count:,}")
        Console().print(table)
    else:
        for (source, code, desc), count in reasons.most_common():
            click.echo(orjson.dumps({"source": source, "validationCode": code, "description": desc, "rows": count}).decode())
    click.echo(orjson.dumps(_relabel(summary, COUNTS)
                            | {"debug_requests": summary["send"]["requests_sent"] if debug_endpoint else 0,
                               "debug_messages": summary["send"]["debug_messages"]}).decode())
    _print_source_errors(summary)
    unusable = _unusable_sources(summary, reasons)
    for line in unusable:
        click.echo(f"mpetl: error: {line}", err=True)
    sys.exit(EXIT_BAD_INPUT if summary["source_errors"] or unusable else 0)


def _unusable_sources(summary: dict[str, Any], reasons: Counter[tuple[str, str, str]]) -> list[str]:
    """Sources that yielded rows and rejected every one: a mapping problem, not a data problem."""
    out = []
    for name, s in summary["sources"].items():
        if s["rows_in"] > 0 and s["rejected"] == s["rows_in"]:
            top = [(code, desc, n) for (src, code, desc), n in reasons.most_common() if src == name][:1]
            hint = f"; most common: {top[0][0]} {top[0][1]} ({top[0][2]:,} rows)" if top else ""
            out.append(f"source {name}: nothing usable — all {s['rows_in']:,} rows rejected; check the mapping{hint}")
    return out


@main.command()
@verbosity
@config_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for reconciliation.json/.csv/.html, missing.csv, duplicates.csv.")
@click.option("--run-id", default=None, help="Reconcile the events this run planned or sent.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First event date (property zone).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last event date (property zone).")
@now_option
def reconcile(config_path: Path, out_dir: Path, run_id: str | None, since: datetime | None, until: datetime | None,
              now: str | None) -> None:
    """Compare what the ledger sent with what the export holds; exit 3 when it does not reconcile."""
    try:
        config = _load(config_path)
        code = _reconcile(config, out_dir, run_id=run_id, since=since.date() if since else None,
                          until=until.date() if until else None, now=_parse_now(now))
    except Exception as exc:  # noqa: BLE001 - _handle re-raises what it does not know
        _handle(exc)
    sys.exit(code)


def _reconcile(config, out_dir: Path, *, run_id: str | None = None, since=None, until=None,
               now: datetime | None = None) -> int:
    """One reconciliation (also nightly's second step): print its verdict, return its exit code."""
    from etl.reconcile import reconcile as do_reconcile

    result = do_reconcile(config, out_dir=out_dir, run_id=run_id, since=since, until=until, now=now)
    click.echo(result.summary_text())
    return result.exit_code


@main.command()
@verbosity
@config_option
@click.option("--days", type=int, default=1, show_default=True, callback=lambda c, p, v: _check_days(v),
              help="Send the last N complete days (1-3: GA4 takes events up to 72 h old); overlaps are safe.")
@click.option("--out-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the folders go: one per run, D/nightly/YYYY-MM-DD/run-<run_id>/{run,reconcile}; "
                   "D/nightly/latest is the newest (default: $MPETL_OUT, else ./out).")
@now_option
def nightly(config_path: Path, days: int, out_root: Path | None, now: str | None) -> None:
    """The cron job: send yesterday (property zone), reconcile final dates; exit with the worst code."""
    import os

    from etl.nightly import run_nightly

    try:
        config = _load(config_path)
        moment = _parse_now(now)
        pinned = moment is not None
        moment = moment or datetime.now(UTC)
        root = out_root or Path(os.environ.get("MPETL_OUT") or "out")
        code = run_nightly(
            config, now=moment, days=days, out_root=root, pinned=pinned,
            run_step=lambda p, out, run_id: _run(config, out, now=moment if pinned else None, since=p.since,
                                                 until=p.until, run_id=run_id),
            reconcile_step=lambda p, out: _reconcile(config, out, since=p.reconcile_since, until=p.last_day,
                                                     now=moment if pinned else None),
        )
    except Exception as exc:  # noqa: BLE001 - _handle re-raises what it does not know
        _handle(exc)
    sys.exit(code)


def _check_days(value: int) -> int:
    if not 1 <= value <= 3:
        raise click.BadParameter("--days must be 1, 2 or 3 (GA4 takes events up to 72 h old)")
    return value


@main.command()
@verbosity
@config_option
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The Data Import CSV to write (an _index.csv beside it ties each line to its source row).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Only events dated on or after this day (property zone).")
def deferred(config_path: Path, out_file: Path, since: datetime | None) -> None:
    """Export every deferred event not yet exported (GA4 Data Import, offline events), and mark it exported.

    Each event is exported once, ever, into one file; an existing --out file is never replaced (exit 2).
    A file under its final name is whole, even if the command was killed after writing it.
    """
    from etl.deferred import export_deferred

    try:
        summary = export_deferred(_load(config_path), out_file, since=since.date() if since else None)
    except Exception as exc:  # noqa: BLE001 - _handle re-raises what it does not know
        _handle(exc)
    click.echo(orjson.dumps(summary).decode())


@main.command()
@verbosity
@config_option
@click.option("--run-id", default=None,
              help="Only the events this run deferred (its summary.json run_id); default: every one not yet written.")
def historical(config_path: Path, run_id: str | None) -> None:
    """Write the deferred events no historical write has taken to the [historical] table, after a `historical.error`.

    Safe to repeat: each event is written once (the next run would write them too). Exit 4 when the write fails.
    """
    from etl.errors import EXIT_OK, EXIT_SEND_FAILURES, ConfigError
    from etl.load import deliver_historical, open_ledger
    from etl.pipeline import new_run_id

    try:
        config = _load(config_path)
        if config.historical is None:
            raise ConfigError(str(config.file), "historical.table", "is not set: there is no historical table")
        with open_ledger(config.ledger_location, lock=True) as ledger:
            if run_id is not None and run_id not in ledger.run_ids():
                raise ConfigError(str(config.ledger_location), "--run-id", f"no run {run_id!r} in this ledger")
            ledger.bind_property(config.property.measurement_id, config.destination.endpoint)
            writer = new_run_id(datetime.now(UTC))
            ledger.begin_run(writer, "historical")
            report = deliver_historical(ledger, writer, config.historical, config.property, deferred_by=run_id)
            ledger.finish_run(writer, orjson.dumps(report).decode())
    except MpetlError as exc:
        _fail(exc)
    click.echo(orjson.dumps(report).decode())
    sys.exit(EXIT_SEND_FAILURES if "error" in report else EXIT_OK)


@main.command()
@verbosity
@config_option
@click.option("--run-id", required=True, help="The run whose events the export lacks.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for resend.json, resend_deferred.csv and the reconciliation before (default: out/resend/RUN).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=None, help="Requests in flight at once.")
def resend(config_path: Path, run_id: str, out_dir: Path | None, concurrency: int | None) -> None:
    """Send again the events of RUN the export lacks (only our marked events count), while the 72 h window allows.

    Exit 0 when every missing event was resent, 3 when some are past the window (resend_deferred.csv),
    4 when sending failed. Reconcile afterwards to see them arrive.
    """
    from etl.resend import run_resend

    try:
        config = _load(config_path)
        result = run_resend(config, run_id=run_id, out_dir=out_dir or config.base_dir / "out" / "resend" / run_id,
                            concurrency=concurrency)
    except MpetlError as exc:
        _fail(exc)
    click.echo(orjson.dumps({"event": "resend", **result.summary}).decode())
    sys.exit(result.exit_code)


@main.command()
@verbosity
@config_option
@click.option("--wait-s", type=click.FloatRange(0, 3600), default=120.0, show_default=True,
              help="How long to wait for the canary in the export (intraday tables usually take minutes).")
@click.option("--poll-s", type=click.FloatRange(0.1, 600), default=5.0, show_default=True,
              help="Seconds between looks at the export.")
def check(config_path: Path, wait_s: float, poll_s: float) -> None:
    """Send one marked `mpetl_canary` event and wait for it in the export (exit 7 when it does not show).

    Catches what a 2xx cannot: a wrong api_secret or measurement id, or an export that is not linked.
    """
    from etl.canary import run_check

    try:
        result = run_check(_load(config_path), wait_s=wait_s, poll_s=poll_s)
    except MpetlError as exc:
        _fail(exc)
    click.echo(result.message, err=not result.found)
    click.echo(orjson.dumps({"event": "canary", "found": result.found, "canary_id": result.canary_id,
                             "http_status": result.http_status, "waited_s": result.waited_s,
                             "export_rows_today": result.export_rows_today}).decode())
    sys.exit(result.exit_code)


@main.command()
@verbosity
@config_option
@click.option("-n", "rows", default=5, show_default=True, help="Mapped events to show per source.")
@now_option
def sources(config_path: Path, rows: int, now: str | None) -> None:
    """Preview each source: columns found, the mapping, and the first events exactly as they would be sent.

    The events come out of the real transform, so they carry only allowlisted, scanned params: no raw
    cell of the export (which may hold names or emails) is ever printed. Rows the transform would
    reject show their reasons instead.
    """
    from datetime import UTC
    from types import SimpleNamespace

    from etl.extract import preview_source
    from etl.pipeline import max_age_micros
    from etl.protocol import to_micros
    from etl.transform import transform_chunk

    try:
        config = _load(config_path)
        moment = _parse_now(now) or datetime.now(UTC)
        for source in config.sources:
            preview = preview_source(source, n=rows)
            head = preview["head"]
            chunk = SimpleNamespace(source=source.name, path=str(source.path), frame=head, columns=preview["mapping"])
            result = transform_chunk(chunk, source, config.property, config.window, now_micros=to_micros(moment),
                                     run_id="preview", extra_params=config.privacy_extra_params)
            click.echo(orjson.dumps({
                "source": source.name,
                "kind": source.kind,
                "path": str(source.path),
                "columns_found": preview["columns_found"],
                "mapping": preview["mapping"],
                "events": [orjson.loads(e) for e in result.events["event_json"]],
                "rejected_rows": [{"row": int(r), "reasons": [x["validationCode"] + ": " + x["description"] for x in rs]}
                                  for r, rs in zip(result.rejects["row"], result.rejects["reasons"], strict=True)],
                # Too old by the wall clock now: a run would defer them (Data Import), not send them.
                "deferred_rows": [int(r) for r, ts in zip(result.events["row"], result.events["timestamp_micros"], strict=True)
                                  if ts < to_micros(datetime.now(UTC)) - max_age_micros(config)],
            }, option=orjson.OPT_INDENT_2, default=str).decode())
    except Exception as exc:  # noqa: BLE001 - _handle re-raises what it does not know
        _handle(exc)


@main.command()
@verbosity
@click.argument("out_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the night's summary to this file (JSON).")
def aggregate(out_dirs: tuple[Path, ...], out_file: Path | None) -> None:
    """One night's summary from its shard runs' --out folders (each holds a summary.json).

    Refuses (exit 2) unless shards 1..N are all there once, each balances, and every row was owned by
    exactly one shard; exits with the worst shard's exit code otherwise.
    """
    from etl.shard import AggregateError
    from etl.shard import aggregate as fold

    try:
        summaries = []
        for folder in out_dirs:
            path = folder / "summary.json"
            if not path.is_file():
                raise AggregateError(f"{path}: no summary.json (did that shard finish?)")
            summaries.append(orjson.loads(path.read_bytes()))
        night = fold(summaries)
    except (AggregateError, orjson.JSONDecodeError) as exc:
        click.echo(f"mpetl: error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    text = orjson.dumps(night, option=orjson.OPT_INDENT_2)
    if out_file is not None:
        out_file.write_bytes(text)
    click.echo(text.decode())
    sys.exit(night["exit_code"])


@main.command()
@verbosity
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["csv", "parquet", "salesforce", "hubspot", "shopify", "square", "bigquery"]),
              default="csv",
              show_default=True, help="The source kind the config is laid out for.")
@click.option("--timezone", default="Europe/London", show_default=True, help="The GA4 property's reporting zone.")
@click.option("--measurement-id", default="G-XXXXXXXXXX", show_default=True, help="Your web stream's id (G-…).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(folder: Path, kind: str, timezone: str, measurement_id: str, force: bool) -> None:
    """Write a commented config for one kind, a crontab line and the Airflow DAG into FOLDER."""
    from etl.config import _zone
    from etl.init_files import write_starter

    try:
        _zone(timezone)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timezone") from None
    try:
        written = write_starter(folder, kind=kind, timezone=timezone, measurement_id=measurement_id, force=force)
    except FileExistsError as exc:
        click.echo(f"mpetl: error: {exc}: already exists (use --force to overwrite)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:
        click.echo(f"mpetl: error: {folder}: cannot write ({exc.strerror})", err=True)
        sys.exit(EXIT_BAD_INPUT)
    for path in written:
        click.echo(f"wrote {path}")
    config = folder.resolve() / "mpetl.toml"
    click.echo(f"next: put your export where the config's path says, set MP_API_SECRET, then "
               f"mpetl validate --config {config}")


@main.command()
@verbosity
def schema() -> None:
    """Print the JSON Schema of the config file (point your editor's TOML support at it)."""
    from etl.config import json_schema

    click.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())


def _collector_command() -> click.Command:
    """`mpetl collector` as a click command with the collector's own options (from its argparse parser).

    Why generated: the collector owns its option list (`python -m etl.collector` takes the same), so
    the two can never drift; click gives `mpetl collector --help` and checks types before it starts.
    """
    import argparse

    from etl.collector.__main__ import build_parser
    from etl.collector.__main__ import main as collector_main

    parser = build_parser()
    params: list[click.Parameter] = []
    flags: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        name = action.dest
        flags[name] = action.option_strings[-1]
        kind = {int: click.INT, float: click.FLOAT, Path: click.Path(path_type=Path)}.get(action.type, click.STRING)
        params.append(click.Option([*action.option_strings, name], type=kind, required=action.required,
                                   default=None, help=(action.help or "").replace("%", "%%")))

    def run_collector(**values: Any) -> None:
        argv: list[str] = []
        for name, value in values.items():
            if value is not None:
                argv += [flags[name], str(value)]
        sys.exit(collector_main(argv))

    command = click.Command("collector", callback=run_collector, params=params, help=parser.description,
                            short_help="Serve the local MP endpoint with a GA4-export-shaped store.")
    return command


main.add_command(_collector_command())


if __name__ == "__main__":
    main()
