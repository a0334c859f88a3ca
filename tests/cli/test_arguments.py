"""Every command's arguments fuzzed with bad values: each is one line `mpetl: error: …` naming the
option, exit 2 (docs/outputs.md, "Exit codes"), before anything runs — never a traceback, a hang or a wrong answer.

The cases come from the commands themselves (click's parameter types), so a new option is fuzzed
the day it is added. Values: wrong types, empty strings, huge numbers, nan/inf, bad ISO dates and
instants, years out of range, `--shard 0/0`, `3/2`, `a/b`.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from etl.cli import main
from etl.commandline import Day, Finite, Instant, NonEmptyPath, ShardSpec
from tests.cli.common import crm_config
from tests.support import cli_errors

HUGE = "9" * 30
BAD_INSTANTS = ["", "yesterday", "2026-13-01", "2026-11-21T25:00", "2026-02-30", "0001-01-01T00:00:00Z",
                "99999-01-01", "2026-11-21T06:00:00+25:00", "2026-11-21T06:00:00Z" * 50]
BAD_DAYS = ["", "2026-02-30", "20261120x", "2026-11-21T06:00", "0001-01-01", "nope"]
BAD_SHARDS = ["0/0", "3/2", "a/b", "", "1/0", f"1/{HUGE}", "2/2/2", "-1/2", "1/1025", "x" * 500]


def _bad_values(param: click.Parameter) -> list[str]:
    kind = param.type
    if isinstance(kind, Instant):
        return BAD_INSTANTS
    if isinstance(kind, Day):
        return BAD_DAYS
    if isinstance(kind, ShardSpec):
        return BAD_SHARDS
    if isinstance(kind, Finite):
        values = ["nan", "inf", "-inf", "1e400", "abc", "", "1,5"]
        return values + [str(kind.min - 1)] + ([str(kind.max + 1)] if kind.max is not None else [])
    if isinstance(kind, click.IntRange):
        values = ["abc", "", "1.5", HUGE, f"-{HUGE}"]
        return values + ([str(kind.min - 1)] if kind.min is not None else []) + \
            ([str(kind.max + 1)] if kind.max is not None else [])
    if kind is click.INT:
        return ["abc", "", "1.5", HUGE]
    if isinstance(kind, click.Choice):
        return ["", "nope", "CSV "]
    if isinstance(kind, NonEmptyPath):
        return ["", "   "]
    return []


# The least each command needs to get past parsing (its required options), on the CLI tests' config.
REQUIRED = {
    "run": ["--config", "{config}", "--out", "{tmp}/out", "--dry-run"],
    "validate": ["--config", "{config}"],
    "reconcile": ["--config", "{config}", "--out", "{tmp}/rec"],
    "nightly": ["--config", "{config}", "--out-root", "{tmp}/nightly"],
    "deferred": ["--config", "{config}", "--out", "{tmp}/d.csv"],
    "historical": ["--config", "{config}", "--run-id", "r1"],
    "resend": ["--config", "{config}", "--run-id", "r1"],
    "check": ["--config", "{config}", "--wait-s", "0"],
    "sources": ["--config", "{config}"],
    "aggregate": ["{tmp}"],
    "init": ["{tmp}/init"],
    "schema": [],
    "collector": ["--data", "{tmp}/store", "--measurement-id", "G-ABC123"],
}
CASES = [(name, param.opts[-1], value) for name, command in sorted(main.commands.items())
         for param in command.params if isinstance(param, click.Option) for value in _bad_values(param)]
CASES += [(None, "--log-file", value) for value in ("", " ")]


def test_every_command_is_fuzzed_and_every_kind_of_option_is_covered():
    """The table above can fail: a command missing from REQUIRED, or a typed option with no bad values."""
    assert set(REQUIRED) == set(main.commands)
    fuzzed = {(name, opt) for name, opt, _ in CASES}
    for expected in [("run", "--shard"), ("run", "--now"), ("run", "--since"), ("reconcile", "--until"),
                     ("check", "--wait-s"), ("sources", "-n"), ("collector", "--port"), ("collector", "--drop-rate"),
                     ("collector", "--latency-ms"), ("collector", "--seed"), ("validate", "--sample"),
                     ("nightly", "--days"), ("init", "--kind"), ("deferred", "--since")]:
        assert expected in fuzzed, expected
    assert len(CASES) > 150


def _args(name: str | None, option: str, value: str, tmp_path: Path, config: Path) -> list[str]:
    if name is None:
        return [option, value, "schema"]
    base = [a.format(config=config, tmp=tmp_path) for a in REQUIRED[name]]
    return [name, *base, option, value]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "option", "value"), CASES, ids=[f"{n}{o}={v[:20]!r}" for n, o, v in CASES])
def test_a_bad_argument_is_one_line_naming_the_option_exit_2(run_mpetl, tmp_path, name, option, value):
    config = crm_config(tmp_path)
    result = run_mpetl(*_args(name, option, value, tmp_path, config))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and len(cli_errors(result.stderr)) == 1, result.stderr
    assert option in lines[0] or option.lstrip("-") in lines[0], lines[0]
    assert len(lines[0]) < 400, "a long argument is shortened in the message"
    assert result.stdout == ""
    assert not (tmp_path / "state").exists(), "nothing ran: no ledger, no collector store"


@pytest.mark.parametrize(("args", "says"), [
    (["run", "--config", "{config}", "--out", "{tmp}/o", "--dry-run", "--source", ""], "no source named ''"),
    (["historical", "--config", "{config}", "--run-id", ""], "[historical.table] is not set"),
    (["resend", "--config", "{config}", "--run-id", ""], "--run-id"),
    (["resend", "--config", "{config}", "--run-id", "../../etc"], "--run-id"),
    (["init", "{tmp}/i", "--timezone", "Mars/Base"], "--timezone"),
    (["init", "{tmp}/i", "--measurement-id", "g-lower"], "--measurement-id"),
    (["collector", "--data", "{tmp}/s", "--measurement-id", "G-A1", "--timezone", "Mars/Base"], "--timezone"),
    (["collector", "--data", "{tmp}/s", "--measurement-id", "G-A1", "--stream-id", "12ab"], "--stream-id"),
    (["collector", "--data", "{tmp}/s", "--measurement-id", "G-A1", "--drop-rate", "0.6", "--fail-rate", "0.6"],
     "must not exceed 1"),
    (["run", "--config", "{tmp}/missing.toml", "--out", "{tmp}/o"], "config file not found"),
])
def test_values_only_the_command_can_judge_are_one_line_too(run_mpetl, tmp_path, args, says):
    config = crm_config(tmp_path)
    result = run_mpetl(*[a.format(config=config, tmp=tmp_path) for a in args])
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and says in cli_errors(result.stderr)[0], result.stderr
    assert not (tmp_path / "i").exists() and not (tmp_path / "s").exists()


def test_a_bug_still_shows_its_traceback(run_mpetl, tmp_path, monkeypatch):
    """Known failures are one line; anything else must stay visible as the bug it is."""
    import etl.pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(etl.pipeline, "run_pipeline", broken)
    with pytest.raises(ZeroDivisionError):
        run_mpetl("run", "--config", str(crm_config(tmp_path)), "--out", str(tmp_path / "o"), "--dry-run")
