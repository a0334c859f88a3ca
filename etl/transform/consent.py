"""Consent values as the CRM recorded them → what may be sent.

Consent follows the data: a row whose analytics consent says no is not sent. A missing value follows
the source's `consent_default` policy ("deny" unless configured), so "unknown" never ships as "yes".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRANTED_WORDS = ("granted", "grant", "yes", "y", "true", "1", "opt-in", "opted in", "accepted", "ja", "oui", "si", "sí")
DENIED_WORDS = ("denied", "deny", "no", "n", "false", "0", "opt-out", "opted out", "declined", "rejected", "nein", "non")


def parse_consent(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Map consent text to "GRANTED" / "DENIED" / NA (missing); second value: mask of unrecognised text."""
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    out[text.isin(GRANTED_WORDS).fillna(False).to_numpy(dtype=bool)] = "GRANTED"
    out[text.isin(DENIED_WORDS).fillna(False).to_numpy(dtype=bool)] = "DENIED"
    present = text.notna() & (text != "")
    unrecognised = (present & out.isna()).to_numpy(dtype=bool)
    return out, unrecognised


def apply_default(parsed: pd.Series, policy: str) -> pd.Series:
    """Fill missing consent by policy: deny → DENIED, grant → GRANTED, omit → stays NA (not sent)."""
    if policy == "deny":
        return parsed.fillna("DENIED")
    if policy == "grant":
        return parsed.fillna("GRANTED")
    return parsed
