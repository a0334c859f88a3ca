"""`mpetl`: the command line analysts and schedulers use.

Exit codes (README, "Exit codes"): 0 ok, 2 bad input or config, 3 not reconciled, 4 send failures
remain (the next run retries them), 5 another run holds the ledger. Errors are one line on stderr,
never a traceback, never a cell value or the API secret.
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
from etl.errors import EXIT_BAD_INPUT, MpetlError


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


def _print_run_summary(summary: dict[str, Any]) -> None:
    if not _is_tty():
        click.echo(orjson.dumps({"event": "summary", **{k: v for k, v in summary.items() if k != "send"}}).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {summary['run_id']} ({summary['mode']})")
    for col in ("source", "rows_in", "sent", "rejected", "duplicate", "deferred", "failed", "no_session"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, s in summary["sources"].items():
        table.add_row(name, *(str(s[c]) for c in ("rows_in", "sent", "rejected", "duplicate", "deferred", "failed", "no_session")))
    table.add_row("TOTAL", *(str(summary[c]) for c in ("rows_in", "sent", "rejected", "duplicate", "deferred", "failed", "no_session")), style="bold")
    console = Console()
    console.print(table)
    console.print(
        f"rows_in {summary['rows_in']} == sent {summary['sent']} + rejected {summary['rejected']} + duplicate "
        f"{summary['duplicate']} + deferred {summary['deferred']} + failed {summary['failed']}"
    )
    for err in summary["source_errors"]:
        console.print(f"[red]source {err['source']}: {err['error']}[/red]")


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="More log lines (each stage's JSON log on stderr).")
@click.option("-q", "--quiet", is_flag=True, help="No log lines; only the final summary and errors.")
def main(verbose: bool, quiet: bool) -> None:
    """Send offline conversions to GA4 through the Measurement Protocol, and prove they arrived."""
    log.set_quiet(quiet)
    log.set_verbose(verbose)


config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The TOML config: property, destination, ledger, sources, reconcile.",
)
now_option = click.option(
    "--now", default=None, help="Pin the clock (ISO-8601, UTC if no offset): the 72 h window is measured from it.",
)


def _load(config_path: Path):
    from etl.config import load_config

    return load_config(config_path)


@main.command()
@config_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for summary.json, rejects.ndjson, deferred.csv, privacy_manifest.json (and requests.ndjson).")
@click.option("--dry-run", is_flag=True, help="Build and validate every request, write the exact bodies to requests.ndjson, send nothing.")
@now_option
@click.option("--concurrency", type=click.IntRange(1, 256), default=None, help="Requests in flight at once (default: config, 32).")
@click.option("--source", "only_sources", multiple=True, help="Run only this source (repeatable).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first unreadable source instead of going on with the others.")
@click.option("--chunk-rows", type=click.IntRange(1000, 10_000_000), default=100_000, show_default=True,
              help="Rows read per chunk: bounds memory.")
@click.option("--since", default=None, help="Only rows whose event time is at or after this (ISO-8601; naive = UTC).")
@click.option("--until", default=None, help="Only rows whose event time is before this (ISO-8601; naive = UTC).")
@click.option("--shard", "shard_spec", default=None, metavar="K/N",
              help="Plan and send only the clients of shard K of N (README: Scale-out); other rows count as other_shard.")
def run(config_path: Path, out_dir: Path, dry_run: bool, now: str | None, concurrency: int | None,
        only_sources: tuple[str, ...], fail_fast: bool, chunk_rows: int, since: str | None, until: str | None,
        shard_spec: str | None) -> None:
    """Extract, transform, send (or --dry-run) and account for every row."""
    from etl.pipeline import RunOptions, run_pipeline
    from etl.shard import Shard

    try:
        shard = Shard.parse(shard_spec) if shard_spec is not None else None
    except ValueError as exc:
        click.echo(f"mpetl: error: --shard: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        config = _load(config_path)
        result = run_pipeline(config, RunOptions(
            out_dir=out_dir, mode="dry-run" if dry_run else "send", now=_parse_now(now), concurrency=concurrency,
            fail_fast=fail_fast, chunk_rows=chunk_rows, only_sources=only_sources, progress=_progress_printer(),
            since=_parse_now(since), until=_parse_now(until),
            shard=(shard.index, shard.count) if shard is not None and not shard.whole else None,
        ))
    except MpetlError as exc:
        _fail(exc)
    _print_run_summary(result.summary)
    sys.exit(result.exit_code)


@main.command()
@config_option
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Where to keep the validation outputs (default: a temporary folder).")
@now_option
@click.option("--debug-endpoint", is_flag=True, help="Also send every request to /debug/mp/collect and report its messages.")
@click.option("--sample", type=click.IntRange(1), default=None,
              help="With --debug-endpoint: send only the first N requests (a quick check of a big run).")
def validate(config_path: Path, out_dir: Path | None, now: str | None, debug_endpoint: bool, sample: int | None) -> None:
    """Run everything but sending; print a table of reject reasons with counts."""
    import tempfile

    from etl.pipeline import RunOptions, run_pipeline

    try:
        config = _load(config_path)
        with tempfile.TemporaryDirectory() as tmp:
            target = out_dir or Path(tmp)
            result = run_pipeline(config, RunOptions(out_dir=target, mode="validate" if debug_endpoint else "dry-run",
                                                     now=_parse_now(now), sample_requests=sample))
            reasons: Counter[tuple[str, str, str]] = Counter()
            rejects = target / "rejects.ndjson"
            with rejects.open("rb") as lines:  # streamed: a big export can reject millions of rows
                for line in lines:
                    record = orjson.loads(line)
                    for r in record["reasons"]:
                        reasons[(record["source"], r["validationCode"], r["description"])] += 1
    except MpetlError as exc:
        _fail(exc)
    summary = result.summary
    if _is_tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="reject reasons")
        for col in ("source", "code", "reason", "rows"):
            table.add_column(col)
        for (source, code, desc), count in reasons.most_common():
            table.add_row(source, code, desc, str(count))
        Console().print(table)
    else:
        for (source, code, desc), count in reasons.most_common():
            click.echo(orjson.dumps({"source": source, "validationCode": code, "description": desc, "rows": count}).decode())
    click.echo(orjson.dumps({k: summary[k] for k in ("rows_in", "sent", "rejected", "duplicate", "deferred", "failed")}
                            | {"debug_requests": summary["send"]["requests_sent"] if debug_endpoint else 0,
                               "debug_messages": summary["send"]["debug_messages"]}).decode())
    sys.exit(EXIT_BAD_INPUT if summary["source_errors"] else 0)


@main.command()
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
    from etl.reconcile import reconcile as do_reconcile

    try:
        config = _load(config_path)
        result = do_reconcile(config, out_dir=out_dir, run_id=run_id,
                              since=since.date() if since else None, until=until.date() if until else None,
                              now=_parse_now(now))
    except MpetlError as exc:
        _fail(exc)
    click.echo(result.summary_text())
    sys.exit(result.exit_code)


@main.command()
@config_option
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The Data Import CSV to write (an _index.csv beside it ties each line to its source row).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Only events dated on or after this day (property zone).")
def deferred(config_path: Path, out_file: Path, since: datetime | None) -> None:
    """Export every deferred event not yet exported (GA4 Data Import, offline events), and mark it exported.

    Each event is exported once, ever: upload only files from runs of this command that exited 0.
    """
    from etl.deferred import export_deferred

    try:
        summary = export_deferred(_load(config_path), out_file, since=since.date() if since else None)
    except MpetlError as exc:
        _fail(exc)
    click.echo(orjson.dumps(summary).decode())


@main.command()
@config_option
@click.option("--run-id", required=True, help="The run whose deferred events to write (its summary.json run_id).")
def historical(config_path: Path, run_id: str) -> None:
    """Write one run's deferred events to the [historical] table again, after a `historical.error`.

    Safe to repeat: a run already in the table is not written twice. Exit 4 when the write fails.
    """
    from etl.errors import EXIT_OK, EXIT_SEND_FAILURES, ConfigError
    from etl.load import open_ledger, write_historical

    try:
        config = _load(config_path)
        if config.historical is None:
            raise ConfigError(str(config.file), "historical.table", "is not set: there is no historical table")
        with open_ledger(config.ledger_location, read_only=True) as ledger:
            if run_id not in ledger.run_ids():
                raise ConfigError(str(config.ledger_location), "--run-id", f"no run {run_id!r} in this ledger")
            report = write_historical(config.historical, lambda: ledger.deferred_events(run_id=run_id),
                                      config.property)
    except MpetlError as exc:
        _fail(exc)
    click.echo(orjson.dumps(report).decode())
    sys.exit(EXIT_SEND_FAILURES if "error" in report else EXIT_OK)


@main.command()
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
    except MpetlError as exc:
        _fail(exc)


@main.command()
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


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
              add_help_option=False)
@click.pass_context
def collector(ctx: click.Context) -> None:
    """Serve the local MP endpoint with a GA4-export-shaped store (`mpetl collector --help` for options)."""
    from etl.collector.__main__ import main as collector_main

    sys.exit(collector_main(list(ctx.args)))


if __name__ == "__main__":
    main()
