"""Start-up: a cron run pays only for what it uses (issue 16).

Reconciliation's duckdb, matplotlib and the BigQuery client cost most of a second to import; a nightly
dry run or send of a small file must not load them, and neither must `import etl.cli` (every command,
`--help` included). Each check runs in a fresh interpreter and reads its `sys.modules`.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO, SAMPLES_NOW, samples_config

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


def test_a_dry_run_loads_no_reconciliation_module(tmp_path):
    config = samples_config(tmp_path, endpoint="local")
    out = tmp_path / "out"
    modules, result = _modules_after("-q", "run", "--config", str(config), "--out", str(out), "--dry-run",
                                     "--now", SAMPLES_NOW)
    assert result.returncode == 0, result.stderr
    assert (out / "requests.ndjson").stat().st_size > 0  # it did build the requests
    assert "etl.pipeline" in modules
    assert _loaded(modules) == []


def test_the_probe_sees_reconciliation_imports_when_they_happen(tmp_path):
    """The check above can fail: `reconcile` does load duckdb and matplotlib, and the probe sees it."""
    config = samples_config(tmp_path, endpoint="local")
    modules, _ = _modules_after("-q", "reconcile", "--config", str(config), "--out", str(tmp_path / "rec"),
                                "--since", "2026-11-17", "--until", "2026-11-21", "--now", SAMPLES_NOW)
    assert "duckdb" in _loaded(modules)
