"""Rows → MP events and rejects: the transform stage's one entry point, a short pipeline of rules.

Each rule (`etl/transform/rules/`) is a vectorised function over the chunk's `RuleContext`: it adds
reasons for the rows it rejects (or filters) and returns the columns it produced. The order below is
the order of a reject's reasons (docs/ARCHITECTURE.md). Dedupe against earlier runs and the 72 h
window need the ledger and the wall clock at plan and send time, so they happen in the load stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.accounting import Tally
from etl.protocol import rules as mp_rules
from etl.transform.context import Chunk, Param, RuleContext, TransformOptions
from etl.transform.rules import (
    basis,
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
    amount = money.apply(ctx, event)
    extra = params.apply(ctx, event, tid, amount)
    refunds = basis.Basis.of(ctx)
    lines = items.apply(ctx, amount, refunds, event)
    value, exact = amount.value, amount.exact
    if lines.value is not None and lines.value.notna().any():  # items without an order value set it
        value = value.where(lines.value.isna(), pd.to_numeric(lines.value, errors="coerce"))
        exact = pc.coalesce(exact, basis.exact(lines.value))
    user_id = privacy.apply(ctx, tid)
    ad_consent = consent.apply(ctx)
    where = place.apply(ctx)  # user_location and device: request-level, part of the request's identity
    is_refund = (event.names == "refund").fillna(False).to_numpy(dtype=bool)
    currency = amount.currency.where(amount.currency.isin(mp_rules.ISO_4217_CODES).fillna(False))
    moved = money.signed(exact, is_refund)
    events = build.apply(ctx, build.Parts(
        names=event, identity=who, times=when, transaction_id=tid, value=value, user_id=user_id,
        consent=ad_consent, items=lines.items, key_level=refunds.key_level, money=(currency, moved), place=where.members,
        params=[Param("transaction_id", tid, "text"), Param("value", value, "number"), amount.params[1], *extra,
                *lines.params],
    ))
    _count_money(ctx, amount, currency, moved)
    ctx.tally.buckets = ctx.reasons.counted(ctx.tally.buckets)
    ctx.tally.reject_codes.update(ctx.reasons.count_by_code())
    ctx.tally.reject_reasons.update(ctx.reasons.count_by_reason())
    ctx.tally.filtered_reasons.update(ctx.reasons.filtered_by_reason())
    rows = ctx.frame["row"]
    return TransformResult(events=events, rejects=ctx.reasons.to_frame(ctx.source, rows),
                           filtered=ctx.reasons.filtered_frame(ctx.source, rows), tally=ctx.tally)


def _count_money(ctx: RuleContext, amount: money.Money, currency: pd.Series, moved: pa.Array) -> None:
    """The money of the rows not sent (filtered, rejected); a value that was there but cannot be read
    (not a number, no or no known currency) is counted as unreadable: it carries no money."""
    reasons = ctx.reasons
    money.count(ctx.tally, "filtered", currency, moved, reasons.filtered)
    money.count(ctx.tally, "rejected", currency, moved, reasons.rejected)
    readable = pc.is_valid(moved).to_numpy(zero_copy_only=False) & currency.notna().to_numpy(dtype=bool)
    ctx.tally.value_unreadable += int((amount.value_given & ~readable & reasons.not_sent).sum())
