"""Which rows of a chunk this run takes: the event-time window, then this shard's clients.

Rows left out are not lost: they are counted (`outside_window`, `other_shard`, buckets of the same
equation as `rows_in`) and left alone. Rows with an unreadable time stay in (and are rejected by the
time rule), so a bad date can never hide a row; so do rows later than the wall clock plus
`future_tolerance_minutes`, whatever `--until`/`--now` select: otherwise a row dated three days ahead
would be "outside the window" every night and never rejected (issue 24).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.accounting import Buckets, Notes, Tally
from etl.transform.context import Chunk, RuleContext, TransformOptions
from etl.transform.identity import app_instance_ids, client_id_from_ga_cookie
from etl.transform.reasons import RejectReasons
from etl.transform.rules import basis, money
from etl.transform.rules.times import future_limit
from etl.transform.timestamps import to_utc_micros


def open_chunk(chunk: Chunk, options: TransformOptions) -> RuleContext:
    """The context for the rules: times parsed once, every row's money put on Google's basis
    (`basis`), the rows outside the window or shard set aside — their money counted in their buckets."""
    frame = chunk.frame
    times = _event_times(frame, options)
    whole = RuleContext(source=chunk.source, frame=frame, labels=chunk.columns, options=options, times=times,
                        reasons=RejectReasons(len(frame)), tally=Tally())
    basis.apply(whole)
    frame, tally = whole.frame, whole.tally
    outside, refunds = _outside_window(frame, times, options)
    if outside.any():
        _count_money(tally, "outside_window", frame[outside], options)
        frame, times = frame[~outside].reset_index(drop=True), times[~outside].reset_index(drop=True)
    other = ~_owned_by_shard(frame, options)
    if other.any():
        _count_money(tally, "other_shard", frame[other], options)
        frame, times = frame[~other].reset_index(drop=True), times[~other].reset_index(drop=True)
    tally.buckets = Buckets(rows_in=len(chunk.frame), outside_window=int(outside.sum()), other_shard=int(other.sum()))
    tally.notes = tally.notes + Notes(refunds_outside_window=refunds)
    return RuleContext(source=chunk.source, frame=frame, labels=whole.labels, options=options, times=times,
                       reasons=RejectReasons(len(frame)), tally=tally)


def _count_money(tally: Tally, bucket: str, rows: pd.DataFrame, options: TransformOptions) -> None:
    currency, values, unreadable = money.row_money(rows, options)
    money.count(tally, bucket, currency, values, np.ones(len(rows), dtype=bool))
    tally.value_unreadable += int(unreadable.sum())


def _event_times(frame: pd.DataFrame, options: TransformOptions) -> pd.Series:
    """Each row's event time as exact UTC micros (NA where unreadable or unmapped)."""
    if "timestamp" not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="Int64")
    window = options.window
    times = to_utc_micros(
        frame["timestamp"],
        default_zone=options.source.timezone,
        zones=frame["timezone"] if "timezone" in frame.columns else None,
        date_only_time=window.date_only_time,
        ambiguous=window.ambiguous,
        nonexistent=window.nonexistent,
    )
    if "time_unknown" in frame.columns:
        # A refund the export gives no time (Shopify's orders export has no refund date, and a partial
        # refund has no `Cancelled at`): timed when first seen, the wall clock, never the purchase's time.
        unknown = frame["time_unknown"].notna().to_numpy(dtype=bool)
        times = times.mask(unknown, options.wall_micros)
    return times


def _outside_window(frame: pd.DataFrame, times: pd.Series, options: TransformOptions) -> tuple[np.ndarray, int]:
    """Rows whose known event time is outside [since, until) (but not in the future), and how many of
    them are refunds.

    A refund timed (by the export) outside the window is someone else's night, and the summary says so
    rather than letting it vanish from view.
    """
    since, until = options.since_micros, options.until_micros
    out = np.zeros(len(times), dtype=bool)
    if since is None and until is None:
        return out, 0
    known = times.notna().to_numpy(dtype=bool)
    if "time_unknown" in frame.columns:  # timed "now" because first seen now: always this night's
        known = known & frame["time_unknown"].isna().to_numpy(dtype=bool)
    values = times.fillna(0).astype("int64").to_numpy()
    if since is not None:
        out |= known & (values < since)
    if until is not None:
        out |= known & (values >= until) & (values <= future_limit(options))
    refunds = 0
    if out.any() and "event_name" in frame.columns:
        is_refund = (frame["event_name"].astype("string").str.strip() == "refund").fillna(False).to_numpy(dtype=bool)
        refunds = int((out & is_refund).sum())
    return out, refunds


def _owned_by_shard(frame: pd.DataFrame, options: TransformOptions) -> np.ndarray:
    """The rows whose client id this shard owns (etl/shard.py); rows without one go to shard 1.

    After the window, so every shard counts the same rows and `other_shard` balances.
    """
    shard = options.shard
    if shard is None or shard.whole:
        return np.ones(len(frame), dtype=bool)
    if options.prop.is_app and "app_instance_id" in frame.columns:
        client_ids = app_instance_ids(frame["app_instance_id"])
    elif not options.prop.is_app and "client_id" in frame.columns:
        client_ids = client_id_from_ga_cookie(frame["client_id"])
    else:
        client_ids = pd.Series(pd.NA, index=frame.index, dtype="string")
    return shard.owns(client_ids)

