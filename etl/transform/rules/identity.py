"""Who: `client_id` from the `_ga` cookie (required: no invented ids), `session_id` from the property's
`_ga_<ID>` cookie (optional: without it GA shows "(not set)" source/medium, counted in the notes).

An app stream (`[property] firebase_app_id`) is identified by `app_instance_id` instead: Firebase's
32 hexadecimal digits (MP reference), read from the column the source maps to `app_instance_id` and
carried in the events' `client_id` column (the ledger's and the batching's identity); the sender names
it `app_instance_id` in the body. Its session id is a bare number (there is no `_ga_<ID>` cookie)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.transform.arrow_text import blank
from etl.transform.context import RuleContext
from etl.transform.identity import (
    app_instance_ids,
    client_id_from_ga_cookie,
    session_cookie_for_property,
    session_id_from_ga_cookie,
)


@dataclass(frozen=True)
class Identity:
    client_id: pd.Series
    session_id: pd.Series  # digits (the session start in Unix seconds) or NA
    session_unparsed: np.ndarray  # a session cookie was there but could not be read
    other_property: np.ndarray  # only other GA4 properties' session cookies were there


def apply(ctx: RuleContext) -> Identity:
    if ctx.options.prop.is_app:
        return _app(ctx)
    raw_cid = ctx.get("client_id")
    client_id = client_id_from_ga_cookie(raw_cid)
    cid_blank = blank(raw_cid)
    label = ctx.label("client_id")
    ctx.reasons.add(cid_blank, "client_id", f"client_id is required: column {label!r} is empty (no invented ids)", "VALUE_REQUIRED")
    ctx.reasons.add(~cid_blank & client_id.isna().to_numpy(dtype=bool), "client_id", f"column {label!r} holds neither a _ga cookie nor a client id", "VALUE_INVALID")
    raw_sid = ctx.get("session_id")
    # Several _ga_<ID> cookies (one per GA4 property on the site): only this property's is its session.
    sid_text, other_property = session_cookie_for_property(raw_sid, ctx.options.prop.measurement_id)
    session_id = session_id_from_ga_cookie(sid_text)
    session_unparsed = ~blank(raw_sid) & session_id.isna().to_numpy(dtype=bool) & ~other_property
    return Identity(client_id, session_id, session_unparsed, other_property)


def _app(ctx: RuleContext) -> Identity:
    raw = ctx.get("app_instance_id")
    ids = app_instance_ids(raw)
    empty = blank(raw)
    label = ctx.label("app_instance_id")
    ctx.reasons.add(empty, "app_instance_id", f"app_instance_id is required for an app stream: column {label!r} is "
                    "empty (map the app's instance id with columns.app_instance_id; no invented ids)", "VALUE_REQUIRED")
    ctx.reasons.add(~empty & ids.isna().to_numpy(dtype=bool), "app_instance_id",
                    f"column {label!r} holds no app instance id (32 hexadecimal digits)", "VALUE_INVALID")
    raw_sid = ctx.get("session_id")
    session_id = session_id_from_ga_cookie(raw_sid)
    unparsed = ~blank(raw_sid) & session_id.isna().to_numpy(dtype=bool)
    return Identity(ids, session_id, unparsed, np.zeros(ctx.n, dtype=bool))
