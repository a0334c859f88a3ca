"""Consent follows the data: a row whose analytics consent says no is not sent; a missing value follows
the source's `consent_default` ("deny" unless configured), so "unknown" never ships as "yes". Ad
consents ride in the MP `consent` object (`ad_user_data`, `ad_personalization`).

A denied consent (`CONSENT_DENIED`) or a missing one under `consent_default = "deny"` (`NO_CONSENT`)
is *filtered*, not rejected: the person said no (or never said yes), the data is not wrong, and there
is nothing to fix. A source that maps no consent column at all under "deny" rejects every row instead:
that is the mapping to fix (`mpetl validate` says "nothing usable"). An unrecognised value is bad
data: rejected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.transform.consent import apply_default, parse_consent
from etl.transform.context import RuleContext

AD_CONSENTS = ("ad_user_data", "ad_personalization")


def apply(ctx: RuleContext) -> dict[str, pd.Series | str]:
    """Each ad consent to send, per row or (a str) the policy's value on every row."""
    reasons, policy = ctx.reasons, ctx.config.consent_default
    if ctx.has("consent_analytics"):
        label = ctx.label("consent_analytics")
        parsed, unrecognised = parse_consent(ctx.get("consent_analytics"))
        _unrecognised(ctx, label, unrecognised)
        reasons.filter((parsed == "DENIED").fillna(False), label, f"analytics consent is denied in column {label!r}", "CONSENT_DENIED")
        missing = parsed.isna().to_numpy(dtype=bool) & ~unrecognised
        if policy == "deny":
            reasons.filter(missing, label, f"no analytics consent recorded in column {label!r}; consent_default is 'deny'", "NO_CONSENT")
    elif policy == "deny":
        reasons.add(np.ones(ctx.n, dtype=bool), "consent", "this source maps no analytics consent column and consent_default is 'deny'", "CONSENT_DENIED")
    out: dict[str, pd.Series | str] = {}
    for key in AD_CONSENTS:
        if ctx.has(key):
            label = ctx.label(key)
            parsed, unrecognised = parse_consent(ctx.get(key))
            _unrecognised(ctx, label, unrecognised)
            out[key] = apply_default(parsed, policy)
        elif policy != "omit":
            out[key] = "GRANTED" if policy == "grant" else "DENIED"
    return out


def _unrecognised(ctx: RuleContext, label: str, mask: np.ndarray) -> None:
    ctx.reasons.add(mask, label, f"column {label!r} holds a consent value this tool does not recognise (value not shown)", "VALUE_INVALID")
