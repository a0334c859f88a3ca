"""Ledger, output and endpoint problems: one line on stderr, exit 2, no traceback, nothing sent."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.cli.common import NOW, crm_config


def one_line(result) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def sent_once(run_mpetl, tmp_path) -> tuple[Path, Path]:
    """A config whose ledger holds one real run (so a damaged copy is a real ledger's bytes)."""
    config = crm_config(tmp_path)
    first = run_mpetl("-q", "run", "--config", str(config), "--out", str(tmp_path / "first"), "--now", NOW)
    assert first.returncode == 0, first.stderr
    return config, tmp_path / "state" / "ledger.sqlite"


def _damage(ledger: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    data = bytearray(ledger.read_bytes())
    if how == "truncated":
        ledger.write_bytes(bytes(data[:5000]))
    elif how == "corrupt":
        data[100:4000] = b"\xff" * 3900
        ledger.write_bytes(bytes(data))
    else:
        ledger.write_bytes(b"this is not a database\n" * 100)


@pytest.mark.parametrize("how", ["truncated", "corrupt", "garbage"])
@pytest.mark.parametrize("command", ["run", "dry-run", "validate"])
def test_a_damaged_ledger_is_one_line_and_never_replaced(run_mpetl, sent_once, tmp_path, how, command):
    config, ledger = sent_once
    _damage(ledger, how)
    before = ledger.read_bytes()
    args = {"run": ["run", "--out", str(tmp_path / "o")], "dry-run": ["run", "--dry-run", "--out", str(tmp_path / "o")],
            "validate": ["validate"]}[command]
    line = one_line(run_mpetl(*args, "--config", str(config), "--now", NOW))
    assert str(ledger) in line and "restore it from a backup" in line
    assert ledger.read_bytes() == before  # not "repaired" into an empty ledger that forgets what was sent


def test_a_directory_as_the_ledger(run_mpetl, tmp_path):
    config = crm_config(tmp_path)
    (tmp_path / "state" / "ledger.sqlite").mkdir(parents=True)
    line = one_line(run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "o"), "--now", NOW))
    assert "is a directory" in line


@contextlib.contextmanager
def read_only(path: Path):
    """chmod for a normal user; root ignores modes, so the immutable attribute instead (ext4 and co)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield
        path.chmod(0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("cannot make a file read-only for root here (no chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_ledger(run_mpetl, sent_once, tmp_path):
    config, ledger = sent_once
    for suffix in ("-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    with read_only(ledger):
        line = one_line(run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "o"), "--now", NOW))
    assert str(ledger) in line and ("read-only" in line or "readonly" in line)


@pytest.mark.parametrize("out", ["file/sub", "/proc/mpetl-out"])
def test_an_unwritable_out_folder(run_mpetl, tmp_path, out):
    config = crm_config(tmp_path)
    (tmp_path / "file").write_text("x")
    target = out if out.startswith("/") else str(tmp_path / out)
    line = one_line(run_mpetl("run", "--config", str(config), "--out", target, "--now", NOW))
    assert "cannot write" in line and "--out" in line
    assert not (tmp_path / "state" / "collector").exists()  # failed before anything was sent


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://[::1", "127.0.0.1:8080", "https://x/?api_secret=s"])
def test_a_bad_endpoint_url(run_mpetl, tmp_path, url):
    config = crm_config(tmp_path)
    config.write_text(config.read_text().replace('endpoint = "local"', f'endpoint = "{url}"'))
    line = one_line(run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "o"), "--now", NOW))
    assert "[destination.endpoint]" in line and "api_secret=s" not in line


@pytest.mark.parametrize("mode,warned", [(0o644, "0644"), (0o640, "0640"), (0o600, None)])
def test_a_secret_file_others_can_read_is_one_warning_line_and_the_run_goes_on(run_mpetl, tmp_path, mode, warned):
    config = crm_config(tmp_path)
    secret = tmp_path / "api_secret"
    secret.write_text("file-secret-4471\n")
    secret.chmod(mode)
    config.write_text(config.read_text().replace('[destination]\n', f'[destination]\napi_secret_file = "{secret}"\n'))
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), env={"MP_API_SECRET": None})
    assert result.returncode == 0, result.stderr
    warnings = [orjson.loads(x) for x in result.stderr.splitlines() if '"level":"warning"' in x]
    if warned is None:
        assert warnings == []
    else:
        (line,) = warnings
        assert (line["event"], line["path"], line["mode"]) == ("api_secret_file_readable", str(secret), warned)
        assert f"chmod 600 {secret}" in line["hint"]
    assert "file-secret-4471" not in result.stdout + result.stderr
