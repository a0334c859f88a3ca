"""`mpetl`: the command line analysts and schedulers use.

Exit codes (docs/outputs.md, "Exit codes"): 0 ok, 2 bad input or config, 3 not reconciled, 4 send failures
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
from etl.accounting import Buckets, Notes, sent_label
from etl.collector.cli import collector
from etl.commandline import (
    DAY,
    INSTANT,
    SHARD,
    CliError,
    Finite,
    Group,
    NonEmptyPath,
    apply_logging,
    echo_error,
    log_options,
)
from etl.errors import EXIT_BAD_INPUT
from etl.next_steps import last_error_text, not_delivered_message, run_next_steps


def _is_tty() -> bool:
    return sys.stdout.isatty()


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    """rows_in and every bucket, as the summary names them (a dry run's would_send)."""
    label = sent_label(summary.get("mode", "send"))
    return {k: summary[k] for k in ("rows_in", *(label if b == "sent" else b for b in Buckets.NAMES)) if k in summary}


def _print_run_summary(summary: dict[str, Any], steps: list[str]) -> None:
    """The run's totals, then what to do next: a table on a terminal, one JSON line otherwise."""
    label = sent_label(summary["mode"])
    if not _is_tty():
        shown = {k: v for k, v in summary.items() if k != "send"}
        click.echo(orjson.dumps({"event": "summary", **shown, "next_steps": steps}).decode())
        _print_failures(summary)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    buckets = Buckets.from_summary(summary, where="summary")
    shown = [b for b in Buckets.NAMES if b in Buckets.ALWAYS_SHOWN or getattr(buckets, b)]
    cols = ("rows_in", *shown, "no_session")
    table = Table(title=escape(f"run {summary['run_id']} ({summary['mode']})"))
    table.add_column("source")
    for col in cols:
        table.add_column(label if col == "sent" else col, justify="right")
    for name, s in summary["sources"].items():
        table.add_row(escape(name), *(f"{s[label if c == 'sent' else c]:,}" for c in cols))
    table.add_row("TOTAL", *(f"{summary[label if c == 'sent' else c]:,}" for c in cols), style="bold")
    console = Console(highlight=False)
    console.print(table)
    console.print(buckets.equation(label), markup=False)
    for line in summary.get("money_equations", []):  # the same equation per currency (refunds negative)
        console.print(line, markup=False)
    for line in _summary_notes(summary):
        console.print(line, markup=False)
    _print_next_steps(console, steps)
    _print_failures(summary)


def _print_next_steps(console: Any, steps: list[str]) -> None:
    if steps:
        console.print("What to do next:", style="bold")
        for step in steps:
            console.print(f"  - {step}", markup=False, soft_wrap=True)


def _print_failures(summary: dict[str, Any]) -> None:
    """Why the exit code is not 0, on stderr whatever -q says: failed sources, events not delivered."""
    _print_source_errors(summary)
    problem = not_delivered_message(summary)
    if problem:
        echo_error(problem, exit_code=summary["exit_code"])


def _summary_notes(summary: dict[str, Any]) -> list[str]:
    """The lines under the equation: why rows were filtered, and what is worth knowing about the sent."""
    lines = []
    if summary.get("not_sampled"):
        checked = summary["send"].get("events_validated", 0)
        lines.append(f"sampled: {checked:,} events checked by the debug endpoint, {summary['not_sampled']:,} not "
                     "sampled (they passed every local check; --sample leaves them unchecked)")
    if summary.get("filtered_codes"):
        lines.append("filtered (not conversions, not errors): "
                     + ", ".join(f"{code} {rows:,}" for code, rows in summary["filtered_codes"].items()))
    notes = {name: summary.get(name, 0) for name in Notes().to_dict()}
    if any(notes.values()):
        lines.append("notes: " + ", ".join(f"{name} {count:,}" for name, count in notes.items() if count))
    return lines


def _print_source_errors(summary: dict[str, Any]) -> None:
    """A failed source's reason, one line each on stderr, whatever -q says: it is why the exit code is 2."""
    for err in summary.get("source_errors", []):
        echo_error(f"source {err['source']}: {err['error']}")


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


def _examples(lines: list[str]) -> str:
    """A command's `Examples:` epilog (`\\b` keeps click from rewrapping the lines)."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


COMPLETION = ('Shell completion (bash; zsh and fish alike with zsh_source / fish_source):\n\n\b\n'
              '  eval "$(_MPETL_COMPLETE=bash_source mpetl)"      # in ~/.bashrc')


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=_examples(["mpetl init myjob --kind csv", "mpetl validate --config myjob/mpetl.toml",
                               "mpetl run --config myjob/mpetl.toml --out out/run"]) + "\n\n" + COMPLETION)
@click.version_option(package_name="mpetl", prog_name="mpetl", message="%(prog)s %(version)s")
@log_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """Send offline conversions to GA4 through the Measurement Protocol, and prove they arrived."""
    apply_logging(ctx)


config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The TOML config: property, destination, ledger, sources, reconcile.",
)
now_option = click.option(
    "--now", type=INSTANT, default=None,
    help="Select rows as of this instant (ISO-8601, UTC if no offset); ages stay the wall clock's.",
)
concurrency_option = click.option("--concurrency", type=click.IntRange(1, 256), default=None,
                                  help="Requests in flight at once (default: config, 32).")


def _out_option(help_text: str, *, required: bool = False, dir_okay: bool = False):
    return click.option("--out", "out_path", required=required, default=None, help=help_text,
                        type=NonEmptyPath(file_okay=not dir_okay, dir_okay=dir_okay, path_type=Path))


def _load(config_path: Path):
    """The config (the ledger's backends name their own location in a driver error)."""
    from etl.config import load_config

    return load_config(config_path)


@main.command(epilog=_examples(['mpetl run --config mpetl.toml --out out/run --dry-run     # build every request, send nothing', 'mpetl run --config mpetl.toml --out out/2026-11-20 --since 2026-11-20 --until 2026-11-21']))
@log_options
@config_option
@_out_option("Folder for summary.json, rejects.ndjson, deferred.csv, privacy_manifest.json (and requests.ndjson).",
             required=True, dir_okay=True)
@click.option("--dry-run", is_flag=True, help="Build and validate every request, write the exact bodies to requests.ndjson, send nothing.")
@now_option
@concurrency_option
@click.option("--source", "only_sources", multiple=True, help="Run only this source (repeatable).")
@click.option("--fail-fast", is_flag=True, help="Stop at the first unreadable source instead of going on with the others.")
@click.option("--chunk-rows", type=click.IntRange(1000, 10_000_000), default=None,
              help="Rows read per chunk (default 50,000): bounds memory.")
@click.option("--since", type=INSTANT, default=None, help="Only rows whose event time is at or after this (ISO-8601; naive = UTC).")
@click.option("--until", type=INSTANT, default=None, help="Only rows whose event time is before this (ISO-8601; naive = UTC).")
@click.option("--shard", type=SHARD, default=None,
              help="Plan and send only the clients of shard K of N (docs/scale-out.md); other rows count as other_shard.")
@click.option("--replace", is_flag=True,
              help="--out holds another run's outputs: remove them first (its deferred.csv rows go into this run's).")
def run(config_path: Path, out_path: Path, dry_run: bool, shard: Any, **options: Any) -> int:
    """Extract, transform, send (or --dry-run) and account for every row."""
    shard = (shard.index, shard.count) if shard is not None and not shard.whole else None
    return _run(_load(config_path), out_path, mode="dry-run" if dry_run else "send", shard=shard, **options)


def _run(config, out_dir: Path, **options: Any) -> int:
    """One run (also nightly's first step): print its summary, return its exit code. Options left out
    (None) take RunOptions' defaults, so `run` and `nightly` read the same chunk size."""
    from etl.pipeline import RunOptions, run_pipeline

    given = {k: v for k, v in options.items() if v is not None}
    result = run_pipeline(config, RunOptions(out_dir=out_dir, progress=_progress_printer(), **given))
    _print_run_summary(result.summary, run_next_steps(result.summary, config_file=config.file, out_dir=out_dir))
    return result.exit_code


@main.command(epilog=_examples(['mpetl validate --config mpetl.toml                      # reject and filter reasons', 'mpetl validate --config mpetl.toml --debug-endpoint --sample 20']))
@log_options
@config_option
@_out_option("Where to keep the validation outputs (default: a temporary folder).", dir_okay=True)
@now_option
@click.option("--debug-endpoint", is_flag=True, help="Also send every request to /debug/mp/collect and report its messages.")
@click.option("--sample", type=click.IntRange(1, 1_000_000), default=None,
              help="With --debug-endpoint: send only the first N requests (a quick check of a big run).")
@click.option("--replace", is_flag=True, help="--out holds another validation's outputs: remove them first.")
def validate(config_path: Path, out_path: Path | None, now: datetime | None, debug_endpoint: bool,
             sample: int | None, replace: bool) -> int:
    """Run everything but sending; print a table of reject reasons with counts.

    The exit code is the one summary.json and the printed totals carry: 4 when the debug endpoint
    could not be reached, 2 when a source is unreadable or every row of one is rejected.
    """
    import tempfile

    from etl.load import write_atomic
    from etl.pipeline import RunOptions, run_pipeline

    config = _load(config_path)
    with tempfile.TemporaryDirectory() as tmp:
        target = out_path or Path(tmp)
        result = run_pipeline(config, RunOptions(out_dir=target, mode="validate" if debug_endpoint else "dry-run",
                                                 now=now, sample_requests=sample, replace=replace))
        reasons = _reject_reasons(target / "rejects.ndjson")
        summary = result.summary
        unusable = _unusable_sources(summary, reasons)
        if unusable and not summary["exit_code"]:
            summary["exit_code"] = EXIT_BAD_INPUT  # what the exit says, the summary says
            write_atomic(target / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    steps = run_next_steps(summary, config_file=config.file, out_dir=out_path or Path("out/validate"))
    _print_reasons(reasons, summary)
    if _is_tty():
        from rich.console import Console

        console = Console(highlight=False)
        for line in _summary_notes(summary):
            console.print(line, markup=False)
        _print_next_steps(console, steps)
    click.echo(orjson.dumps(_counts(summary)
                            | {"debug_requests": summary["send"].get("requests_validated", 0),
                               "debug_messages": summary["send"]["debug_messages"],
                               "not_sampled": summary["not_sampled"],
                               "exit_code": summary["exit_code"], "next_steps": steps}).decode())
    _print_source_errors(summary)
    for line in unusable:
        echo_error(line, exit_code=summary["exit_code"])
    cause = last_error_text(summary["send"]["last_error"])
    if debug_endpoint and cause:
        echo_error(f"debug endpoint: {cause}; {not_delivered_message(summary) or ''}".rstrip("; "),
                   exit_code=summary["exit_code"])
    return summary["exit_code"]


def _reject_reasons(rejects: Path) -> Counter[tuple[str, str, str]]:
    """(source, code, description) → rows; streamed: a big export can reject millions of rows."""
    reasons: Counter[tuple[str, str, str]] = Counter()
    with rejects.open("rb") as lines:
        for line in lines:
            record = orjson.loads(line)
            for r in record["reasons"]:
                reasons[(record["source"], r["validationCode"], r["description"])] += 1
    return reasons


def _print_reasons(reasons: Counter[tuple[str, str, str]], summary: dict[str, Any]) -> None:
    """Reject reasons with their rows, then the filtered rows by reason (not conversions, not errors)."""
    filtered = [(source, f["code"], f["reason"], f["rows"]) for source, s in summary["sources"].items()
                for f in s.get("filtered_reasons", [])]
    if not _is_tty():
        for (source, code, desc), count in reasons.most_common():
            click.echo(orjson.dumps({"source": source, "validationCode": code, "description": desc, "rows": count}).decode())
        for source, code, desc, count in filtered:
            click.echo(orjson.dumps({"source": source, "filtered": True, "validationCode": code,
                                     "description": desc, "rows": count}).decode())
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    for title, rows in (("reject reasons", [(*key, n) for key, n in reasons.most_common()]),
                        ("filtered (not conversions, not errors)", filtered)):
        table = Table(title=title)
        for col in ("source", "code", "reason", "rows"):
            table.add_column(col, justify="right" if col == "rows" else "left")
        for source, code, desc, count in rows:
            table.add_row(escape(source), escape(code), escape(desc), f"{count:,}")
        Console().print(table)


def _unusable_sources(summary: dict[str, Any], reasons: Counter[tuple[str, str, str]]) -> list[str]:
    """Sources that yielded rows and rejected every one: a mapping problem, not a data problem."""
    out = []
    for name, s in summary["sources"].items():
        in_scope = s["rows_in"] - s.get("outside_window", 0) - s.get("other_shard", 0) - s.get("filtered", 0)
        if in_scope > 0 and s["rejected"] == in_scope:
            top = [(code, desc, n) for (src, code, desc), n in reasons.most_common() if src == name][:1]
            hint = f"; most common: {top[0][0]} {top[0][1]} ({top[0][2]:,} rows)" if top else ""
            out.append(f"source {name}: nothing usable — all {in_scope:,} rows rejected; check the mapping{hint}")
    return out


@main.command(epilog=_examples(['mpetl reconcile --config mpetl.toml --run-id 20261121T060000Z-c9517c --out out/reconcile', 'mpetl reconcile --config mpetl.toml --since 2026-11-17 --until 2026-11-20 --out out/reconcile']))
@log_options
@config_option
@_out_option("Folder for reconciliation.json/.csv/.html, missing.csv, duplicates.csv.", required=True, dir_okay=True)
@click.option("--run-id", default=None, help="Reconcile the events this run planned or sent.")
@click.option("--since", type=DAY, default=None, help="First event date (property zone).")
@click.option("--until", type=DAY, default=None, help="Last event date (property zone).")
@now_option
def reconcile(config_path: Path, out_path: Path, **options: Any) -> int:
    """Compare what the ledger sent with what the export holds; exit 3 when it does not reconcile."""
    return _reconcile(_load(config_path), out_path, **options)


def _reconcile(config, out_dir: Path, *, as_json: bool = False, **options: Any) -> int:
    """One reconciliation (also nightly's second step): print its verdict (a few lines, or with `as_json` one
    JSON line like the run's summary), return its exit code."""
    from etl.reconcile import reconcile as do_reconcile

    result = do_reconcile(config, out_dir=out_dir, **options)
    from etl.request_diagnostics import describe, early_signal  # Data Manager API only: an early signal

    signal = describe(early_signal(config, out_dir, run_id=options.get("run_id")))
    if as_json:
        line = {"event": "reconcile", "verdict": result.verdict, "headline": result.headline,
                "exit_code": result.exit_code, "run_id": result.run_id, "selection": result.selection,
                "totals": result.totals, "money": result.money_totals, "next_steps": result.next_steps,
                "reports": str(out_dir), **({"early_signal": signal} if signal is not None else {})}
        click.echo(orjson.dumps(line, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        click.echo(result.summary_text())
        if signal is not None:
            click.echo(signal)
    return result.exit_code


@main.command(epilog=_examples(['mpetl nightly --config /etc/mpetl/mpetl.toml --out-root /var/lib/mpetl   # from cron', 'mpetl nightly --config mpetl.toml --days 3                            # late rows: last 3 days']))
@log_options
@config_option
@click.option("--days", type=int, default=1, show_default=True, callback=lambda c, p, v: _check_days(v),
              help="Send the last N complete days (1-3: GA4 takes events up to 72 h old); overlaps are safe.")
@click.option("--out-root", type=NonEmptyPath(file_okay=False, path_type=Path), default=None,
              help="Where the folders go: one per run, D/nightly/YYYY-MM-DD/run-<run_id>/{run,reconcile}; "
                   "D/nightly/latest is the newest (default: $MPETL_OUT, else ./out).")
@now_option
def nightly(config_path: Path, days: int, out_root: Path | None, now: datetime | None) -> int:
    """The cron job: send yesterday (property zone), reconcile final dates; exit with the worst code.

    On stdout one format: the run's table and the reconciliation's lines on a terminal; off one (cron,
    Airflow) one JSON line each, `{"event": "summary", …}` then `{"event": "reconcile", …}`.
    """
    import os

    from etl.nightly import run_nightly

    config = _load(config_path)
    moment = now or datetime.now(UTC)
    return run_nightly(
        config, now=moment, days=days, out_root=out_root or Path(os.environ.get("MPETL_OUT") or "out"),
        pinned=now is not None,
        run_step=lambda p, out, run_id: _run(config, out, now=now, since=p.since, until=p.until, run_id=run_id),
        reconcile_step=lambda p, out: _reconcile(config, out, since=p.reconcile_since, until=p.last_day, now=now,
                                                 as_json=not _is_tty()),
    )


def _check_days(value: int) -> int:
    if not 1 <= value <= 3:
        raise click.BadParameter("--days must be 1, 2 or 3 (GA4 takes events up to 72 h old)")
    return value


@main.command(epilog=_examples(['mpetl deferred --config mpetl.toml --out deferred-import.csv   # then upload it in GA4 Data Import']))
@log_options
@config_option
@_out_option("The Data Import CSV to write (an _index.csv beside it ties each line to its source row).", required=True)
@click.option("--since", type=DAY, default=None, help="Only events dated on or after this day (property zone).")
def deferred(config_path: Path, out_path: Path, since: Any) -> int:
    """Export every deferred event not yet exported (GA4 Data Import, offline events), and mark it exported.

    Each event is exported once, ever, into one file; an existing --out file is never replaced (exit 2).
    A file under its final name is whole, even if the command was killed after writing it.
    """
    from etl.deferred import export_deferred

    click.echo(orjson.dumps(export_deferred(_load(config_path), out_path, since=since)).decode())
    return 0


@main.command()
@log_options
@config_option
@click.option("--run-id", default=None,
              help="Only the events this run deferred (its summary.json run_id); default: every one not yet written.")
def historical(config_path: Path, run_id: str | None) -> int:
    """Write the deferred events no historical write has taken to the [historical] table, after a `historical.error`.

    Safe to repeat: each event is written once (the next run would write them too). Exit 4 when the write fails.
    """
    from etl.errors import EXIT_OK, EXIT_SEND_FAILURES, ConfigError
    from etl.load import deliver_historical, open_ledger
    from etl.pipeline import new_run_id

    config = _load(config_path)
    if config.historical is None:
        raise ConfigError(str(config.file), "historical.table", "is not set: there is no historical table")
    with open_ledger(config.ledger_location, lock=True) as ledger:
        if run_id is not None and run_id not in ledger.run_ids():
            raise ConfigError(str(config.ledger_location), "--run-id", f"no run {run_id[:80]!r} in this ledger")
        ledger.bind_property(config.property.measurement_id, config.destination.endpoint)
        writer = new_run_id(datetime.now(UTC))
        ledger.begin_run(writer, "historical")
        report = deliver_historical(ledger, writer, config.historical, config.property, deferred_by=run_id)
        ledger.finish_run(writer, orjson.dumps(report).decode())
    click.echo(orjson.dumps(report).decode())
    return EXIT_SEND_FAILURES if "error" in report else EXIT_OK


@main.command(epilog=_examples(['mpetl resend --config mpetl.toml --run-id 20261121T060000Z-c9517c']))
@log_options
@config_option
@click.option("--run-id", required=True, help="The run whose events the export lacks.")
@_out_option("Folder for resend.json, resend_deferred.csv and the reconciliation before (default: out/resend/RUN).",
             dir_okay=True)
@concurrency_option
def resend(config_path: Path, run_id: str, out_path: Path | None, concurrency: int | None) -> int:
    """Send again the events of RUN the export lacks (only our marked events count), while the 72 h window allows.

    Exit 0 when every missing event was resent, 3 when some are past the window (resend_deferred.csv),
    4 when sending failed. Reconcile afterwards to see them arrive.
    """
    from etl.resend import run_resend

    config = _load(config_path)
    if not run_id.strip() or "/" in run_id or len(run_id) > 200:
        raise CliError(f"--run-id: {run_id[:80]!r} is not a run id (its summary.json run_id)")
    result = run_resend(config, run_id=run_id, out_dir=out_path or config.base_dir / "out" / "resend" / run_id,
                        concurrency=concurrency)
    click.echo(orjson.dumps({"event": "resend", **result.summary}).decode())
    return result.exit_code


@main.command(epilog=_examples(['mpetl check --config mpetl.toml --wait-s 300']))
@log_options
@config_option
@click.option("--wait-s", type=Finite(0, 3600), default=120.0, show_default=True,
              help="How long to wait for the canary in the export (intraday tables usually take minutes).")
@click.option("--poll-s", type=Finite(0.1, 600), default=5.0, show_default=True,
              help="Seconds between looks at the export.")
def check(config_path: Path, wait_s: float, poll_s: float) -> int:
    """Send one marked `mpetl_canary` event and wait for it in the export (exit 7 when it does not show).

    Catches what a 2xx cannot: a wrong api_secret or measurement id, or an export that is not linked.
    """
    from etl.canary import run_check

    result = run_check(_load(config_path), wait_s=wait_s, poll_s=poll_s)
    click.echo(result.message, err=not result.found)
    click.echo(orjson.dumps({"event": "canary", "found": result.found, "canary_id": result.canary_id,
                             "http_status": result.http_status, "waited_s": result.waited_s,
                             "export_rows_today": result.export_rows_today}).decode())
    return result.exit_code


@main.command(epilog=_examples(['mpetl sources --config mpetl.toml -n 3']))
@log_options
@config_option
@click.option("-n", "rows", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Mapped events to show per source.")
@now_option
def sources(config_path: Path, rows: int, now: datetime | None) -> int:
    """Preview each source: columns found, the mapping, and the first events exactly as they would be sent.

    The events come out of the real transform, so they carry only allowlisted, scanned params: no raw
    cell of the export (which may hold names or emails) is ever printed. Rows the transform would
    reject show their reasons instead.
    """
    from types import SimpleNamespace

    from etl.destination import max_age_micros
    from etl.extract import preview_source
    from etl.protocol import to_micros
    from etl.transform import TransformOptions, transform_chunk

    config = _load(config_path)
    moment = now or datetime.now(UTC)
    for source in config.sources:
        preview = preview_source(source, n=rows)
        head = preview["head"]
        chunk = SimpleNamespace(source=source.name, path=str(source.path), frame=head, columns=preview["mapping"])
        result = transform_chunk(chunk, TransformOptions(source=source, prop=config.property, window=config.window,
                                                         wall_micros=to_micros(moment),
                                                         extra_params=config.privacy_extra_params,
                                                         locations=config.locations))
        click.echo(orjson.dumps({
            "source": source.name,
            "kind": source.kind,
            "path": str(source.path),
            "columns_found": preview["columns_found"],
            "mapping": preview["mapping"],
            "events": [orjson.loads(e) for e in result.events["event_json"]],
            "rejected_rows": [{"row": int(r), "reasons": [x["validationCode"] + ": " + x["description"] for x in rs]}
                              for r, rs in zip(result.rejects["row"], result.rejects["reasons"], strict=True)],
            # Not conversions (a stage not won, [sources.filter], no consent): not errors, not sent.
            "filtered_rows": [{"row": int(r), "reason": f"{code}: {why}"} for r, code, why in
                              zip(result.filtered["row"], result.filtered["code"], result.filtered["reason"], strict=True)],
            # Too old by the wall clock now: a run would defer them (Data Import), not send them.
            "deferred_rows": [int(r) for r, ts in zip(result.events["row"], result.events["timestamp_micros"], strict=True)
                              if ts < to_micros(datetime.now(UTC)) - max_age_micros(config)],
        }, option=orjson.OPT_INDENT_2, default=str).decode())
    return 0


@main.command()
@log_options
@click.argument("out_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@_out_option("Also write the night's summary to this file (JSON).")
def aggregate(out_dirs: tuple[Path, ...], out_path: Path | None) -> int:
    """One night's summary from its shard runs' --out folders (each holds a summary.json).

    Refuses (exit 2) unless shards 1..N are all there once, each balances, and every row was owned by
    exactly one shard; exits with the worst shard's exit code otherwise.
    """
    from etl.shard import AggregateError
    from etl.shard import aggregate as fold

    summaries, names = [], []
    try:
        for folder in out_dirs:
            path = folder / "summary.json"
            if not path.is_file():
                raise AggregateError(f"{path}: no summary.json (did that shard finish?)")
            try:
                summaries.append(orjson.loads(path.read_bytes()))
            except orjson.JSONDecodeError as exc:
                raise AggregateError(f"{path}: not a summary.json (not JSON: {exc})") from None
            except OSError as exc:
                raise AggregateError(f"{path}: cannot be read ({exc.strerror})") from None
            names.append(str(path))
        night = fold(summaries, names)
    except AggregateError as exc:
        raise CliError(str(exc)) from None
    text = orjson.dumps(night, option=orjson.OPT_INDENT_2)
    if out_path is not None:
        out_path.write_bytes(text)
    click.echo(text.decode())
    return night["exit_code"]


@main.command(epilog=_examples(['mpetl init myjob --kind salesforce --timezone Europe/Berlin --measurement-id G-K7QW2ZP9LM']))
@log_options
@click.argument("folder", type=NonEmptyPath(file_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["csv", "parquet", "salesforce", "hubspot", "shopify", "square", "bigquery"]),
              default="csv", show_default=True, help="The source kind the config is laid out for.")
@click.option("--timezone", default="Europe/London", show_default=True, help="The GA4 property's reporting zone.")
@click.option("--measurement-id", default="G-XXXXXXXXXX", show_default=True, help="Your web stream's id (G-…).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(folder: Path, kind: str, timezone: str, measurement_id: str, force: bool) -> int:
    """Write a commented config for one kind, a crontab line and the Airflow DAG into FOLDER."""
    from pydantic import ValidationError

    from etl.config import PropertyConfig, _message
    from etl.init_files import write_starter

    try:  # the config's own rules, so the file written loads as is
        PropertyConfig(measurement_id=measurement_id, timezone=timezone)
    except ValidationError as exc:
        problem = exc.errors()[0]
        hint = "--measurement-id" if problem["loc"][0] == "measurement_id" else "--timezone"
        raise click.BadParameter(_message(problem), param_hint=hint) from None
    try:
        written = write_starter(folder, kind=kind, timezone=timezone, measurement_id=measurement_id, force=force)
    except FileExistsError as exc:
        raise CliError(f"{exc}: already exists (use --force to overwrite)") from None
    except OSError as exc:
        raise CliError(f"{folder}: cannot write ({exc.strerror})") from None
    for path in written:
        click.echo(f"wrote {path}")
    config = folder.resolve() / "mpetl.toml"
    click.echo(f"next: put your export where the config's path says, set MP_API_SECRET, then "
               f"mpetl validate --config {config}")
    return 0


@main.command()
@log_options
def schema() -> int:
    """Print the JSON Schema of the config file (point your editor's TOML support at it)."""
    from etl.config import json_schema

    click.echo(orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2).decode())
    return 0


main.add_command(collector)


if __name__ == "__main__":
    main()
