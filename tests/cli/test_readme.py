"""The README's command and option tables say what `mpetl … --help` says: no option missing, none invented."""

from __future__ import annotations

import re

import pytest

from tests.support import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## The commands"):README.index("### Exit codes")]
GLOBAL = {"-v", "--verbose", "-q", "--quiet", "--log-file", "-h", "--help"}
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def help_text(run_mpetl, *command: str) -> str:
    result = run_mpetl(*command, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def help_options(run_mpetl, *command: str) -> set[str]:
    """Every option click lists under "Options:" (`  -v, --verbose  …`, `  --config FILE  …`)."""
    options: set[str] = set()
    for line in help_text(run_mpetl, *command).split("Options:", 1)[1].splitlines():
        match = re.match(r"\s{2}(-[\w-]+(?:,\s*-[\w-]+)*)", line)
        if match:
            options.update(o.strip() for o in match.group(1).split(","))
    return options


def readme_commands() -> dict[str, set[str]]:
    rows = {}
    for line in SECTION.splitlines():
        match = re.match(r"\| `mpetl (\w+)([^`]*)`", line)
        if match:
            rows[match.group(1)] = set(OPTION.findall(match.group(2)))
    return rows


def test_readme_lists_exactly_the_commands_of_mpetl_help(run_mpetl):
    listed = help_text(run_mpetl).split("Commands:", 1)[1].strip("\n").split("\n\n", 1)[0]  # up to the examples
    commands = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert set(readme_commands()) == commands


@pytest.mark.parametrize("command", sorted(readme_commands()))
def test_each_command_row_names_exactly_its_options(run_mpetl, command):
    documented = readme_commands()[command]
    actual = help_options(run_mpetl, command) - GLOBAL
    assert documented - actual == set(), f"README documents options `mpetl {command}` does not have"
    assert actual - documented == set(), f"`mpetl {command}` has options the README does not mention"


def test_global_options_table_matches_the_group_help(run_mpetl):
    rows = [line for line in SECTION.splitlines() if re.match(r"\| `-", line)]
    documented = {o for row in rows for o in OPTION.findall(row.split("|")[1])}
    assert documented == help_options(run_mpetl)
    for command in readme_commands():
        if command != "collector":  # the collector keeps its own options (python -m etl.collector)
            assert help_options(run_mpetl, command) >= GLOBAL, f"-q/-v/--log-file are not accepted after `{command}`"
