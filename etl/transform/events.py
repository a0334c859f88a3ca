"""Rows → MP events and rejects: the transform stage's one entry point, a short pipeline of rules.

Each rule (`etl/transform/rules/`) is a vectorised function over the chunk's `RuleContext`: it adds
reasons for the rows it rejects (or filters) and returns the columns it produced. The order below is
the order of a reject's reasons (docs/ARCHITECTURE.md). Dedupe against earlier runs and the 72 h
window need the ledger and the wall clock at plan and send time, so they happen in the load stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from etl.accounting import Tally
from etl.transform.context import Chunk, Param, TransformOptions
from etl.transform.rules import (
    build,
    cells,
    consent,
    filters,
    identity,
    items,
    money,
    names,
    params,
    place,
    privacy,
    scope,
    times,
    transaction,
)


@dataclass
class TransformResult:
    events: pd.DataFrame  # one row per event to plan (docs/ARCHITECTURE.md lists the columns)
    rejects: pd.DataFrame  # source, row, reasons: one row per rejected row
    filtered: pd.DataFrame = field(default_factory=pd.DataFrame)  # source, row, code, reason: not conversions
    tally: Tally = field(default_factory=Tally)  # buckets filtered/rejected/outside_window/other_shard, notes


def transform_chunk(chunk: Chunk, options: TransformOptions) -> TransformResult:
    """Map one extracted chunk to MP events; every row ends in exactly one of events / rejects / a bucket.

    Rows timed outside [since, until) or owned by another shard are counted (`outside_window`,
    `other_shard`) and left alone; every other row becomes an event or is rejected (or filtered).
    """
    ctx = scope.open_chunk(chunk, options)  # times parsed; the window and the shard select the rows
    filters.apply(ctx)  # not conversions: stage filters, [sources.filter]
    cells.apply(ctx)  # cells the reader refused (over max_field_bytes)
    event = names.apply(ctx)
    who = identity.apply(ctx)
    when = times.apply(ctx)
    tid = transaction.apply(ctx, event)
    amount = money.apply(ctx)
    extra = params.apply(ctx, event, tid, amount)
    lines = items.apply(ctx)
    user_id = privacy.apply(ctx, tid)
    ad_consent = consent.apply(ctx)
    where = place.apply(ctx)  # user_location and device: request-level, part of the request's identity
    events = build.apply(ctx, build.Parts(
        names=event, identity=who, times=when, transaction_id=tid, value=amount.value, user_id=user_id,
        consent=ad_consent, items=lines.items, place=where.members,
        params=[Param("transaction_id", tid, "text"), *amount.params, *extra, *lines.params],
    ))
    ctx.tally.buckets = ctx.reasons.counted(ctx.tally.buckets)
    ctx.tally.reject_codes.update(ctx.reasons.count_by_code())
    ctx.tally.filtered_reasons.update(ctx.reasons.filtered_by_reason())
    rows = ctx.frame["row"]
    return TransformResult(events=events, rejects=ctx.reasons.to_frame(ctx.source, rows),
                           filtered=ctx.reasons.filtered_frame(ctx.source, rows), tally=ctx.tally)
