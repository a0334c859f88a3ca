-- mpetl: GA4's BigQuery export plus mpetl's historical table (deferred conversions at their TRUE date).
--
-- Replace PROJECT.DATASET (the export dataset, analytics_<property_id>) and
-- PROJECT.HIST_DATASET.HIST_TABLE (`[historical] table` in the mpetl config), then run it once in
-- BigQuery; point Looker Studio at the view. The historical table must not be named events_*: the
-- wildcard below would read it twice (mpetl's config refuses such a name).
--
-- Why these columns: both sides share the export's names and types for the event, its params
-- (the `mpetl_run` marker is one of them) and the ecommerce amounts; whole `ecommerce`/`items`
-- structs are left out because GA4 adds fields to them over time and a UNION needs identical types.
-- Filter on event_day (DATE): it prunes the historical table's partitions. events_* includes
-- events_intraday_* (deleted by Google once the day's table is complete).
-- Do not also upload the same events through Data Import: they would count twice.
CREATE OR REPLACE VIEW `PROJECT.DATASET.events_with_historical` AS
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
FROM `PROJECT.DATASET.events_*` AS e
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
FROM `PROJECT.HIST_DATASET.HIST_TABLE` AS h;
