"""The SQL a BigQuery source runs: checked, backquoted identifiers and a window as query parameters.

Why so strict: the table name and the column names come from config and from the table's schema,
and are spliced into SQL text; a backquote or a line break in one could change the statement. They
are checked against BigQuery's naming rules and backquoted one part at a time. Values (the
`--since/--until` bounds) never touch the text: they travel as typed query parameters.

The window pushed down never excludes a row the transform would keep (rule 1: nothing silently
dropped). A TIMESTAMP is an instant, so its bounds are exact. A DATETIME or DATE is local
wall-clock time that the transform places with the source's zone (or a per-row `timezone` column),
so the bounds are widened by a margin that covers any DST jump (3 h) or any zone on Earth (27 h,
when rows carry their own zone); the transform cuts exactly and counts the margin's rows as
`outside_window`. A NULL time is always read (the transform rejects it, visibly). A STRING time is
pushed down only with a type hint (`options.timestamp_type`), through SAFE_CAST and a day's margin;
without one every row is read and the transform filters. Rows later than `future_after` (the wall
clock plus the clock-skew tolerance) are read whatever `until` says, widened by the same margin: the
transform rejects them as being in the future, which it could not do for a row it never saw.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# BigQuery naming rules, slightly relaxed (a project may be domain-scoped, "example.com:proj").
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
# Table and column names may hold letters of any script, spaces and dashes; never a backquote, a
# backslash, a dot (parts are split on dots) or a control character.
_NAME = re.compile(r"^[^`\\.\x00-\x1f\x7f]{1,1024}$")
_COLUMN = re.compile(r"^[^`\\\x00-\x1f\x7f]{1,300}$")

PUSHABLE_TYPES = ("TIMESTAMP", "DATETIME", "DATE")
DST_MARGIN = timedelta(hours=3)  # the largest DST jump ever used is 2 h
ANY_ZONE_MARGIN = timedelta(hours=27)  # UTC-12 … UTC+14 is 26 h apart, plus one for DST
SINCE_PARAM, UNTIL_PARAM, FUTURE_PARAM = "mpetl_since", "mpetl_until", "mpetl_future"


@dataclass(frozen=True)
class TableName:
    project: str
    dataset: str
    table: str

    def sql(self) -> str:
        return ".".join(quote_identifier(part) for part in (self.project, self.dataset, self.table))

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


@dataclass(frozen=True)
class WindowFilter:
    """`clause` goes after WHERE; `params` are (name, BigQuery type, value) for ScalarQueryParameter."""

    clause: str
    params: tuple[tuple[str, str, Any], ...]


def quote_identifier(name: str) -> str:
    if not _COLUMN.match(name):
        raise ValueError(f"{name!r} is not a valid BigQuery identifier")
    return f"`{name}`"


def parse_table(text: str, default_project: str | None) -> TableName:
    """"project.dataset.table" or "dataset.table" (with `project` from config); ValueError names the part."""
    parts = text.strip().rsplit(".", 2)
    if len(parts) == 2:
        if not default_project:
            raise ValueError(f"table {text!r} has no project: write project.dataset.table or set project")
        parts = [default_project, *parts]
    if len(parts) != 3:
        raise ValueError(f"table {text!r}: expected project.dataset.table")
    project, dataset, table = parts
    if not _PROJECT.match(project):
        raise ValueError(f"table {text!r}: {project!r} is not a valid project id")
    if not _DATASET.match(dataset):
        raise ValueError(f"table {text!r}: {dataset!r} is not a valid dataset name (letters, digits, _)")
    if not _NAME.match(table):
        raise ValueError(f"table {text!r}: {table!r} is not a valid table name")
    return TableName(project, dataset, table)


def query_text(query: str) -> str:
    """The user's query, ready to nest as a subquery (trailing `;` and blanks removed)."""
    text = query.strip().rstrip(";").rstrip()
    if not text:
        raise ValueError("query is empty")
    return text


def select_sql(columns: list[str], source_sql: str, where: WindowFilter | None) -> str:
    """SELECT only the mapped columns (BigQuery bills by the columns read) from a table or a subquery."""
    listed = ", ".join(quote_identifier(c) for c in columns)
    sql = f"SELECT {listed} FROM {source_sql}"
    return f"{sql} WHERE {where.clause}" if where is not None else sql


def window_filter(column: str, field_type: str, since: datetime | None, until: datetime | None, *,
                  zone: str, row_zones: bool, hint: str | None = None,
                  future_after: datetime | None = None) -> WindowFilter | None:
    """The pushdown for [since, until) on `column`, or None when it cannot be pushed down safely.

    `hint` (`options.timestamp_type`) lets a STRING column be pushed down as the type its text
    holds: the WHERE compares `SAFE_CAST(column AS hint)`, a text it cannot cast is NULL and read, and
    the bounds are widened by a whole day either way (a text's zone is the transform's business).
    """
    if since is None and until is None:
        return None
    kind = field_type.upper()
    expr = quote_identifier(column)
    margin = ANY_ZONE_MARGIN if row_zones else DST_MARGIN
    exact = True  # a TIMESTAMP column is an instant: its bounds need no margin
    if kind == "STRING" and hint is not None:
        kind = hint.upper()
        if kind not in PUSHABLE_TYPES:
            raise ValueError(f"options.timestamp_type must be one of {', '.join(PUSHABLE_TYPES)}, got {hint!r}")
        expr, margin, exact = f"SAFE_CAST({expr} AS {kind})", ANY_ZONE_MARGIN, False
    elif kind not in PUSHABLE_TYPES:
        return None
    conditions: list[str] = []
    params: list[tuple[str, str, Any]] = []
    if kind == "TIMESTAMP":
        shift = timedelta(0) if exact else margin
        if since is not None:
            conditions.append(f"{expr} >= @{SINCE_PARAM}")
            params.append((SINCE_PARAM, "TIMESTAMP", since - shift))
        if until is not None:
            conditions.append(f"{expr} < @{UNTIL_PARAM}")
            params.append((UNTIL_PARAM, "TIMESTAMP", until + shift))
            if future_after is not None:
                conditions[-1] = f"({conditions[-1]} OR {expr} > @{FUTURE_PARAM})"
                params.append((FUTURE_PARAM, "TIMESTAMP", future_after - shift))
    else:
        tz = zoneinfo.ZoneInfo(zone)

        def local(moment: datetime, shift: timedelta) -> datetime:
            return moment.astimezone(tz).replace(tzinfo=None) + shift

        if since is not None:
            low = local(since, -margin)
            conditions.append(f"{expr} >= @{SINCE_PARAM}")
            params.append((SINCE_PARAM, kind, low.date() if kind == "DATE" else low))
        if until is not None:
            high = local(until, margin)
            conditions.append(f"{expr} <= @{UNTIL_PARAM}")
            params.append((UNTIL_PARAM, kind, high.date() if kind == "DATE" else high))
            if future_after is not None:
                ahead = local(future_after, -margin)
                conditions[-1] = f"({conditions[-1]} OR {expr} >= @{FUTURE_PARAM})"
                params.append((FUTURE_PARAM, kind, ahead.date() if kind == "DATE" else ahead))
    return WindowFilter(f"({expr} IS NULL OR ({' AND '.join(conditions)}))", tuple(params))
