-- mpetl: GA4's BigQuery export plus mpetl's historical table (deferred conversions at their TRUE date).
--
-- Replace PROJECT.EXPORT_DATASET (the export, analytics_<property_id>) and PROJECT.MPETL_DATASET
-- (where `[historical] table` lives, e.g. mpetl_reporting; rename mpetl_historical below if your
-- table is named otherwise), run it once in BigQuery, point Looker
-- Studio at the view. Keep the view and the historical table OUT of the export dataset, or at least
-- never name them events_*: a wildcard query that matches a view fails ("The wildcard table
-- functionality doesn't support views", cloud.google.com/bigquery/docs/querying-wildcard-tables),
-- and a partitioned table under events_* would break every events_* query (mpetl's config refuses
-- such a table name).
--
-- Why these columns: both sides share the export's names and types for the event, its params
-- (the `mpetl_run` marker is one of them) and the ecommerce amounts; whole `ecommerce`/`items`
-- structs are left out because GA4 adds fields to them over time and a UNION needs identical types.
-- event_day (DATE) prunes the historical table's partitions; the export branch reads every
-- events_* table (events_intraday_* included, deleted by Google once the day's table is complete):
-- on a large export, copy this SELECT into your query and add a _TABLE_SUFFIX filter to that branch.
-- Do not also upload the same events through Data Import: they could count twice.
CREATE OR REPLACE VIEW `PROJECT.MPETL_DATASET.mpetl_events_with_historical` AS
SELECT
  'ga4_export' AS row_source,
  e.event_date AS event_date,
  PARSE_DATE('%Y%m%d', e.event_date) AS event_day,
  e.event_timestamp AS event_timestamp,
  e.event_name AS event_name,
  e.event_params AS event_params,
  e.user_pseudo_id AS user_pseudo_id,
  e.user_id AS user_id,
  e.stream_id AS stream_id,
  e.platform AS platform,
  e.ecommerce.transaction_id AS transaction_id,
  e.ecommerce.purchase_revenue AS purchase_revenue,
  e.ecommerce.refund_value AS refund_value,
  e.ecommerce.tax_value AS tax_value,
  e.ecommerce.shipping_value AS shipping_value
FROM `PROJECT.EXPORT_DATASET.events_*` AS e
UNION ALL
SELECT
  'mpetl_historical' AS row_source,
  h.event_date AS event_date,
  h.event_day AS event_day,
  h.event_timestamp AS event_timestamp,
  h.event_name AS event_name,
  h.event_params AS event_params,
  h.user_pseudo_id AS user_pseudo_id,
  h.user_id AS user_id,
  h.stream_id AS stream_id,
  h.platform AS platform,
  h.ecommerce.transaction_id AS transaction_id,
  h.ecommerce.purchase_revenue AS purchase_revenue,
  h.ecommerce.refund_value AS refund_value,
  h.ecommerce.tax_value AS tax_value,
  h.ecommerce.shipping_value AS shipping_value
FROM `PROJECT.MPETL_DATASET.mpetl_historical` AS h;
