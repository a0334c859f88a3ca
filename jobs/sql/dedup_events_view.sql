-- mpetl: GA4's BigQuery export with duplicate conversions removed, for reports built on the export.
--
-- Why: GA4's own reports deduplicate purchases that share a transaction id *from the same user*
-- ("[GA4] Minimize duplicate key events with transaction IDs", support.google.com/analytics/answer/12313109),
-- but the export keeps every row. A late original beside the copy `mpetl resend` sent, or a retried
-- request GA recorded twice, doubles revenue in anything that sums `events_*`. This view keeps:
-- - every event without a transaction id, untouched;
-- - per purchase: one row per (transaction id, user_pseudo_id), as GA4's reports count it;
-- - per other event with a transaction id (refunds, leads): one row per (transaction id, user,
--   event_timestamp) — partial refunds of one order at different times all stay, a resent copy
--   (same timestamp: MP keeps timestamp_micros) goes;
-- preferring the original (no `mpetl_resend` param) over a copy, then the earliest row.
-- mpetl's reconciliation counts the same copies (duplicates.csv, `duplicate_value`).
--
-- Replace PROJECT.EXPORT_DATASET (the export, analytics_<property_id>) and PROJECT.MPETL_DATASET (a
-- dataset of yours OUTSIDE the export: a view the export's `events_*` could match breaks every
-- wildcard query on it), run it once, point reports at the view. Like `events_*`, it reads daily and
-- intraday tables: for the day both exist, a purchase is still counted once (same id and user).
CREATE OR REPLACE VIEW `PROJECT.MPETL_DATASET.mpetl_events_dedup` AS
WITH marked AS (
  SELECT
    e.*,
    COALESCE(
      NULLIF(e.ecommerce.transaction_id, '(not set)'),
      (SELECT p.value.string_value FROM UNNEST(e.event_params) AS p WHERE p.key = 'transaction_id')
    ) AS dedup_transaction_id,
    EXISTS(SELECT 1 FROM UNNEST(e.event_params) AS p WHERE p.key = 'mpetl_resend') AS dedup_is_copy
  FROM `PROJECT.EXPORT_DATASET.events_*` AS e
),
ranked AS (
  SELECT
    m.*,
    ROW_NUMBER() OVER (
      PARTITION BY m.event_name, m.dedup_transaction_id, m.user_pseudo_id,
                   IF(m.event_name = 'purchase', 0, m.event_timestamp)
      ORDER BY IF(m.dedup_is_copy, 1, 0), m.event_timestamp
    ) AS dedup_rank
  FROM marked AS m
)
SELECT * EXCEPT (dedup_rank, dedup_is_copy)
FROM ranked
WHERE dedup_transaction_id IS NULL OR dedup_rank = 1;
