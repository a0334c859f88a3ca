"""Cumulative refunds → the delta each night adds, over what the ledger already holds for the order.

Why here and fed by the pipeline: shop exports write refunds cumulatively (Shopify's `Refunded Amount`
only grows: 48.00 one night, 96.00 the next), GA adds up every refund event it gets. So each refund
level is its own event (its key ends in the cumulative refunded minor units, `#1001␞9600`), and it
must carry only what the earlier levels did not. The transform has no ledger by design; the pipeline
asks the ledger for the order's earlier events (`Ledger.order_history`, a read) between transform and
plan, and this function rewrites the refund events:

- value, tax and shipping become the level's amounts less the sum of the order's earlier refund levels
  (those not rejected: one that never left counts for nothing);
- items ride only on a refund that takes the order from nothing refunded to all of it (the mirror of
  the purchase); after an earlier partial refund, which items came back is unknown;
- a level that adds nothing (the same total again under a new spelling, or less than before) is not
  sent: counted as a duplicate (`refund_nothing_new`);
- a refund whose purchase this tool never planned (in the ledger or in this chunk) is sent all the same
  — the site's own tag may have sent the purchase, and GA applies a refund to its transaction id
  whoever sent the purchase — and counted (`refund_without_purchase`).

The same level read again is the same key: the ledger calls it a duplicate, so nothing is resent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import orjson
import pandas as pd

from etl.accounting import Notes
from etl.protocol import currency as cur
from etl.protocol.event_key import LEVEL

_AMOUNTS = ("value", "tax", "shipping")


@dataclass
class Deltas:
    events: pd.DataFrame  # the events to plan, refund levels rewritten to their deltas
    nothing_new: pd.DataFrame  # refund levels that add nothing: duplicates, never planned
    notes: Notes


def _levels(events: pd.DataFrame) -> pd.Series:
    if events.empty:
        return pd.Series(False, index=events.index)
    return ((events["event_name"] == "refund") & events["event_key"].str.contains(LEVEL, regex=False)).fillna(False)


def order_ids(events: pd.DataFrame) -> list[str]:
    """Transaction ids of the refund levels in a chunk's events: what to ask the ledger about."""
    levels = _levels(events)
    return sorted(events.loc[levels, "transaction_id"].dropna().astype(str).unique()) if levels.any() else []


def refund_deltas(events: pd.DataFrame, history: pd.DataFrame) -> Deltas:
    """The chunk's refund levels as deltas over `history` (`Ledger.order_history` of their orders)."""
    levels = _levels(events)
    if not levels.any():
        return Deltas(events, events.iloc[0:0], Notes())
    events = events.copy()
    refunds = history[history["event_name"] == "refund"]
    purchased = set(history.loc[history["event_name"] == "purchase", "transaction_id"].dropna()) | set(
        events.loc[events["event_name"] == "purchase", "transaction_id"].dropna())
    nothing, without_purchase = [], 0
    for idx in events.index[levels.to_numpy()]:
        tid, key = events.at[idx, "transaction_id"], events.at[idx, "event_key"]
        event = orjson.loads(events.at[idx, "event_json"])
        params = event["params"]
        code = params.get("currency") or "XXX"
        earlier = refunds[(refunds["transaction_id"] == tid) & (refunds["event_key"] != key)]
        before = {name: sum((Decimal(v) for v in earlier[name].dropna()), Decimal(0)) for name in _AMOUNTS}
        now = {name: cur.to_minor(Decimal(str(params.get(name, 0))), code) - cur.to_minor(before[name], code)
               for name in _AMOUNTS}
        # A share can shrink by a minor unit between levels (largest remainder): keep tax and shipping
        # at least 0 and let the value carry the difference, so the three still add up to the delta.
        for name in ("tax", "shipping"):
            if now[name] < 0:
                now["value"], now[name] = now["value"] + now[name], 0
        if tid not in purchased:
            without_purchase += 1
        if now["value"] <= 0 and now["tax"] <= 0 and now["shipping"] <= 0:
            nothing.append(idx)
            continue
        if len(earlier) or before["value"]:
            params.pop("items", None)
        for name in _AMOUNTS:
            if name in params or now[name]:
                if now[name] or name == "value":
                    params[name] = cur.json_number(max(now[name], 0), code)
                else:
                    params.pop(name)
        events.at[idx, "event_json"] = orjson.dumps(event).decode()
        if "money_value" in events.columns:
            events.at[idx, "money_value"] = str(-cur.from_minor(max(now["value"], 0), code))
    notes = Notes(refund_nothing_new=len(nothing), refund_without_purchase=without_purchase)
    return Deltas(events.drop(index=nothing).reset_index(drop=True), events.loc[nothing].reset_index(drop=True), notes)
