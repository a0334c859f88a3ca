"""`make run` installs only what a run needs; the test extras come with `make test` (and lint, bench).

Read from `make -n` (what make would do, nothing done) for a venv that does not exist yet, as on a fresh
machine: the test extras (pytest, moto, bqemulator, ga4mp, papermill…) were most of `make run`'s 8–9 minutes.
"""

from __future__ import annotations

import subprocess

from tests.support import REPO


def _plan(target: str, venv: str) -> list[str]:
    done = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "pip install" in line]


def test_make_run_installs_the_package_without_the_test_extras(tmp_path):
    installs = _plan("run", str(tmp_path / "venv"))
    assert installs and installs[-1].rstrip().endswith("-e .")
    assert not any("[test]" in line for line in installs)


def test_make_test_fast_adds_the_test_extras_to_the_same_venv(tmp_path):
    installs = _plan("test-fast", str(tmp_path / "venv"))
    assert any(line.rstrip().endswith("-e .") for line in installs)
    assert installs[-1].rstrip().endswith("-e '.[test]'")
