"""Locate why a CSV file could not be parsed: the exact record, the column, never the value.

Runs only after the fast reader failed, so it can afford the stdlib `csv` module. It numbers
records exactly as the fast path does (header excluded, blank records not counted) so the row it
names is the row the user would see in every other message.
"""

from __future__ import annotations

import csv
import io
import re

from etl.errors import SourceError
from etl.extract.text_file import TextLayout, open_binary

_UNDECODABLE = re.compile("[\udc80-\udcff]")


class _LineTooLong(Exception):
    pass


def _lines(text: io.TextIOWrapper, limit: int):
    """Physical lines of at most `limit` characters: a 1 GB line is refused, never held (it took 2.9 GB)."""
    while True:
        line = text.readline(limit)
        if not line:
            return
        if len(line) >= limit and not line.endswith(("\n", "\r")):
            raise _LineTooLong
        yield line


def line_limit(max_field_bytes: int) -> int:
    """The longest physical line either reader takes: a few cells at the cap (the capped reader's block)."""
    return max(4 << 20, 4 * max_field_bytes + (1 << 20))


def diagnose(layout: TextLayout) -> SourceError:
    """The SourceError naming the first structural problem (a generic one if none is found)."""
    return find_problem(layout) or SourceError(str(layout.path), None, None, "could not be parsed as CSV")


def find_problem(layout: TextLayout) -> SourceError | None:
    """Re-read the file; the SourceError for its first structural problem, or None when it is sound."""
    path = str(layout.path)
    width = len(layout.header)
    row = 0
    header_seen = False
    limit = line_limit(layout.max_field_bytes)
    previous_limit = csv.field_size_limit(limit)  # module-wide: put back below
    try:
        with open_binary(layout.path, layout.compressed) as raw:
            text = io.TextIOWrapper(raw, encoding=layout.encoding, errors="surrogateescape", newline="")
            reader = csv.reader(_lines(text, limit), delimiter=layout.delimiter, strict=True)
            while True:
                try:
                    record = next(reader)
                except StopIteration:
                    break
                except _LineTooLong:
                    return SourceError(path, row + 1, None, f"a line longer than {limit >> 20} MiB")
                except csv.Error:
                    return SourceError(
                        path, row + 1, None,
                        "malformed quoting (an unclosed or stray quote character starts in this row)",
                    )
                if not any(cell.strip() for cell in record):
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                row += 1
                for pos, cell in enumerate(record):
                    if _UNDECODABLE.search(cell):
                        column = layout.header[pos] if pos < width else None
                        return SourceError(
                            path, row, column, f"bytes that are not valid {layout.encoding} (set the source's encoding)"
                        )
                if len(record) != width:
                    return SourceError(
                        path, row, None,
                        f"row has {len(record)} fields but the header has {width} "
                        "(a delimiter inside an unquoted value, or a broken quote above this row?)",
                    )
    except (OSError, EOFError) as exc:
        return SourceError(path, row + 1 if row else None, None, f"cannot be read ({type(exc).__name__})")
    finally:
        csv.field_size_limit(previous_limit)
    return None
