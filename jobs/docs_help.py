"""The `--help` pages of docs/cli.md, generated from the live CLI.

    python jobs/docs_help.py --write    # rewrite the page's help blocks after changing a command
    python jobs/docs_help.py --check    # exit 1 naming each command whose block differs

Each command's block sits between `<!-- [[[help mpetl run]]] -->` and `<!-- [[[end]]] -->`, all of them
between `<!-- [[[help-pages]]] -->` and `<!-- [[[end help-pages]]] -->`; `--write` rewrites that region
from `mpetl --help` and `mpetl <command> --help` for every command the group lists, so a new command gets
its block. The text is click's at a fixed 80 columns (click's default maximum), whatever the terminal,
so the page and the test (tests/cli/test_readme.py) never differ by a wrap.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WIDTH = 80
REGION = re.compile(r"<!-- \[\[\[help-pages\]\]\] -->\n.*?<!-- \[\[\[end help-pages\]\]\] -->", re.S)
BLOCK = re.compile(r"<!-- \[\[\[help (mpetl[^\]]*)\]\]\] -->\n```text\n(.*?)```\n<!-- \[\[\[end\]\]\] -->", re.S)


def commands() -> list[str]:
    """`mpetl`, then `mpetl <command>` for every command `mpetl --help` lists, in its order."""
    import click

    from etl.cli import main

    return ["mpetl", *(f"mpetl {name}" for name in main.list_commands(click.Context(main)))]


def live_help(command: str) -> str:
    """What `<command> --help` prints, at WIDTH columns (click's CliRunner, in process)."""
    from click.testing import CliRunner

    from etl.cli import main

    result = CliRunner().invoke(main, [*command.split()[1:], "--help"], prog_name="mpetl",
                                terminal_width=WIDTH, catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"{command} --help exited {result.exit_code}: {result.output}")
    return result.output


def documented(page: str) -> dict[str, str]:
    """The help text of each block on the page, by command."""
    return {command: text for command, text in BLOCK.findall(page)}


def render() -> str:
    blocks = []
    for command in commands():
        blocks.append(f"### `{command}`\n\n<!-- [[[help {command}]]] -->\n```text\n{live_help(command)}```\n"
                      "<!-- [[[end]]] -->\n")
    return "<!-- [[[help-pages]]] -->\n" + "\n".join(blocks) + "<!-- [[[end help-pages]]] -->"


def differences(page: str) -> list[str]:
    """One line per command whose block is missing, stale or left over."""
    shown, live = documented(page), commands()
    problems = [f"{c}: no block in docs/cli.md" for c in live if c not in shown]
    problems += [f"{c}: docs/cli.md has a block, but {c} is no command" for c in shown if c not in live]
    problems += [f"{c}: docs/cli.md differs from `{c} --help`" for c in live if c in shown and shown[c] != live_help(c)]
    return problems


def main(argv: list[str]) -> int:
    if argv not in (["--write"], ["--check"]):
        print(__doc__.strip().splitlines()[0], "\nusage: python jobs/docs_help.py --write | --check", file=sys.stderr)
        return 2
    page = PAGE.read_text(encoding="utf-8")
    if argv == ["--check"]:
        problems = differences(page)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    if not REGION.search(page):
        print(f"{PAGE}: no <!-- [[[help-pages]]] --> … <!-- [[[end help-pages]]] --> region", file=sys.stderr)
        return 2
    new = REGION.sub(lambda _: render(), page, count=1)
    if new != page:
        PAGE.write_text(new, encoding="utf-8")
        print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PAGE.parents[1]))  # the checkout's etl/, also when run as a script
    sys.exit(main(sys.argv[1:]))
