"""The command line as a user meets it: flags anywhere, --version, quiet terminals, validate's verdicts."""

from __future__ import annotations

import os
import pty
import select
import subprocess
from pathlib import Path

import orjson

from tests.cli.common import NOW, crm_config


def test_quiet_and_verbose_work_before_or_after_the_command(run_mpetl, tmp_path):
    config = crm_config(tmp_path)
    for n, args in enumerate((["-q", "run"], ["run", "-q"])):
        result = run_mpetl(*args, "--config", str(config), "--out", str(tmp_path / f"out{n}"), "--dry-run", "--now", NOW)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # no log lines at all
    verbose = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run", "--now", NOW, "-v")
    events = [orjson.loads(line)["event"] for line in verbose.stderr.splitlines()]
    assert "chunk_planned" in events  # -v adds the per-chunk detail


def test_off_a_terminal_log_lines_are_json_on_stderr_and_can_go_to_a_file(run_mpetl, tmp_path):
    config = crm_config(tmp_path)
    log_file = tmp_path / "mpetl.log"
    result = run_mpetl("run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run", "--now", NOW,
                   "--log-file", str(log_file))
    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert {"ts", "event"} <= set(lines[0]) and lines[-1]["event"] == "run_finished"
    assert [orjson.loads(x)["event"] for x in log_file.read_text().splitlines()] == [x["event"] for x in lines]


def test_an_unwritable_log_file_is_a_usage_error_not_a_traceback(run_mpetl, tmp_path):
    result = run_mpetl("--log-file", str(tmp_path / "missing" / "x.log"), "schema")
    assert result.returncode == 2 and "--log-file" in result.stderr and "Traceback" not in result.stderr


