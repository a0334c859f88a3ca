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


def samples_config(tmp_path: Path, *, endpoint: str, store: Path | None = None, **overrides: Any) -> Path:
    """A copy of the samples config with state (ledger, store) under tmp_path and the given endpoint."""
    data = tomllib.loads(SAMPLES_CONFIG.read_text())
    data["base_dir"] = str(REPO)
    data["destination"] = {**data.get("destination", {}), "endpoint": endpoint, "backoff_base_s": 0.05,
                           "backoff_max_s": 1.0}
    data["ledger"] = {"path": str(tmp_path / "state" / "ledger.sqlite")}
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


FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def pinned_clock_env(env: dict[str, str] | None = None, at: str = SAMPLES_NOW) -> dict[str, str]:
    """A child process whose wall clock starts at `at` (libfaketime), as the README says to simulate a night.

    `--now` only selects rows; the age of an event is always the wall clock's, as it is Google's, so a
    test about a past night pins the process clock, not a flag. .ci/run installs Debian's faketime.
    """
    import os

    if not FAKETIME_LIB.exists():
        raise RuntimeError(f"{FAKETIME_LIB} is missing: apt-get install faketime (.ci/run does)")
    out = dict(os.environ if env is None else env)
    stamp = at.replace("T", " ").replace("Z", "")
    out.update({"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": f"@{stamp}", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_NO_CACHE": "1", "TZ": "UTC"})
    return out
