"""Log lines through stdlib `logging`: JSON lines for cron and Airflow, quiet on a terminal.

Why this shape: a scheduler's log is read by machines (one JSON object per line on stderr:
``{"ts", "level", "event", …fields}``; `level` is debug, info, warning or error, so a log shipper can
alert on errors without knowing mpetl's event names); a person at a terminal wants the progress bar and
the table, so there log lines appear only with ``-v`` (readable, not JSON). ``--log-file`` adds JSON
lines to a file whatever the terminal. Callers keep the small API (`emit`, `detail`, `warn`, `error`);
the logger is ``mpetl``, so an embedding program (Airflow) can route it like any other.

The CLI's error line (`cli_error`) follows the same rule: `mpetl: error: …` for a person at a terminal,
a JSON line with level "error" off one (cron, Airflow, a pipe), whatever -q says.

Nothing personal and no secret is ever passed here: callers log counts, names of columns and
detectors, file paths and run ids only.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson

LOGGER = logging.getLogger("mpetl")
LOGGER.propagate = False


class JsonLines(logging.Formatter):
    """`{"ts": "...Z", "level": "info", "event": name, **fields}`: the format cron and Airflow users grep."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        return orjson.dumps({"ts": ts, "level": record.levelname.lower(), "event": record.getMessage(),
                             **getattr(record, "fields", {})}, default=str).decode()


class Readable(logging.Formatter):
    """`12:03:11 source_planned source=crm rows_in=30`: for a person at a terminal (-v); warnings and
    errors say so (`12:03:11 WARNING api_secret_file_readable …`)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        level = f"{record.levelname} " if record.levelno >= logging.WARNING else ""
        return f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {level}{record.getMessage()} {fields}".rstrip()


class _Stderr(logging.StreamHandler):
    """Whatever sys.stderr is when a line is written (a test's capture, a redirect), as print would."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(*, quiet: bool = False, verbose: bool = False, tty: bool | None = None, log_file: Path | None = None) -> None:
    """Set where log lines go. -q: none; default: JSON on stderr unless stderr is a terminal; -v: also details."""
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
        handler.close()
    tty = sys.stderr.isatty() if tty is None else tty
    LOGGER.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not quiet and (verbose or not tty):
        stream = _Stderr()
        stream.setFormatter(Readable() if tty else JsonLines())
        LOGGER.addHandler(stream)
    if log_file is not None:
        file = logging.FileHandler(log_file, encoding="utf-8")
        file.setFormatter(JsonLines())
        LOGGER.addHandler(file)
    if not LOGGER.handlers:
        LOGGER.addHandler(logging.NullHandler())


def detail(event: str, **fields: Any) -> None:
    """A line only `-v` wants: one per chunk, say."""
    LOGGER.debug(event, extra={"fields": fields})


def emit(event: str, **fields: Any) -> None:
    LOGGER.info(event, extra={"fields": fields})


def warn(event: str, **fields: Any) -> None:
    LOGGER.warning(event, extra={"fields": fields})


def error(event: str, **fields: Any) -> None:
    LOGGER.error(event, extra={"fields": fields})


def cli_error(message: str, **fields: Any) -> None:
    """The CLI's one error line on stderr, shown whatever -q says: `mpetl: error: …` on a terminal, else
    `{"ts", "level": "error", "event": "error", "message", …fields}`; also into --log-file."""
    text = " ".join(str(message).split())
    record = LOGGER.makeRecord(LOGGER.name, logging.ERROR, __file__, 0, "error", (), None,
                               extra={"fields": {"message": text, **fields}})
    stream = sys.stderr
    stream.write(f"mpetl: error: {text}\n" if stream.isatty() else JsonLines().format(record) + "\n")
    stream.flush()
    for handler in LOGGER.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


# Used as a library (Airflow tasks, tests) without the CLI: JSON lines on stderr, as before.
configure(tty=False)