def test_version(run_mpetl):
    result = run_mpetl("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith("mpetl ")


def _on_a_terminal(run_mpetl, *args: str) -> str:
    """Run mpetl with stdout and stderr on a pseudo-terminal (a real process); return what the user would see."""
    leader, follower = pty.openpty()
    proc = run_mpetl.popen(*args, env={"COLUMNS": "160"}, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(leader)
    return seen.decode(errors="replace")


def test_on_a_terminal_only_the_table_shows_unless_verbose(run_mpetl, tmp_path):
    config = crm_config(tmp_path)
    plain = _on_a_terminal(run_mpetl, "run", "--config", str(config), "--out", str(tmp_path / "a"), "--dry-run", "--now", NOW)
    assert '{"ts"' not in plain and "run_started" not in plain
    assert "would_send" in plain and "TOTAL" in plain
    verbose = _on_a_terminal(run_mpetl, "run", "-v", "--config", str(config), "--out", str(tmp_path / "b"), "--dry-run", "--now", NOW)
    assert "run_started" in verbose and '{"ts"' not in verbose  # readable lines, not JSON


def test_dry_run_and_validate_say_would_send(run_mpetl, tmp_path):
    config = crm_config(tmp_path)
    dry = run_mpetl("-q", "run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run", "--now", NOW)
    line = orjson.loads(dry.stdout.splitlines()[-1])
    assert line["would_send"] == 3 and "sent" not in line
    check = run_mpetl("validate", "--config", str(config), "--now", NOW)
    totals = orjson.loads(check.stdout.splitlines()[-1])
    assert totals["would_send"] == 3 and "sent" not in totals


def test_validate_prints_why_a_source_failed_even_with_q(run_mpetl, tmp_path):
    broken = '[[sources]]\nname = "gone"\npath = "missing.csv"\n'
    config = crm_config(tmp_path, extra_sources=broken)
    result = run_mpetl("-q", "validate", "--config", str(config), "--now", NOW)
    assert result.returncode == 2
    assert "source gone:" in result.stderr and "missing.csv" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_validate_exits_2_when_every_row_is_rejected(run_mpetl, tmp_path):
    columns_wrong = ('[sources.columns]\nclient_id = "deal"\ntimestamp = "closed"\ntransaction_id = "deal"\n'
                             'value = "amount"\ncurrency = "cur"\n')
    config = crm_config(tmp_path, columns=columns_wrong)
    result = run_mpetl("-q", "validate", "--config", str(config), "--now", NOW)
    assert result.returncode == 2
    assert "nothing usable" in result.stderr and "check the mapping" in result.stderr
    assert "column 'deal'" in result.stderr


def test_collector_is_a_click_command_with_its_own_options(run_mpetl):
    shown = run_mpetl("collector", "--help")
    assert shown.returncode == 0
    for option in ("--port", "--data", "--measurement-id", "--fail-rate", "--latency-ms", "--seed"):
        assert option in shown.stdout
    bad = run_mpetl("collector", "--port", "abc", "--data", "x", "--measurement-id", "G-X1")
    assert bad.returncode == 2 and "--port" in bad.stderr and "Traceback" not in bad.stderr


def test_nightly_reads_the_same_chunks_as_run(run_mpetl, tmp_path):
    """`mpetl nightly` once read 100k-row chunks while `run` read 50k (its memory bound): both read 50k."""
    deals = "cookie,closed,deal,amount,cur,Stage\n" + "".join(
        f"GA1.1.{1000 + i % 500}.222,2025-01-01 10:00:00,D{i},10,EUR,Closed Won\n" for i in range(60_000))
    config = crm_config(tmp_path, deals=deals)  # a year before the night: read, counted, never sent
    chunks = {}
    for command, extra in (("run", ["--out", str(tmp_path / "run"), "--dry-run"]),
                           ("nightly", ["--out-root", str(tmp_path / "nightly")])):
        result = run_mpetl("-v", command, "--config", str(config), "--now", NOW, *extra)
        lines = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        chunks[command] = [line["rows"] for line in lines if line["event"] == "chunk_planned"]  # outside_window included
    assert chunks["run"] == chunks["nightly"] == [50_000, 10_000]


def test_on_a_terminal_names_and_reasons_print_as_written_then_what_to_do_next(run_mpetl, tmp_path):
    """Rich must not read `[eu]` or `[sources.columns]` as markup: a source name and a next step print as written."""
    config = crm_config(tmp_path, extra_sources='[sources.filter]\nStage = ["Closed Won"]\n')
    config.write_text(config.read_text().replace('name = "crm"', 'name = "crm [eu]"'))
    shown = _on_a_terminal(run_mpetl, "run", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run",
                           "--now", NOW)
    assert "crm [eu]" in shown
    assert "What to do next:" in shown
    # The deals carry no session cookie: the step says which table to map it in, brackets and all.
    assert "Map session_id in [sources.columns]" in " ".join(shown.split())
    assert f"mpetl run --config {config} --out out/run" in " ".join(shown.split())


def test_every_help_example_is_a_command_line_mpetl_accepts(run_mpetl):
    """The `Examples:` under `--help` parse as written (options and values checked by click's own types)."""
    import shlex

    import click

    from etl.cli import main

    examples = 0
    for name, command in [("mpetl", main), *main.commands.items()]:
        for line in (command.epilog or "").splitlines():
            line = line.strip()
            if not line.startswith("mpetl "):
                continue
            words = shlex.split(line.split("  #")[0])[1:]
            sub = main.commands[words[0]]
            with click.Context(main, info_name="mpetl") as parent:
                sub.make_context(words[0], words[1:], parent=parent)  # raises on an unknown option or bad value
            examples += 1
        if name in ("run", "validate", "reconcile", "nightly", "resend", "deferred", "init"):
            assert "Examples:" in run_mpetl(name, "--help").stdout, name
    assert examples >= 12


def test_shell_completion_is_clicks_own(tmp_path):
    """`eval "$(_MPETL_COMPLETE=bash_source mpetl)"` (docs/cli.md's line) completes commands."""
    import shutil
    import sys

    mpetl = shutil.which("mpetl", path=str(Path(sys.executable).parent))
    assert mpetl is not None
    script = subprocess.run([mpetl], env={**os.environ, "_MPETL_COMPLETE": "bash_source"}, capture_output=True,
                            text=True, timeout=60)
    assert "complete -o nosort -F _mpetl_completion mpetl" in script.stdout
    words = subprocess.run([mpetl], env={**os.environ, "_MPETL_COMPLETE": "bash_complete", "COMP_WORDS": "mpetl re",
                                         "COMP_CWORD": "1"}, capture_output=True, text=True, timeout=60)
    assert words.stdout.split() == ["plain,reconcile", "plain,resend"]


def test_on_a_terminal_an_error_is_one_plain_line_elsewhere_a_json_line_with_its_level(run_mpetl, tmp_path):
    config = crm_config(tmp_path)
    config.write_text(config.read_text().replace("timezone", "timezon", 1))
    shown = _on_a_terminal(run_mpetl, "validate", "--config", str(config))
    assert shown.strip().startswith(f"mpetl: error: {config}: [property.timezon] unknown key; did you mean 'timezone'?")
    piped = run_mpetl("validate", "--config", str(config))
    (line,) = [orjson.loads(x) for x in piped.stderr.splitlines()]
    assert (line["level"], line["event"], line["exit_code"]) == ("error", "error", 2)
    assert line["message"].startswith(f"{config}: [property.timezon] unknown key")
