"""A small CRM export and config for CLI tests, and a way to run `mpetl` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO, pinned_clock_env

NOW = "2026-11-21T06:00:00Z"

DEALS = (
    "cookie,closed,deal,amount,cur,Stage\n"
    "GA1.1.111.222,2026-11-20 10:00:00,D1,10,EUR,Closed Won\n"
    "GA1.1.111.223,2026-11-20 11:00:00,D2,12.5,EUR,Closed Won\n"
    "GA1.1.111.224,2026-11-20 12:00:00,D3,10,EUR,Closed Lost\n"
)

COLUMNS = ('[sources.columns]\nclient_id = "cookie"\ntimestamp = "closed"\ntransaction_id = "deal"\n'
           'value = "amount"\ncurrency = "cur"\n')


def crm_config(tmp_path: Path, *, columns: str = COLUMNS, extra_sources: str = "", deals: str = DEALS) -> Path:
    (tmp_path / "deals.csv").write_text(deals)
    path = tmp_path / "mpetl.toml"
    path.write_text(
        '[property]\nmeasurement_id = "G-ABC123"\ntimezone = "UTC"\n'
        f'[ledger]\npath = "{tmp_path / "state" / "ledger.sqlite"}"\n'
        '[destination]\nendpoint = "local"\n'
        f'[reconcile]\nstore = "{tmp_path / "state" / "collector"}"\nprovisional_hours = 0\n'
        '[[sources]]\nname = "crm"\npath = "deals.csv"\nconsent_default = "grant"\n' + columns + extra_sources
    )
    return path


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The night of NOW for the child's wall clock (libfaketime): event ages are the wall clock's, as Google's."""
    return pinned_clock_env({**os.environ, "MP_API_SECRET": "cli-test-secret", **(env or {})}, at=NOW)


def mpetl(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full_env = cli_env(env)
    return subprocess.run([sys.executable, "-m", "etl.cli", *args], capture_output=True, text=True, timeout=180,
                          env=full_env, cwd=cwd)
