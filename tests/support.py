"""Helpers shared by tests: write configs derived from the samples config, scan files for secrets."""

from __future__ import annotations

import tomllib
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
    """A child process whose wall clock starts at `at` (libfaketime), as the README says to simulate a night.

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
