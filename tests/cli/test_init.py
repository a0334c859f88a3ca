"""`mpetl init`: a starter config per kind that loads as written, a crontab line, the DAG."""

from __future__ import annotations

import ast
import json

import pytest

from etl.config import load_config
from tests.cli.common import NOW


@pytest.mark.parametrize("kind", ["csv", "parquet", "salesforce", "hubspot", "shopify", "square", "bigquery"])
def test_init_writes_a_config_that_loads_for_each_kind(run_mpetl, tmp_path, kind):
    result = run_mpetl("init", str(tmp_path / "job"), "--kind", kind, "--timezone", "America/New_York")
    assert result.returncode == 0, result.stderr
    config = load_config(tmp_path / "job" / "mpetl.toml")
    assert (tmp_path / "job" / "mpetl.toml").read_text().startswith("#:schema ./mpetl.schema.json\n")
    assert "SourceConfig" in json.loads((tmp_path / "job" / "mpetl.schema.json").read_text())["$defs"]
    assert config.sources[0].kind == kind and config.property.timezone == "America/New_York"
    cron = (tmp_path / "job" / "crontab.txt").read_text()
    assert "CRON_TZ=America/New_York" in cron and f"nightly --config {tmp_path / 'job' / 'mpetl.toml'}" in cron
    dag = (tmp_path / "job" / "offline_conversions_dag.py").read_text()
    ast.parse(dag)
    assert f"DEFAULT_CONFIG = Path({str(tmp_path / 'job' / 'mpetl.toml')!r})" in dag


def test_init_then_validate_names_the_missing_export_and_refuses_to_overwrite(run_mpetl, tmp_path):
    assert run_mpetl("init", str(tmp_path)).returncode == 0
    check = run_mpetl("-q", "validate", "--config", str(tmp_path / "mpetl.toml"), "--now", NOW)
    assert check.returncode == 2 and "closed_deals.csv" in check.stderr and "file not found" in check.stderr
    again = run_mpetl("init", str(tmp_path))
    assert again.returncode == 2 and "--force" in again.stderr
    assert run_mpetl("init", str(tmp_path), "--force", "--kind", "hubspot").returncode == 0
    assert 'kind = "hubspot"' in (tmp_path / "mpetl.toml").read_text()


def test_the_csv_templates_first_real_run_sends_the_rows_that_consent(run_mpetl, tmp_path):
    """The csv template maps consent: an export with that column is not rejected wholesale under "deny"."""
    assert run_mpetl("init", str(tmp_path), "--timezone", "Europe/London").returncode == 0
    (tmp_path / "data" / "closed_deals.csv").write_text(
        "GA Client ID,Close Date,Deal ID,Amount,Currency,Analytics Consent\n"
        "GA1.1.1111.1700000000,2026-11-20 10:00,D-1,10.00,EUR,yes\n"
        "GA1.1.2222.1700000000,2026-11-20 11:00,D-2,20.00,EUR,no\n"
        "GA1.1.3333.1700000000,2026-11-20 12:00,D-3,30.00,EUR,\n")
    check = run_mpetl("-q", "validate", "--config", str(tmp_path / "mpetl.toml"), "--now", NOW)
    assert check.returncode == 0, check.stderr
    totals = json.loads(check.stdout.splitlines()[-1])
    assert (totals["would_send"], totals["filtered"], totals["rejected"]) == (1, 2, 0)
    filtered = [json.loads(x) for x in check.stdout.splitlines() if '"filtered":true' in x]
    assert sorted(f["validationCode"] for f in filtered) == ["CONSENT_DENIED", "NO_CONSENT"]


def test_init_writes_the_notebook_too(run_mpetl, tmp_path):
    assert run_mpetl("init", str(tmp_path)).returncode == 0
    notebook = json.loads((tmp_path / "reconciliation.ipynb").read_text())
    assert any("parameters" in c["metadata"].get("tags", []) for c in notebook["cells"])
