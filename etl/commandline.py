"""What every mpetl command line shares (`mpetl …` and `python -m etl.collector`): one error path and
the parameter types.

Why one error path: a scheduler reads the exit code, a person reads one line. A known failure (an
`MpetlError`, a bad argument, a file that cannot be written) leaves as one `mpetl: error: …` line on
stderr with its documented exit code (docs/outputs.md, "Exit codes"), whichever command raised it; anything
else is a bug and keeps its traceback. Commands return their exit code; `main` exits with it.

`log_options` gives every command -q/-v/--log-file, before or after its name.

Why typed parameters: a bad `--now`, `--shard 3/2` or `--wait-s nan` is refused before the command
starts, in the same one line (exit 2), instead of surfacing later as a traceback or a hang.
"""

from __future__ import annotations

import math
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from etl.errors import EXIT_BAD_INPUT, MpetlError, OutputError

# Instants outside these are typos (pandas' nanosecond timestamps end in 2262; nothing here predates 1970).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def echo_error(message: str, **fields: Any) -> None:
    """The one error line on stderr (a multi-line message is folded into one): `mpetl: error: …` on a
    terminal, a JSON log line with level "error" off one (etl/log.py `cli_error`)."""
    from etl import log

    log.cli_error(message, **fields)


def known_failure(exc: BaseException) -> MpetlError | None:
    """The failure a person is told about in one line (with its exit code), or None for a bug.

    One mapping for every front end (the CLI here, the Airflow DAG's tasks): an `MpetlError` as it is, an
    OSError naming a file as the `OutputError` it is (an unwritable --out, a full disk); anything else
    (an OSError naming no file is a network error or a bug) is not ours to word.
    """
    if isinstance(exc, MpetlError):
        return exc
    if isinstance(exc, OSError) and exc.filename is not None:
        return OutputError(exc)
    return None


class CliError(click.ClickException):
    """A known failure as click shows it: one line on stderr (one per problem when a config has
    several), the failure's documented exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.lines = lines or [message]

    @classmethod
    def of(cls, exc: MpetlError) -> CliError:
        return cls(str(exc), exc.exit_code, getattr(exc, "lines", None))

    def show(self, file: Any = None) -> None:
        for line in self.lines:
            echo_error(line, exit_code=self.exit_code)


class _OneLineErrors:
    """For click commands and groups: MpetlError (and an unwritable file) → CliError; every click
    error, usage errors included, shown as one line; the command's return value is the exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except (MpetlError, OSError) as exc:
            known = known_failure(exc)
            if known is None:  # not a file: a bug or a network error, shown as such
                raise
            raise CliError.of(known) from None

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        run = super().main  # type: ignore[misc]
        if not standalone_mode:
            return run(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = run(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            echo_error(exc.format_message() + hint, exit_code=exc.exit_code)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except BrokenPipeError:  # `mpetl … | head`: the reader left; Python's docs' recipe for SIGPIPE
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class Command(_OneLineErrors, click.Command):
    """A click command with mpetl's one error path (used alone by `python -m etl.collector`)."""


class Group(_OneLineErrors, click.Group):
    """`mpetl`: its commands share the error path."""

    command_class = Command


def _set_flag(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """-q/-v/--log-file work before or after the command: each occurrence updates the root's settings."""
    if value:
        ctx.find_root().meta[f"mpetl.{param.name}"] = value
        try:
            apply_logging(ctx)
        except OSError as exc:  # --log-file in a missing or read-only folder
            ctx.find_root().meta.pop("mpetl.log_file", None)
            raise click.BadParameter(f"cannot write {value} ({exc.strerror})", ctx=ctx, param=param) from None


def apply_logging(ctx: click.Context) -> None:
    """Where log lines go, from the -q/-v/--log-file given so far (etl/log.py)."""
    from etl import log

    meta = ctx.find_root().meta
    log.configure(quiet=bool(meta.get("mpetl.quiet")), verbose=bool(meta.get("mpetl.verbose")),
                  log_file=meta.get("mpetl.log_file"))


def log_options(f: Any) -> Any:
    """-v/-q/--log-file on the group and on every command (`mpetl -q run` and `mpetl run -q` both work)."""
    f = click.option("--log-file", type=NonEmptyPath(dir_okay=False, path_type=Path), default=None, expose_value=False,
                     callback=_set_flag, help="Also write the JSON log lines to this file.")(f)
    f = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_flag,
                     help="No log lines; only the final summary and errors.")(f)
    f = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_flag,
                     help="More log lines (one per chunk); on a terminal, log lines appear only with -v.")(f)
    return f


def _shown(value: Any) -> str:
    """A bad argument as quoted in a message: short, whatever was typed."""
    text = repr(str(value))
    return text if len(text) <= 40 else text[:37] + "…'"


class _Moment(click.ParamType):
    """A date or instant typed on the command line, within EARLIEST..LATEST (a typo otherwise)."""

    what = ""
    example = ""

    def parse(self, text: str) -> date:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, date):
            return value
        try:
            moment = self.parse(str(value).strip())
        except ValueError:
            self.fail(f"expected {self.what} such as {self.example}, got {_shown(value)}", param, ctx)
        as_instant = moment if isinstance(moment, datetime) else datetime.combine(moment, datetime.min.time(), UTC)
        if not EARLIEST <= as_instant < LATEST:
            self.fail(f"{_shown(value)} is outside {EARLIEST.year}..{LATEST.year - 1}", param, ctx)
        return moment


class Instant(_Moment):
    """An ISO-8601 instant: `2026-11-21T06:00:00Z`, `2026-11-21T07:00:00+01:00`, or naive (= UTC)."""

    name, what, example = "ISO", "ISO-8601", "2026-11-21T06:00:00Z"

    def parse(self, text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Day(_Moment):
    """A calendar day, `YYYY-MM-DD` (event dates are days in the property's zone)."""

    name, what, example = "DATE", "a date", "2026-11-20"

    def parse(self, text: str) -> date:
        return datetime.strptime(text, "%Y-%m-%d").date()


class ShardSpec(click.ParamType):
    """`K/N`: shard K of N, 1 ≤ K ≤ N ≤ 1024; converted to `etl.shard.Shard`."""

    name = "K/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from etl.shard import Shard  # here: the shard module brings pandas, which `--help` must not pay for

        if isinstance(value, Shard):
            return value
        try:
            return Shard.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Finite(click.FloatRange):
    """A float in a range that is a number: `nan` passes click's range checks, and would hang a wait."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{_shown(value)} is not a finite number", param, ctx)
        return number


class NonEmptyPath(click.Path):
    """A path that is not empty: `--out ""` would otherwise mean the current folder."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("is empty: name a file or folder", param, ctx)
        return super().convert(value, param, ctx)


INSTANT = Instant()
DAY = Day()
SHARD = ShardSpec()
