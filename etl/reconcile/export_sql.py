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

The traffic-source columns (`session_traffic_source_last_click`, added to the export in 2024, and
`collected_traffic_source`) are read only when the export has them (`traffic_sources=True`); an
older export gets NULLs and the report says the attribution figure is not available.
A second query, `counts`, gives the rows per table suffix: the export-health check before verdicts; a
third, `watermark`, the export's newest event time and daily table (the evidence before "missing").
`value` is the export's own figure for the event: `ecommerce.purchase_revenue` / `refund_value` for
purchases and refunds (what GA4 processed), else the `value` param; `currency` the `currency` param.
`resend_marker` is our `mpetl_resend` param: set on copies `mpetl resend` sent. `geo_country` is
`geo.country` (BigQuery event schema: the country GA placed the event in; a store's `user_location`
sets it for an in-store sale, etl/protocol/place.py), NULL when the export has no `geo` column.
"""

from __future__ import annotations

import re

from etl.policy import RESEND_MARKER_PARAM, RUN_MARKER_PARAM

EXPORT_COLUMNS = (
    "event_date",
    "event_name",
    "transaction_id",
    "run_marker",
    "resend_marker",
    "has_session",
    "event_timestamp",
    "intraday",
    "session_source",
    "collected_source",
    "value",
    "currency",
    "geo_country",
)

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
  (SELECT p.value.string_value FROM {params} WHERE p.key = '{resend}') AS resend_marker,
  EXISTS(SELECT 1 FROM {params} WHERE p.key = '{session}') AS has_session,
  e.event_timestamp AS event_timestamp,
  STARTS_WITH(_TABLE_SUFFIX, 'intraday_') AS intraday,
  {session_source} AS session_source,
  {collected_source} AS collected_source,
  COALESCE(
    CASE e.event_name WHEN 'purchase' THEN e.ecommerce.purchase_revenue WHEN 'refund' THEN e.ecommerce.refund_value END,
    (SELECT COALESCE(p.value.double_value, p.value.float_value, CAST(p.value.int_value AS {float}))
     FROM {params} WHERE p.key = 'value')
  ) AS value,
  (SELECT p.value.string_value FROM {params} WHERE p.key = 'currency') AS currency,
  {geo_country} AS geo_country
FROM {table} AS e
WHERE (_TABLE_SUFFIX BETWEEN @start AND @end
       OR _TABLE_SUFFIX BETWEEN @intraday_start AND @intraday_end)
  AND e.event_name IN (SELECT * FROM UNNEST(@event_names))
"""

_COUNTS_TEMPLATE = """
SELECT _TABLE_SUFFIX AS suffix, COUNT(1) AS n
FROM {table}
WHERE (_TABLE_SUFFIX BETWEEN @start AND @end
       OR _TABLE_SUFFIX BETWEEN @intraday_start AND @intraday_end)
GROUP BY _TABLE_SUFFIX
"""

# The export's evidence of what it has processed (etl/reconcile/evidence.py): its newest event time
# and its newest daily table, over every table from the `start` suffix on (`events_*` with a
# suffix >= start also matches every `intraday_*` table). Reads `event_timestamp` only: 8 bytes a row.
_WATERMARK_TEMPLATE = """
SELECT MAX(event_timestamp) AS newest_event,
       MAX(CASE WHEN STARTS_WITH(_TABLE_SUFFIX, 'intraday_') THEN NULL ELSE _TABLE_SUFFIX END) AS newest_daily
FROM {table}
WHERE _TABLE_SUFFIX >= @start
"""

_SESSION_SOURCE = "e.session_traffic_source_last_click.cross_channel_campaign.source"
_COLLECTED_SOURCE = "COALESCE(e.collected_traffic_source.manual_source, IF(e.collected_traffic_source.gclid IS NULL, NULL, 'google'))"

_BIGQUERY_TABLE_PART = re.compile(r"^[A-Za-z0-9_.:-]+$")


def bigquery_table(project: str, dataset: str) -> str:
    """`{project}.{dataset}.events_*`; project and dataset come from config, checked here."""
    for name, value in (("project", project), ("dataset", dataset)):
        if not _BIGQUERY_TABLE_PART.match(value):
            raise ValueError(f"reconcile.{name} has characters a BigQuery {name} id cannot have")
    return f"`{project}.{dataset}.events_*`"


def bigquery_sql(project: str, dataset: str, *, traffic_sources: bool = False, geo: bool = True) -> str:
    """The events query over `{project}.{dataset}.events_*`."""
    table = bigquery_table(project, dataset)
    return _render(table=table, params="UNNEST(e.event_params) AS p", traffic_sources=traffic_sources, float="FLOAT64",
                   geo=geo)


def bigquery_watermark_sql(project: str, dataset: str) -> str:
    return _WATERMARK_TEMPLATE.format(table=bigquery_table(project, dataset))


def duckdb_watermark_sql(view: str = "events") -> str:
    return re.sub(r"@(\w+)", r"$\1", _WATERMARK_TEMPLATE.format(table=view))


def bigquery_counts_sql(project: str, dataset: str) -> str:
    """Rows per table suffix of `{project}.{dataset}.events_*` for the asked dates."""
    return _COUNTS_TEMPLATE.format(table=bigquery_table(project, dataset))


def duckdb_sql(view: str = "events", *, traffic_sources: bool = True) -> str:
    """The same query over a DuckDB view that has the export's columns plus `_TABLE_SUFFIX`."""
    text = _render(table=view, params="UNNEST(e.event_params) AS u(p)", traffic_sources=traffic_sources, float="DOUBLE",
                   geo=True)
    return re.sub(r"@(\w+)", r"$\1", text)


def duckdb_counts_sql(view: str = "events") -> str:
    return re.sub(r"@(\w+)", r"$\1", _COUNTS_TEMPLATE.format(table=view))


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


def counts_parameters(dates: list[str]) -> dict[str, object]:
    """The date-range parameters alone (the counts query takes no event names)."""
    return {k: v for k, v in query_parameters(dates, []).items() if k != "event_names"}


def _render(*, table: str, params: str, traffic_sources: bool, float: str, geo: bool) -> str:  # noqa: A002 - the SQL type
    return _TEMPLATE.format(
        geo_country="e.geo.country" if geo else "CAST(NULL AS STRING)",
        table=table,
        params=params,
        float=float,
        marker=RUN_MARKER_PARAM,
        resend=RESEND_MARKER_PARAM,
        session=SESSION_PARAM,
        session_source=_SESSION_SOURCE if traffic_sources else "CAST(NULL AS STRING)",
        collected_source=_COLLECTED_SOURCE if traffic_sources else "CAST(NULL AS STRING)",
    )
