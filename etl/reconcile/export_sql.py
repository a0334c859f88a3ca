"""One query for both export backends: the GA4 BigQuery export and the local GA4-shaped store.

Why one text: the local collector writes BigQuery export column names and nesting, so the query
that proves arrival in tests is the query that runs against Google. Two dialect details differ and
are rendered here, nowhere else: how a correlated UNNEST names its element (`AS p` in BigQuery,
`AS u(p)` in DuckDB) and the parameter prefix (`@name` / `$name`). The aliased UNNEST form is used
on purpose: the un-aliased GA4 idiom fails on the BigQuery emulator and the aliased one is valid
BigQuery.

Parameters (always bound, never formatted in): `start`, `end` (YYYYMMDD table suffixes),
`intraday_start`, `intraday_end` (the same with `intraday_`), `event_names` (array of strings).
`events_*` matches `events_intraday_*` too, with suffix `intraday_YYYYMMDD`; the column `intraday`
lets the caller prefer the daily table when both exist for one day.
"""

from __future__ import annotations

import re

EXPORT_COLUMNS = (
    "event_date",
    "event_name",
    "transaction_id",
    "run_marker",
    "has_session",
    "event_timestamp",
    "intraday",
)

RUN_MARKER_PARAM = "mpetl_run"
SESSION_PARAM = "ga_session_id"

_TEMPLATE = """
SELECT
  e.event_date AS event_date,
  e.event_name AS event_name,
  COALESCE(
    NULLIF(e.ecommerce.transaction_id, '(not set)'),
    (SELECT p.value.string_value FROM {params} WHERE p.key = 'transaction_id')
  ) AS transaction_id,
  (SELECT p.value.string_value FROM {params} WHERE p.key = '{marker}') AS run_marker,
  EXISTS(SELECT 1 FROM {params} WHERE p.key = '{session}') AS has_session,
  e.event_timestamp AS event_timestamp,
  STARTS_WITH(_TABLE_SUFFIX, 'intraday_') AS intraday
FROM {table} AS e
WHERE (_TABLE_SUFFIX BETWEEN @start AND @end
       OR _TABLE_SUFFIX BETWEEN @intraday_start AND @intraday_end)
  AND e.event_name IN (SELECT * FROM UNNEST(@event_names))
"""

_BIGQUERY_TABLE_PART = re.compile(r"^[A-Za-z0-9_.:-]+$")


def bigquery_sql(project: str, dataset: str) -> str:
    """The query for `{project}.{dataset}.events_*`; project and dataset come from config, checked here."""
    for name, value in (("project", project), ("dataset", dataset)):
        if not _BIGQUERY_TABLE_PART.match(value):
            raise ValueError(f"reconcile.{name} has characters a BigQuery {name} id cannot have")
    return _render(table=f"`{project}.{dataset}.events_*`", params="UNNEST(e.event_params) AS p")


def duckdb_sql(view: str = "events") -> str:
    """The same query over a DuckDB view that has the export's columns plus `_TABLE_SUFFIX`."""
    text = _render(table=view, params="UNNEST(e.event_params) AS u(p)")
    return re.sub(r"@(\w+)", r"$\1", text)


def query_parameters(dates: list[str], event_names: list[str]) -> dict[str, object]:
    """Named parameter values for a set of YYYYMMDD dates (the range covering them) and event names."""
    start, end = min(dates), max(dates)
    return {
        "start": start,
        "end": end,
        "intraday_start": f"intraday_{start}",
        "intraday_end": f"intraday_{end}",
        "event_names": sorted(set(event_names)),
    }


def _render(*, table: str, params: str) -> str:
    return _TEMPLATE.format(table=table, params=params, marker=RUN_MARKER_PARAM, session=SESSION_PARAM)
