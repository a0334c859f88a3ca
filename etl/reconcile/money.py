"""Money in the proof: per event date and currency, what we sent, found, miss and hold twice.

Why integer micro-units: sums of float amounts drift (0.1 + 0.2), and a proof that says USD 6,163.00
must mean exactly that. Every amount is converted once to µ-units (value × 10^6, rounded: exact for
any amount below 9 × 10^9) and summed as int64; reports show units again.

Signs: a purchase (and any other valued event, e.g. a lead) counts positive, a refund negative, so
a date's figures net the way revenue does. Only our marked events count (compare.py decides which
exported rows are ours). The four figures, per `event_date` (the ledger's) and `currency`:
- `sent_value`: the ledger's value of every sent event (from the params sent);
- `found_value`: the export's value (purchase_revenue / refund_value, else the `value` param) of every
  exported row that proves one of them, copies included;
- `missing_value`: the ledger's value of the events judged missing (resendable or not);
- `duplicate_value`: the export's value of the copies beyond what was sent (a late original beside its
  resent copy, a retried request recorded twice).
When the export's values equal the ledger's: sent = found − duplicate + missing + the value of events
not judged yet (not yet arrived, excluded from the export, or on a date the export cannot judge).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MONEY_COLUMNS = ["event_date", "currency", "sent_value", "found_value", "missing_value", "duplicate_value"]
VALUE_COLUMNS = MONEY_COLUMNS[2:]
NO_CURRENCY = "(none)"
_MICROS = 1_000_000


def signed_micros(event_name: pd.Series, value: pd.Series) -> pd.Series:
    """Each event's value in µ-units (Int64, NA without a value); refunds negative."""
    micros = (pd.to_numeric(value, errors="coerce").astype("float64") * _MICROS).round()
    sign = np.where(event_name.astype("string").eq("refund").fillna(False).to_numpy(dtype=bool), -1, 1)
    return (micros * sign).astype("Int64")


def units(micros: int | float) -> float:
    """µ-units back to the currency's units (at most 6 decimals, as sent)."""
    return round(int(micros) / _MICROS, 6)


def money_rows(
    sent: pd.DataFrame, found: pd.DataFrame, missing: pd.DataFrame, copies: pd.DataFrame
) -> pd.DataFrame:
    """One row per event_date × currency; each frame has event_date, currency and `micros` (µ-units)."""
    parts = []
    for name, frame in zip(VALUE_COLUMNS, (sent, found, missing, copies), strict=True):
        valued = frame[frame["micros"].notna()]
        sums = valued.assign(currency=valued["currency"].fillna(NO_CURRENCY)).groupby(
            ["event_date", "currency"])["micros"].sum().astype("int64")
        parts.append(sums.rename(name))
    if not any(len(p) for p in parts):
        return pd.DataFrame(columns=MONEY_COLUMNS)
    table = pd.concat(parts, axis=1).fillna(0).astype("int64").reset_index()
    table = table.sort_values(["event_date", "currency"]).reset_index(drop=True)
    for column in VALUE_COLUMNS:
        table[column] = table[column].map(units)
    return table[MONEY_COLUMNS]


def money_totals(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per currency, the four figures over every date (summed in µ-units, exact)."""
    out: dict[str, dict[str, float]] = {}
    for currency, group in rows.groupby("currency", sort=True):
        out[str(currency)] = {c: units(int((group[c] * _MICROS).round().sum())) for c in VALUE_COLUMNS}
    return out


def worst_by_date(rows: pd.DataFrame, column: str) -> pd.Series:
    """Per event_date, the largest absolute amount of `column` over its currencies."""
    if rows.empty:
        return pd.Series(dtype="float64")
    return rows.assign(a=rows[column].abs()).groupby("event_date")["a"].max()
