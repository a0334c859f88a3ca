"""The comparison itself: what the ledger sent against what the export holds, all vectorised.

Why match on (event_name, transaction_id): every event mpetl sends carries a transaction id (for
leads, the CRM record id), and a refund shares its id with the purchase it refunds. An exported
event counts as ours when it matches a sent key or carries one of the selected runs' `mpetl_run`
markers. Matched events are counted on the ledger's date for their key, so a sender/property
time-zone disagreement shows up as `date_shifted`, not as a missing and an extra event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

KEY = ["event_name", "transaction_id"]
ROW_COLUMNS = [
    "event_date",
    "event_name",
    "status",
    "sent",
    "found",
    "missing",
    "difference",
    "ratio",
    "duplicate_copies",
    "no_session",
    "no_session_share",
    "date_shifted",
]
MISSING_COLUMNS = ["event_date", "event_name", "transaction_id", "source", "sent_run_id"]
DUPLICATE_COLUMNS = [
    "event_date",
    "event_name",
    "transaction_id",
    "count",
    "marked_copies",
    "possible_duplicate",
    "sent_run_id",
]
EXTRA_COLUMNS = ["event_date", "event_name", "transaction_id", "count", "sender"]

SENDER_OTHER = "other (no mpetl_run marker, not in ledger)"
SENDER_MPETL_UNRECORDED = "mpetl (run marker, not recorded as sent)"


@dataclass
class Comparison:
    """Frames for the reports, plus per-date verdict inputs and totals."""

    rows: pd.DataFrame
    dates: pd.DataFrame
    missing: pd.DataFrame
    duplicates: pd.DataFrame
    extras: pd.DataFrame
    totals: dict[str, float | int | None] = field(default_factory=dict)


def compare(
    sent: pd.DataFrame,
    export: pd.DataFrame,
    *,
    run_ids: set[str],
    provisional: dict[str, bool],
    tolerance: float,
    ledger_knows: Callable[[pd.DataFrame], pd.DataFrame],
) -> Comparison:
    """Compare sent events (ledger) with exported events; `provisional` maps each selected date."""
    dates = sorted(provisional)
    with_id = sent[sent["transaction_id"].notna()]
    keys = with_id.groupby(KEY, as_index=False).agg(
        ledger_date=("event_date", "first"),
        expected=("event_date", "size"),
        possible_duplicate=("possible_duplicate", "max"),
        sent_run_id=("sent_run_id", "first"),
    )

    exported = export.merge(keys[[*KEY, "ledger_date"]], on=KEY, how="left")
    matched = exported["ledger_date"].notna()
    marked = exported["run_marker"].isin(list(run_ids)).fillna(False).astype(bool)
    ours = exported[matched | (marked & exported["event_date"].isin(dates))].copy()
    ours["date"] = ours["ledger_date"].fillna(ours["event_date"])
    ours["shifted"] = ours["ledger_date"].notna() & (ours["ledger_date"] != ours["event_date"])

    copies = (
        exported[matched]
        .assign(is_marked=lambda f: f["run_marker"].notna())
        .groupby(KEY, as_index=False)
        .agg(count=("event_date", "size"), marked_copies=("is_marked", "sum"))
    )
    sent_found = with_id.merge(copies, on=KEY, how="left")
    missing = sent_found[sent_found["count"].isna()][MISSING_COLUMNS]
    missing = missing.sort_values(MISSING_COLUMNS[:3]).reset_index(drop=True)

    dup = keys.merge(copies, on=KEY, how="inner")
    dup = dup[dup["count"] > dup["expected"]].rename(columns={"ledger_date": "event_date"})
    dup["count"] = dup["count"].astype("int64")
    dup["marked_copies"] = dup["marked_copies"].astype("int64")
    duplicates = dup[DUPLICATE_COLUMNS].sort_values(DUPLICATE_COLUMNS[:3]).reset_index(drop=True)

    extras = _extras(exported, matched, marked, dates, ledger_knows)
    rows = _rows(sent, ours, missing, dup, provisional)
    per_date = _dates(rows, provisional, tolerance)
    totals = _totals(sent, ours, missing, duplicates, extras, per_date)
    totals["duplicate_copies"] = int(rows["duplicate_copies"].sum()) if len(rows) else 0
    return Comparison(rows=rows, dates=per_date, missing=missing, duplicates=duplicates, extras=extras, totals=totals)


def _extras(
    exported: pd.DataFrame,
    matched: pd.Series,
    marked: pd.Series,
    dates: list[str],
    ledger_knows: Callable[[pd.DataFrame], pd.DataFrame],
) -> pd.DataFrame:
    """Ids in the export that the selected sent events do not explain (they never fail the verdict)."""
    in_scope = ~matched & exported["transaction_id"].notna() & exported["event_date"].isin(dates)
    unmarked = exported[in_scope & exported["run_marker"].isna()]
    known = ledger_knows(unmarked[KEY].drop_duplicates())
    flagged = unmarked.merge(known.assign(known=True), on=KEY, how="left")
    other = flagged[flagged["known"].isna()].assign(sender=SENDER_OTHER)
    ours_unrecorded = exported[in_scope & marked].assign(sender=SENDER_MPETL_UNRECORDED)
    both = pd.concat([other, ours_unrecorded], ignore_index=True)
    if both.empty:
        return pd.DataFrame(columns=EXTRA_COLUMNS)
    grouped = both.groupby(["event_date", *KEY, "sender"], as_index=False).agg(count=("event_name", "size"))
    return grouped[EXTRA_COLUMNS].sort_values(EXTRA_COLUMNS[:3]).reset_index(drop=True)


def _rows(
    sent: pd.DataFrame, ours: pd.DataFrame, missing: pd.DataFrame, dup: pd.DataFrame, provisional: dict[str, bool]
) -> pd.DataFrame:
    """One row per event_date × event_name."""
    index = ["event_date", "event_name"]
    sent_n = sent.groupby(index).size().rename("sent")
    found = (
        ours.assign(no_session=~ours["has_session"])
        .rename(columns={"event_date": "export_date", "date": "event_date"})
        .groupby(index)
        .agg(found=("event_name", "size"), no_session=("no_session", "sum"), date_shifted=("shifted", "sum"))
    )
    missing_n = missing.groupby(index).size().rename("missing")
    extra_copies = (dup["count"] - dup["expected"]).groupby([dup["event_date"], dup["event_name"]]).sum()
    extra_copies = extra_copies.rename_axis(index).rename("duplicate_copies")
    rows = pd.concat([sent_n, found, missing_n, extra_copies], axis=1).fillna(0).astype("int64").reset_index()
    if rows.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    rows["status"] = rows["event_date"].map(lambda d: "provisional" if provisional.get(d) else "final")
    rows["difference"] = rows["found"] - rows["sent"]
    rows["ratio"] = (rows["found"] / rows["sent"].where(rows["sent"] > 0)).round(4)
    rows["no_session_share"] = (rows["no_session"] / rows["found"].where(rows["found"] > 0)).round(4)
    return rows[ROW_COLUMNS].sort_values(index).reset_index(drop=True)


def _dates(rows: pd.DataFrame, provisional: dict[str, bool], tolerance: float) -> pd.DataFrame:
    """Per date: counts, provisional or final, and whether the shortfall exceeds the tolerance."""
    frame = pd.DataFrame({"event_date": sorted(provisional)})
    sums = rows.groupby("event_date")[["sent", "found", "missing", "no_session"]].sum() if not rows.empty else None
    for column in ("sent", "found", "missing", "no_session"):
        frame[column] = frame["event_date"].map(sums[column]).fillna(0).astype("int64") if sums is not None else 0
    frame["status"] = frame["event_date"].map(lambda d: "provisional" if provisional[d] else "final")
    frame["missing_share"] = (frame["missing"] / frame["sent"].where(frame["sent"] > 0)).fillna(0.0).round(6)
    frame["mismatch"] = frame["missing_share"] > tolerance
    frame["failed"] = frame["mismatch"] & (frame["status"] == "final")
    return frame


def _totals(
    sent: pd.DataFrame,
    ours: pd.DataFrame,
    missing: pd.DataFrame,
    duplicates: pd.DataFrame,
    extras: pd.DataFrame,
    per_date: pd.DataFrame,
) -> dict[str, float | int | None]:
    found = len(ours)
    no_session = int((~ours["has_session"]).sum())
    return {
        "sent": len(sent),
        "sent_without_transaction_id": int(sent["transaction_id"].isna().sum()),
        "found": found,
        "missing": len(missing),
        "missing_share": round(len(missing) / len(sent), 6) if len(sent) else 0.0,
        "duplicate_ids": len(duplicates),
        "duplicate_copies": 0,  # extra copies beyond those sent; filled from the per-row counts
        "possible_duplicates_flagged": int(duplicates["possible_duplicate"].sum()) if len(duplicates) else 0,
        "extra_ids": int(extras["transaction_id"].nunique()) if len(extras) else 0,
        "extra_events": int(extras["count"].sum()) if len(extras) else 0,
        "no_session": no_session,
        "no_session_share": round(no_session / found, 6) if found else None,
        "date_shifted": int(ours["shifted"].sum()),
        "dates_final": int((per_date["status"] == "final").sum()),
        "dates_provisional": int((per_date["status"] == "provisional").sum()),
        "dates_failed": int(per_date["failed"].sum()),
    }
