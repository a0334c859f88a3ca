"""A small CRM export and config for CLI tests (tests/cli/conftest.py sets their secret and night)."""

from __future__ import annotations

from pathlib import Path

NOW = "2026-11-21T06:00:00Z"
SECRET = "cli-test-secret"

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
