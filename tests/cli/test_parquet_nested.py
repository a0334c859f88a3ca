"""A mapped Parquet list/struct column: JSON text (items work), a reject for a scalar field, never a traceback."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tests.cli.common import NOW


def _config(tmp_path, amount_column: str):
    pq.write_table(pa.table({
        "cookie": ["GA1.1.111.222", "GA1.1.111.223"],
        "closed": ["2026-11-20 10:00:00", "2026-11-20 11:00:00"],
        "deal": ["D1", "D2"],
        "amount": [10.5, 20.0],
        "amounts": [[1, 2], [3]],
        "basket": [[{"item_id": "SKU1", "price": 10.5, "quantity": 1}], [{"item_id": "SKU2", "price": 20.0, "quantity": 1}]],
    }), tmp_path / "deals.parquet")
    path = tmp_path / "mpetl.toml"
    path.write_text(
        '[property]\nmeasurement_id = "G-ABC123"\ntimezone = "UTC"\n'
        f'[ledger]\npath = "{tmp_path / "ledger.sqlite"}"\n'
        '[[sources]]\nname = "pq"\nkind = "parquet"\npath = "deals.parquet"\nconsent_default = "grant"\n'
        'options = { currency = "EUR" }\n'
        f'[sources.columns]\nclient_id = "cookie"\ntimestamp = "closed"\ntransaction_id = "deal"\nvalue = "{amount_column}"\n'
        'items = "basket"\n'
    )
    return path


def test_a_list_of_structs_is_read_as_items(run_mpetl, tmp_path):
    out = tmp_path / "out"
    result = run_mpetl("-q", "run", "--dry-run", "--config", str(_config(tmp_path, "amount")), "--out", str(out), "--now", NOW)
    assert result.returncode == 0, result.stderr
    bodies = [orjson.loads(line) for line in (out / "requests.ndjson").read_bytes().splitlines()]
    items = [e["params"]["items"] for b in bodies for e in b["events"]]
    assert sorted(i[0]["item_id"] for i in items) == ["SKU1", "SKU2"]


def test_a_list_mapped_to_a_number_is_a_reject_not_a_traceback(run_mpetl, tmp_path):
    result = run_mpetl("-q", "validate", "--config", str(_config(tmp_path, "amounts")), "--now", NOW)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2 and "column 'amounts' is not a number" in result.stderr
