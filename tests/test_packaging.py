"""`pip install .` gives a working `mpetl`: the wheel carries the DAG, the notebook and the report template.

Why a real wheel: in a checkout `mpetl init` and the HTML report read files beside the code, so a test run
from the checkout cannot tell whether they were packaged (`pip install .` once gave an `mpetl init` that
could not write the DAG). The wheel is built from this checkout, installed into a fresh virtualenv with
--no-deps, and run there; its dependencies come from this test's environment on PYTHONPATH (installing
pandas, pyarrow and the rest again would cost minutes and test pip, not mpetl).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (path,) = out.glob("mpetl-*.whl")
    return path


def test_the_wheel_holds_the_dag_the_notebook_and_the_report_template_as_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dag = archive.read("etl/templates/offline_conversions_dag.py").decode()
    assert {"etl/templates/offline_conversions_dag.py", "etl/templates/reconciliation.ipynb",
            "etl/reconcile/templates/reconciliation.html.j2"} <= names
    assert dag == (REPO / "jobs" / "airflow" / "offline_conversions_dag.py").read_text()  # a copy, not a link


def test_mpetl_init_from_a_wheel_install_writes_the_dag(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}  # the dependencies, not this checkout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import etl; print(etl.__file__)"], env=env,
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr  # the installed copy runs
    job = tmp_path / "job"
    init = subprocess.run([str(venv / "bin" / "mpetl"), "init", str(job)], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert init.returncode == 0, init.stderr
    dag = (job / "offline_conversions_dag.py").read_text()
    ast.parse(dag)
    assert f"DEFAULT_CONFIG = Path({str(job / 'mpetl.toml')!r})" in dag
    notebook = json.loads((job / "reconciliation.ipynb").read_text())
    assert any("parameters" in c["metadata"].get("tags", []) for c in notebook["cells"])
    for name in ("mpetl.toml", "mpetl.schema.json", "crontab.txt"):
        assert (job / name).is_file()
