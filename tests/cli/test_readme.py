"""The documentation says what the CLI does: docs/cli.md's tables and its `--help` pages are what
`mpetl … --help` prints (no option missing, none invented), the README names only commands that exist,
and the docs site builds with mkdocs --strict, so a broken link or anchor — in the site, or from the
README into it — fails the suite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.docs_help import commands, documented, live_help
from tests.support import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
CLI_PAGE = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
SECTION = CLI_PAGE[CLI_PAGE.index("## The commands"):CLI_PAGE.index("## Every command's `--help`")]
GLOBAL = {"-v", "--verbose", "-q", "--quiet", "--log-file", "-h", "--help"}
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
LIVE = commands()  # "mpetl", "mpetl aggregate", …


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


def page_commands() -> dict[str, set[str]]:
    rows = {}
    for line in SECTION.splitlines():
        match = re.match(r"\| `mpetl (\w+)([^`]*)`", line)
        if match:
            rows[match.group(1)] = set(OPTION.findall(match.group(2)))
    return rows


def test_cli_page_lists_exactly_the_commands_of_mpetl_help(run_mpetl):
    listed = help_text(run_mpetl).split("Commands:", 1)[1].strip("\n").split("\n\n", 1)[0]  # up to the examples
    commands = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert set(page_commands()) == commands


@pytest.mark.parametrize("command", sorted(page_commands()))
def test_each_command_row_names_exactly_its_options(run_mpetl, command):
    documented_options = page_commands()[command]
    actual = help_options(run_mpetl, command) - GLOBAL
    assert documented_options - actual == set(), f"docs/cli.md documents options `mpetl {command}` does not have"
    assert actual - documented_options == set(), f"`mpetl {command}` has options docs/cli.md does not mention"


def test_global_options_table_matches_the_group_help(run_mpetl):
    rows = [line for line in SECTION.splitlines() if re.match(r"\| `-", line)]
    documented_options = {o for row in rows for o in OPTION.findall(row.split("|")[1])}
    assert documented_options == help_options(run_mpetl)
    for command in page_commands():
        if command != "collector":  # the collector keeps its own options (python -m etl.collector)
            assert help_options(run_mpetl, command) >= GLOBAL, f"-q/-v/--log-file are not accepted after `{command}`"


def test_cli_page_has_a_help_block_for_every_command_and_no_other():
    shown = set(documented(CLI_PAGE))
    assert set(LIVE) - shown == set(), "no block in docs/cli.md (run: python jobs/docs_help.py --write)"
    assert shown - set(LIVE) == set(), "docs/cli.md has blocks of commands that do not exist"


@pytest.mark.parametrize("command", LIVE)
def test_cli_page_help_block_is_the_live_help(command):
    shown = documented(CLI_PAGE).get(command)
    assert shown is not None, f"docs/cli.md has no `{command} --help` block (run: python jobs/docs_help.py --write)"
    assert shown.startswith(f"Usage: {command} ") and "Options:" in shown
    assert shown == live_help(command), \
        f"docs/cli.md differs from `{command} --help` (run: python jobs/docs_help.py --write)"


def _code(text: str) -> str:
    """The README's fenced blocks and inline code spans: where it names commands (prose says "mpetl is…")."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M))
    return "\n".join(fenced + inline)


def test_every_command_the_readme_names_exists():
    named = set(re.findall(r"(?<![\w/.-])mpetl ([a-z][\w-]*)", _code(README)))
    live = {c.split()[1] for c in LIVE[1:]}
    assert {"init", "run", "reconcile", "nightly"} <= named
    assert named - live == set(), "the README names commands `mpetl --help` does not list"
    table = set(re.findall(r"^\| \[`mpetl (\w+)", README, re.M))
    assert table == live, "the README's command table is not the list of commands"


def test_readme_is_a_front_page_with_two_setup_commands():
    lines = README.count("\n")
    assert lines <= 250, f"README.md has {lines} lines: reference text belongs in docs/"
    setup = README[README.index("## Set-up: two commands"):]
    block = re.search(r"```sh\n(.*?)```", setup, re.S).group(1)
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["make run", "make test"]


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The docs site as `make docs` builds it (with --strict: any warning fails the build)."""
    out = tmp_path_factory.mktemp("site")
    built = _mkdocs(REPO / "mkdocs.yml", out)
    assert built.returncode == 0, built.stderr
    return out


def test_docs_site_builds_with_strict(site):
    pages = {p.relative_to(site).parent.as_posix() for p in site.rglob("index.html")}
    expected = {"." if p.stem == "index" else p.stem for p in (REPO / "docs").glob("*.md")}
    assert pages >= expected  # every page of docs/ was built (the nav holds them all: --strict says so)


def test_a_broken_link_an_unknown_anchor_or_a_page_outside_the_nav_fails_the_build(tmp_path):
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write("\nSee [the shards](scale_out.md) and [a flag](cli.md#mpetl-frobnicate).\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    built = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0
    assert "scale_out.md" in built.stderr and "#mpetl-frobnicate" in built.stderr and "orphan.md" in built.stderr


def test_readme_links_reach_existing_files_and_anchors(site):
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [link for link in links if not re.match(r"https?://", link)]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        path, _, anchor = link.partition("#")
        assert (REPO / path).exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            stem = Path(path).stem
            html = (site / ("index.html" if stem == "index" else f"{stem}/index.html")).read_text(encoding="utf-8")
            assert f'id="{anchor}"' in html, f"README links to {link}: {path} has no such heading"
