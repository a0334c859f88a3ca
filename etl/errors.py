"""Exceptions that carry the exit code a scheduler should see.

Exit codes are part of the tool's contract with cron and Airflow (docs/outputs.md, "Exit codes"):
0 ok, 2 bad input or config (also a ledger that cannot be used: damaged, an unknown schema, its
server unreachable), 3 not reconciled, 4 send failures remain (or events expired into deferred.csv),
5 another run holds the ledger, 6 the export cannot judge (absent, paused or capped), 7 the canary
(`mpetl check`) was not found, 8 the run stopped early (its deadline, or SIGTERM/SIGINT): what was
not sent stays pending for the next run.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NOT_RECONCILED = 3
EXIT_SEND_FAILURES = 4
EXIT_LOCKED = 5
EXIT_EXPORT_UNAVAILABLE = 6
EXIT_CANARY_NOT_FOUND = 7
EXIT_STOPPED = 8


class MpetlError(Exception):
    """Base class: an error the CLI reports in one line, with an exit code, and no traceback."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(MpetlError):
    """A config problem, named by file, key and what was expected."""

    def __init__(self, file: str, key: str, expected: str) -> None:
        self.file, self.key, self.expected = file, key, expected
        super().__init__(f"{file}: [{key}] {expected}")


class ConfigProblems(ConfigError):
    """Every problem of a config file at once, one line each (`file: [key] expected`), so a person fixes them
    all in one go instead of one per run; `lines` is what the CLI prints, exit 2 like any config error."""

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(file, *problems[0])
        self.problems = problems
        self.lines = [f"{file}: [{key}] {expected}" for key, expected in problems]
        self.args = ("\n".join(self.lines),)

    def __str__(self) -> str:
        return self.args[0]


class SourceError(MpetlError):
    """A structural problem in an input file: names the file, the row and the column.

    Raised for what makes a whole source unreadable (missing required column, undecodable bytes,
    malformed quoting). A bad cell is not a SourceError: the transform rejects only that row.
    `row` is the 1-based data row (header excluded), or None when the problem is the header/file.
    The message must never contain a cell's value (it could be personal data).
    """

    def __init__(self, path: str, row: int | None, column: str | None, message: str) -> None:
        self.path, self.row, self.column, self.message = path, row, column, message
        where = path
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


class LedgerLockedError(MpetlError):
    """Another run holds the ledger: two runs on one ledger could double-send."""

    exit_code = EXIT_LOCKED


class LedgerError(MpetlError):
    """The ledger cannot be used (a directory, damaged, unreadable, an unknown schema, its PostgreSQL server
    unreachable or lost mid-run, a refused transition): one line, exit 2. The backends raise it and its
    subclasses (etl/load/ledger/errors.py) for every sqlite3/psycopg error."""


class OutputError(MpetlError):
    """A file or folder the run must write cannot be written (an unwritable --out, a full disk)."""

    def __init__(self, exc: OSError) -> None:
        where = exc.filename or "output"
        super().__init__(f"{where}: cannot write ({exc.strerror or type(exc).__name__}); choose a writable --out folder")
