"""`[sources.filter]`: rows outside the allowed values are filtered (not rejected), by column, and counted."""

from __future__ import annotations

import orjson

from tests.cli.common import NOW


def test_filter_rejects_other_rows_naming_the_column_not_the_value(run_mpetl, tmp_path):
    (tmp_path / "deals.csv").write_text(
        "cookie,closed,deal,amount,cur,Stage\n"
        "GA1.1.111.222,2026-11-20 10:00:00,D1,10,EUR,Closed Won\n"
        "GA1.1.111.223,2026-11-20 10:00:00,D2,10,EUR,  closed won \n"
        "GA1.1.111.224,2026-11-20 10:00:00,D3,10,EUR,Closed Lost\n"
        "GA1.1.111.225,2026-11-20 10:00:00,D4,10,EUR,\n"
    )
    (tmp_path / "mpetl.toml").write_text(
        '[property]\nmeasurement_id = "G-ABC123"\ntimezone = "UTC"\n'
        f'[ledger]\npath = "{tmp_path / "ledger.sqlite"}"\n'
        '[[sources]]\nname = "crm"\npath = "deals.csv"\nconsent_default = "grant"\n'
        '[sources.columns]\nclient_id = "cookie"\ntimestamp = "closed"\ntransaction_id = "deal"\nvalue = "amount"\n'
        'currency = "cur"\n[sources.filter]\nStage = ["Closed Won"]\n'
    )
    out = tmp_path / "out"
    result = run_mpetl("-q", "run", "--config", str(tmp_path / "mpetl.toml"), "--out", str(out), "--dry-run", "--now", NOW)
    assert result.returncode == 0, result.stderr
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert (summary["rows_in"], summary["would_send"], summary["filtered"], summary["rejected"]) == (4, 2, 2, 0)
    crm = summary["sources"]["crm"]
    assert crm["filtered_codes"] == {"FILTERED": 2} and crm["reject_codes"] == {}
    assert crm["filtered_reasons"] == [{"code": "FILTERED", "rows": 2, "reason":
                                        "column 'Stage' is not one of the allowed values ('Closed Won') in [sources.filter]"}]
    # Filtered rows are not errors: rejects.ndjson stays empty; no cell value anywhere.
    assert (out / "rejects.ndjson").read_bytes() == b""
    assert "Closed Lost" not in (out / "summary.json").read_text()


def test_a_missing_filter_column_is_a_source_error(run_mpetl, tmp_path):
    (tmp_path / "deals.csv").write_text("cookie,closed,deal\nGA1.1.1.2,2026-11-20,D1\n")
    (tmp_path / "mpetl.toml").write_text(
        '[property]\nmeasurement_id = "G-ABC123"\ntimezone = "UTC"\n'
        f'[ledger]\npath = "{tmp_path / "ledger.sqlite"}"\n'
        '[[sources]]\nname = "crm"\npath = "deals.csv"\n'
        '[sources.columns]\nclient_id = "cookie"\ntimestamp = "closed"\ntransaction_id = "deal"\n'
        '[sources.filter]\nStage = "Closed Won"\n'
    )
    result = run_mpetl("validate", "--config", str(tmp_path / "mpetl.toml"), "--now", NOW)
    assert result.returncode == 2
    assert "Stage" in result.stderr
