"""Start-up: a cron run pays only for what it uses (issue 16).

Reconciliation's duckdb, matplotlib and the BigQuery client cost most of a second to import; a nightly
dry run or send of a small file must not load them, and neither must `import etl.cli` (every command,
`--help` included). Each check runs in a fresh interpreter and reads its `sys.modules`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support import REPO, SAMPLES_NOW, dump_toml, samples_config

RECONCILE_ONLY = ("duckdb", "matplotlib", "google.cloud")

PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules))))
sys.argv = ["mpetl", *sys.argv[1:]]
from etl.cli import main
main()
"""


def _loaded(modules: list[str]) -> list[str]:
    return [h for h in RECONCILE_ONLY if any(m == h or m.startswith(h + ".") for m in modules)]


def _modules_after(*cli_args: str) -> tuple[list[str], subprocess.CompletedProcess]:
    result = subprocess.run([sys.executable, "-c", PROBE, *cli_args], cwd=REPO, capture_output=True, text=True,
                            timeout=240)
    line = next(x for x in result.stdout.splitlines() if x.startswith("MODULES "))
    return json.loads(line.removeprefix("MODULES ")), result


def test_importing_the_cli_loads_no_reconciliation_module():
    result = subprocess.run([sys.executable, "-c", "import json, sys, etl.cli; print(json.dumps(sorted(sys.modules)))"],
                            cwd=REPO, capture_output=True, text=True, check=True)
    modules = json.loads(result.stdout)
    assert "etl.cli" in modules
    assert _loaded(modules) == []
    # The pipeline (pandas, pyarrow) loads only when a command needs it, so `--help` answers at once.
    assert "pandas" not in modules and "etl.pipeline" not in modules


def _small_recent_source(tmp_path: Path, endpoint: str | None = None) -> Path:
    """A cron-sized file of conversions from the last hours (GA4's window runs on the wall clock)."""
    now = datetime.now(UTC).replace(microsecond=0)
    lines = ["Order ID,Closed At,Amount,Currency,GA Client"]
    lines += [f"T{i},{(now - timedelta(hours=2, minutes=i)).strftime('%Y-%m-%d %H:%M:%S')},{10 + i}.50,EUR,"
              f"GA1.1.{1000 + i}.1763000000" for i in range(20)]
    source = tmp_path / "orders.csv"
    source.write_text("\n".join(lines) + "\n")
    config = tmp_path / "small.toml"
    config.write_text(dump_toml({
        "property": {"measurement_id": "G-K7QW2ZP9LM", "timezone": "Europe/London"},
        **({"destination": {"endpoint": endpoint}} if endpoint else {}),
        "ledger": {"path": str(tmp_path / "ledger.sqlite")},
        "sources": [{"name": "orders", "kind": "csv", "path": str(source), "timezone": "UTC",
                     "consent_default": "grant",
                     "columns": {"transaction_id": "Order ID", "timestamp": "Closed At", "value": "Amount",
                                 "currency": "Currency", "client_id": "GA Client"}}],
    }))
    return config


def test_a_dry_run_loads_no_reconciliation_module(tmp_path):
    config = _small_recent_source(tmp_path)
    out = tmp_path / "out"
    modules, result = _modules_after("-q", "run", "--config", str(config), "--out", str(out), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert len((out / "requests.ndjson").read_text().splitlines()) == 20  # it did build every request
    assert "etl.pipeline" in modules
    assert _loaded(modules) == []
    assert "pyarrow.parquet" not in modules  # only Parquet sources need it
    assert "httpx" not in modules and "rich" not in modules  # no HTTP client (or its CLI's rich) for a dry run


# What a send of a CSV to the MP endpoint has no use for: reconciliation and reporting (duckdb, matplotlib,
# BigQuery, Jinja2, notebooks), the Data Manager path and its OAuth stack (google-auth, cryptography,
# requests), httpx's own command-line client (rich, pygments), and Arrow's query engine (acero, dataset:
# a group-by in the accounting once loaded them). Each is start-up time a cron run pays from exec to exit.
NOT_FOR_A_SEND = ("duckdb", "matplotlib", "google", "jinja2", "nbformat", "papermill", "cryptography", "requests",
                  "rich", "pygments", "pyarrow.acero", "pyarrow.dataset", "pyarrow.parquet", "etl.reconcile",
                  "etl.load.datamanager", "babel")


def _among(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [h for h in names if any(m == h or m.startswith(h + ".") for m in modules)]


def test_a_send_to_the_endpoint_loads_only_what_sending_needs(tmp_path):
    from etl.collector import spawn_collector

    with spawn_collector(tmp_path / "store", measurement_id="G-K7QW2ZP9LM", api_secret="s3cr3t-imports") as server:
        config = _small_recent_source(tmp_path, endpoint=server.url)
        result = subprocess.run([sys.executable, "-c", PROBE, "-q", "run", "--config", str(config), "--out",
                                 str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=240,
                                env={**os.environ, "MP_API_SECRET": "s3cr3t-imports"})
        stored = server.stats()["events_stored"]
    assert result.returncode == 0, result.stderr
    assert stored == 20  # it did send every event
    modules = json.loads(next(x for x in result.stdout.splitlines() if x.startswith("MODULES ")).removeprefix("MODULES "))
    assert "httpx" in modules
    assert _among(modules, NOT_FOR_A_SEND) == []


def test_the_probe_sees_reconciliation_imports_when_they_happen(tmp_path):
    """The check above can fail: `reconcile` does load duckdb and matplotlib, and the probe sees it."""
    config = samples_config(tmp_path, endpoint="local")
    modules, _ = _modules_after("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"),
                                "--since", "2026-11-17", "--until", "2026-11-21", "--now", SAMPLES_NOW)
    assert "duckdb" in _loaded(modules)
