"""Helpers shared by tests: write configs derived from the samples config, scan files for secrets, run
`mpetl` as a user would (`MpetlRunner`, the `run_mpetl` fixture of tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES_CONFIG = REPO / "jobs" / "configs" / "samples.toml"
SAMPLES_NOW = "2026-11-21T06:00:00Z"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _value(k)


def dump_toml(data: dict[str, Any]) -> str:
    """Enough TOML for our configs: scalars, lists, tables, arrays of tables (sub-tables inline)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict | list) or
             (isinstance(v, list) and not (v and isinstance(v[0], dict)))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"\n[{_key(k)}]")
            lines += [f"{_key(a)} = {_value(b)}" for a, b in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for table in v:
                lines.append(f"\n[[{_key(k)}]]")
                lines += [f"{_key(a)} = {_value(b)}" for a, b in table.items()]
    return "\n".join(lines) + "\n"


class LedgerBackend:
    """Which ledger the configs written by `samples_config` use: a SQLite file (default) or, while the
    `ledger_backend` fixture runs a test on PostgreSQL, a fresh database per state folder."""

    admin_url: str | None = None  # set: PostgreSQL; the server's admin URL (tests/conftest.py)
    _urls: dict[str, str] = {}

    @classmethod
    def location(cls, tmp_path: Path) -> Path | str:
        if cls.admin_url is None:
            return tmp_path / "state" / "ledger.sqlite"
        if str(tmp_path) not in cls._urls:
            from tests.pgserver import create_database

            cls._urls[str(tmp_path)] = create_database(cls.admin_url)
        return cls._urls[str(tmp_path)]


def ledger_location(tmp_path: Path) -> Path | str:
    """The ledger of the configs written for tmp_path: its SQLite file or its PostgreSQL URL."""
    return LedgerBackend.location(tmp_path)


def samples_config(tmp_path: Path, *, endpoint: str, store: Path | None = None, **overrides: Any) -> Path:
    """A copy of the samples config with state (ledger, store) under tmp_path and the given endpoint."""
    data = tomllib.loads(SAMPLES_CONFIG.read_text())
    data["base_dir"] = str(REPO)
    data["destination"] = {**data.get("destination", {}), "endpoint": endpoint, "backoff_base_s": 0.05,
                           "backoff_max_s": 1.0}
    location = ledger_location(tmp_path)
    data["ledger"] = {"path": str(location)} if isinstance(location, Path) else {"url": location}
    data["reconcile"] = {**data.get("reconcile", {}), "store": str(store or tmp_path / "state" / "collector")}
    for section, values in overrides.items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(data))
    return path


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under root whose bytes contain needle (text or binary, e.g. SQLite pages)."""
    raw = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and raw in p.read_bytes()]


FAKETIME_LIB = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))),
                    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"))


def pinned_clock_env(env: dict[str, str] | None = None, at: str = SAMPLES_NOW) -> dict[str, str]:
    """A child process whose wall clock starts at `at` (libfaketime), as docs/ledger.md says to simulate a night.

    `--now` only selects rows; the age of an event is always the wall clock's, as it is Google's, so a
    test about a past night pins the process clock, not a flag. .ci/run installs Debian's faketime.
    """
    import os

    if not FAKETIME_LIB.exists():
        raise RuntimeError(f"{FAKETIME_LIB} is missing: apt-get install faketime (make test does)")
    out = dict(os.environ if env is None else env)
    stamp = at.replace("T", " ").replace("Z", "")
    out.update({"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": f"@{stamp}", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_NO_CACHE": "1", "TZ": "UTC"})
    return out


MPETL = [sys.executable, "-m", "etl.cli"]  # the command a subprocess test starts


def mpetl_env(env: Mapping[str, str | None] | None = None, *, clock: str | None = None) -> dict[str, str]:
    """An mpetl child's environment: this process's plus `env` (None removes a variable), this checkout
    on PYTHONPATH, and with `clock` its wall clock starting there (libfaketime)."""
    out = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), out.get("PYTHONPATH", "")) if p)
    return pinned_clock_env(out, at=clock) if clock else out


class MpetlRunner:
    """`mpetl ARGS…` as a user runs it: exit code, stdout and stderr as a `subprocess.CompletedProcess`.

    In process (click's CliRunner) by default, which spares each call starting Python and importing
    pandas and the pipeline (a CLI test took 3–6 s); `clock` then pins the wall clock with
    time-machine, as libfaketime pins a child's. `process=True` starts a real `python -m etl.cli`
    for what only a process shows: a terminal, signals, kill -9, a second process on the same ledger.
    A bug (any exception but the CLI's own exit) fails the test with its traceback. `using(…)` gives a
    runner whose calls default to that environment and clock (a test folder's secret and night).
    """

    def __init__(self, env: Mapping[str, str | None] | None = None, clock: str | None = None) -> None:
        self.env, self.clock = dict(env or {}), clock

    def using(self, *, env: Mapping[str, str | None] | None = None, clock: str | None = None) -> MpetlRunner:
        return MpetlRunner({**self.env, **(env or {})}, clock or self.clock)

    def __call__(self, *args: str, env: Mapping[str, str | None] | None = None, clock: str | None = None,
                 process: bool = False, cwd: Path = REPO, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        env, clock = {**self.env, **(env or {})}, clock or self.clock
        if process:
            return subprocess.run([*MPETL, *args], capture_output=True, text=True, errors="replace",
                                  env=mpetl_env(env, clock=clock), cwd=cwd, timeout=timeout)
        return self._in_process(list(args), env, clock, cwd)

    def popen(self, *args: str, env: Mapping[str, str | None] | None = None, clock: str | None = None,
              **popen: Any) -> subprocess.Popen:
        """A running `python -m etl.cli ARGS…` (stdout and stderr piped unless given)."""
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen([*MPETL, *args], env=mpetl_env({**self.env, **(env or {})}, clock=clock or self.clock),
                                cwd=popen.pop("cwd", REPO), **popen)

    @staticmethod
    def _in_process(args: list[str], env: Mapping[str, str | None], clock: str | None,
                    cwd: Path) -> subprocess.CompletedProcess[str]:
        import time_machine
        from click.testing import CliRunner

        from etl import log
        from etl.cli import main

        travel = time_machine.travel(clock.replace("Z", "+00:00"), tick=True) if clock else contextlib.nullcontext()
        here = os.getcwd()
        try:
            os.chdir(cwd)
            with travel:
                result = CliRunner().invoke(main, args, env=dict(env), catch_exceptions=False, prog_name="mpetl")
        finally:
            os.chdir(here)
            log.configure(tty=False)  # as a library again: the next test's log lines go to stderr as JSON
        return subprocess.CompletedProcess(["mpetl", *args], result.exit_code, result.stdout, result.stderr)


NOTEBOOK = REPO / "notebooks" / "reconciliation.ipynb"


def run_notebook(workdir: Path, **parameters: Any) -> str:
    """The reconciliation notebook executed by papermill with these parameters, as `papermill … -p RUN_DIR …`
    runs it; returns the text of every output (a failing cell raises papermill's PapermillExecutionError)."""
    import json

    import nbformat
    import papermill

    executed = workdir / "reconciliation-report.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(executed), parameters=parameters, kernel_name="python3",
                               cwd=str(workdir), progress_bar=False, execution_timeout=120)
    nb = nbformat.read(executed, as_version=4)
    return "".join(o.get("text", "") + json.dumps(o.get("data", {})) for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


def cli_errors(stderr: str) -> list[str]:
    """The messages of the CLI's error lines in `stderr`: JSON lines with level and event "error" (off a
    terminal, as tests run it) or `mpetl: error: …` lines (on one). Log lines of other levels are skipped."""
    import json

    out = []
    for line in stderr.splitlines():
        if line.startswith("mpetl: error: "):
            out.append(line.removeprefix("mpetl: error: "))
        elif line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("level") == "error" and record.get("event") == "error":
                out.append(record["message"])
    return out


def timed_when_first_seen(sent: Any) -> Any:
    """Of `Ledger.for_reconcile`'s sent events, the mask of those timed at their send (within a minute):
    refunds the export gives no time are timed when a run first sees them (issue 21), whatever night's
    orders they came with. Asserts that only refunds are."""
    at_send = (sent["sent_at_micros"] - sent["timestamp_micros"]).abs() < 60_000_000
    assert set(sent.loc[at_send, "event_name"]) <= {"refund"}
    return at_send
