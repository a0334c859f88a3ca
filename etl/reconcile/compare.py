"""The comparison itself: what the ledger sent against what the export holds, all vectorised.

Why only marked events are proof: the site's own tag (or another tool) may send a `purchase` with
the same transaction_id. An exported event counts as delivered for a ledger event only when it has
the same (event_name, transaction_id) AND carries our `mpetl_run` marker naming a run that planned
or sent that event (the sender writes the sending run's id into each request; the planning run is
accepted too, for events sent before that).
A same-id event without that marker is "seen from another sender", never ours.

Why three states per event: *arrived*; *not yet arrived* while the export may still bring it (its
date is provisional and it was sent less than the arrival grace ago); *missing* once it is not in
the export after that (the early verdict: hours after sending, while MP still takes a resend).
Each event not arrived says how much of the 72 h window is left, from the wall clock (Google's
clock decides, not `--now`). Dates the export cannot judge (see health.py) are left out: their
events are `export_unavailable`, never missing.

Matched events are counted on the ledger's date for their key, so a sender/property time-zone
disagreement shows up as `date_shifted`, not as a missing and an extra event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

KEY = ["event_name", "transaction_id"]

ARRIVED = "arrived"
NOT_YET = "not_yet_arrived"
MISSING = "missing"
UNJUDGED = "export_unavailable"

ROW_COLUMNS = [
    "event_date",
    "event_name",
    "status",
    "sent",
    "found",
    "missing",
    "not_yet_arrived",
    "export_unavailable",
    "difference",
    "ratio",
    "duplicate_copies",
    "no_session",
    "no_session_share",
    "date_shifted",
]
MISSING_COLUMNS = [
    "event_date",
    "event_name",
    "transaction_id",
    "source",
    "sent_run_id",
    "state",
    "seen_from_other_sender",
    "resend_window_left_h",
    "resendable",
]
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
SENDER_OTHER_SAME_ID = "other sender, same id as ours (no mpetl_run marker of its runs): not proof"
SENDER_MPETL_OTHER_RUN = "mpetl marker of a run that did not send this id: not proof"
SENDER_MPETL_UNRECORDED = "mpetl (run marker, not recorded as sent)"

_HOUR_MICROS = 3_600_000_000


@dataclass(frozen=True)
class Timing:
    """The clocks and windows an event's state depends on."""

    now: datetime  # decides provisional dates and the arrival grace (pinnable with --now)
    wall_now: datetime  # decides the resend window: Google's clock, never pinned
    arrival_grace_minutes: float
    max_age_hours: float
    safety_margin_minutes: float


@dataclass
class Comparison:
    """Frames for the reports, plus per-date verdict inputs and totals."""

    rows: pd.DataFrame
    dates: pd.DataFrame
    missing: pd.DataFrame
    duplicates: pd.DataFrame
    extras: pd.DataFrame
    events: pd.DataFrame
    totals: dict[str, float | int | None] = field(default_factory=dict)


def compare(
    sent: pd.DataFrame,
    export: pd.DataFrame,
    *,
    run_ids: set[str],
    provisional: dict[str, bool],
    available: dict[str, bool],
    tolerance: float,
    timing: Timing,
    ledger_knows: Callable[[pd.DataFrame], pd.DataFrame],
) -> Comparison:
    """Compare sent events (ledger) with exported events; `provisional`/`available` map each date."""
    dates = sorted(provisional)
    with_id = sent[sent["transaction_id"].notna()]
    keys = with_id.groupby(KEY, as_index=False).agg(
        ledger_date=("event_date", "first"),
        expected=("event_date", "size"),
        possible_duplicate=("possible_duplicate", "max"),
        sent_run_id=("sent_run_id", "first"),
    )
    # The markers that prove a key: the runs that planned or sent it.
    proof = (
        pd.concat(
            [with_id[[*KEY, "run_id"]].rename(columns={"run_id": "run_marker"}),
             with_id[[*KEY, "sent_run_id"]].rename(columns={"sent_run_id": "run_marker"})],
            ignore_index=True,
        )
        .dropna()
        .drop_duplicates()
        .assign(proof=True)
    )

    exported = export.merge(keys[[*KEY, "ledger_date"]], on=KEY, how="left")
    exported = exported.merge(proof, on=[*KEY, "run_marker"], how="left")
    matched = exported["ledger_date"].notna()
    proven = exported["proof"].notna()
    ours = exported[proven].copy()
    ours["date"] = ours["ledger_date"]
    ours["shifted"] = ours["ledger_date"] != ours["event_date"]
    same_id_other = exported[matched & ~proven]

    copies = ours.groupby(KEY, as_index=False).agg(count=("event_date", "size")).assign(marked_copies=lambda f: f["count"])
    others = same_id_other.groupby(KEY, as_index=False).agg(seen_from_other_sender=("event_date", "size"))

    events = _event_states(with_id, copies, others, provisional, available, timing)
    missing = events[events["state"].isin([MISSING, NOT_YET])][MISSING_COLUMNS]
    missing = missing.sort_values(MISSING_COLUMNS[:3]).reset_index(drop=True)

    dup = keys.merge(copies, on=KEY, how="inner")
    dup = dup[dup["count"] > dup["expected"]].rename(columns={"ledger_date": "event_date"})
    dup["count"] = dup["count"].astype("int64")
    dup["marked_copies"] = dup["marked_copies"].astype("int64")
    duplicates = dup[DUPLICATE_COLUMNS].sort_values(DUPLICATE_COLUMNS[:3]).reset_index(drop=True)

    marked = exported["run_marker"].isin(list(run_ids)).fillna(False).astype(bool)
    extras = _extras(exported, matched, proven, marked, dates, ledger_knows)
    rows = _rows(sent, ours, events, dup, provisional)
    per_date = _dates(rows, provisional, tolerance)
    totals = _totals(sent, ours, events, duplicates, extras, per_date)
    totals["duplicate_copies"] = int(rows["duplicate_copies"].sum()) if len(rows) else 0
    return Comparison(
        rows=rows, dates=per_date, missing=missing, duplicates=duplicates, extras=extras, events=events, totals=totals
    )


def _event_states(
    with_id: pd.DataFrame,
    copies: pd.DataFrame,
    others: pd.DataFrame,
    provisional: dict[str, bool],
    available: dict[str, bool],
    timing: Timing,
) -> pd.DataFrame:
    """One row per sent event with a transaction id: its state and what is left of its resend window."""
    frame = with_id.merge(copies[[*KEY, "count"]], on=KEY, how="left").merge(others, on=KEY, how="left")
    frame["seen_from_other_sender"] = frame["seen_from_other_sender"].fillna(0).astype("int64")
    sent_at = pd.to_datetime(pd.to_numeric(frame["sent_at_micros"], errors="coerce"), unit="us", utc=True)
    grace = pd.Timedelta(minutes=timing.arrival_grace_minutes)
    waited_long_enough = (sent_at + grace) <= pd.Timestamp(timing.now)
    date_final = ~frame["event_date"].map(provisional).fillna(False).astype(bool)
    judged = frame["event_date"].map(available).fillna(False).astype(bool)
    state = pd.Series(NOT_YET, index=frame.index, dtype="object")
    state[date_final | waited_long_enough.fillna(False)] = MISSING
    state[frame["count"].notna()] = ARRIVED
    state[~judged] = UNJUDGED
    frame["state"] = state

    wall_micros = int(timing.wall_now.timestamp() * 1_000_000)
    ts = pd.to_numeric(frame["timestamp_micros"], errors="coerce")
    left_h = ((ts + timing.max_age_hours * _HOUR_MICROS - wall_micros) / _HOUR_MICROS).clip(lower=0).round(2)
    frame["resend_window_left_h"] = left_h.where(frame["state"] != ARRIVED)
    frame["resendable"] = (frame["state"] != ARRIVED) & (left_h * 60 > timing.safety_margin_minutes)
    return frame.reset_index(drop=True)


def _extras(
    exported: pd.DataFrame,
    matched: pd.Series,
    proven: pd.Series,
    marked: pd.Series,
    dates: list[str],
    ledger_knows: Callable[[pd.DataFrame], pd.DataFrame],
) -> pd.DataFrame:
    """Exported events that do not prove a sent event (they never fail the verdict)."""
    in_dates = exported["event_date"].isin(dates)
    same_id = exported[matched & ~proven]
    same_id = same_id.assign(
        sender=same_id["run_marker"].isna().map({True: SENDER_OTHER_SAME_ID, False: SENDER_MPETL_OTHER_RUN})
    )
    in_scope = ~matched & exported["transaction_id"].notna() & in_dates
    unmarked = exported[in_scope & exported["run_marker"].isna()]
    known = ledger_knows(unmarked[KEY].drop_duplicates())
    flagged = unmarked.merge(known.assign(known=True), on=KEY, how="left")
    other = flagged[flagged["known"].isna()].assign(sender=SENDER_OTHER)
    ours_unrecorded = exported[in_scope & marked].assign(sender=SENDER_MPETL_UNRECORDED)
    parts = [f for f in (same_id, other, ours_unrecorded) if not f.empty]
    if not parts:
        return pd.DataFrame(columns=EXTRA_COLUMNS)
    both = pd.concat(parts, ignore_index=True)
    grouped = both.groupby(["event_date", *KEY, "sender"], as_index=False).agg(count=("event_name", "size"))
    return grouped[EXTRA_COLUMNS].sort_values(EXTRA_COLUMNS[:3]).reset_index(drop=True)


def _rows(
    sent: pd.DataFrame, ours: pd.DataFrame, events: pd.DataFrame, dup: pd.DataFrame, provisional: dict[str, bool]
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
    by_state = [
        events[events["state"] == state].groupby(index).size().rename(state) for state in (MISSING, NOT_YET, UNJUDGED)
    ]
    extra_copies = (dup["count"] - dup["expected"]).groupby([dup["event_date"], dup["event_name"]]).sum()
    extra_copies = extra_copies.rename_axis(index).rename("duplicate_copies")
    rows = pd.concat([sent_n, found, *by_state, extra_copies], axis=1).fillna(0).astype("int64").reset_index()
    if rows.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    rows = rows.rename(columns={MISSING: "missing"})
    rows["status"] = rows["event_date"].map(lambda d: "provisional" if provisional.get(d) else "final")
    rows["difference"] = rows["found"] - rows["sent"]
    rows["ratio"] = (rows["found"] / rows["sent"].where(rows["sent"] > 0)).round(4)
    rows["no_session_share"] = (rows["no_session"] / rows["found"].where(rows["found"] > 0)).round(4)
    return rows[ROW_COLUMNS].sort_values(index).reset_index(drop=True)


_DATE_SUMS = ("sent", "found", "missing", "not_yet_arrived", "export_unavailable", "no_session")


def _dates(rows: pd.DataFrame, provisional: dict[str, bool], tolerance: float) -> pd.DataFrame:
    """Per date: counts, provisional or final, and whether the shortfall exceeds the tolerance.

    `failed`: events judged missing exceed the tolerance (exit 3). `mismatch`: missing plus not yet
    arrived exceed it (a provisional verdict when nothing failed).
    """
    frame = pd.DataFrame({"event_date": sorted(provisional)})
    sums = rows.groupby("event_date")[list(_DATE_SUMS)].sum() if not rows.empty else None
    for column in _DATE_SUMS:
        frame[column] = frame["event_date"].map(sums[column]).fillna(0).astype("int64") if sums is not None else 0
    frame["status"] = frame["event_date"].map(lambda d: "provisional" if provisional[d] else "final")
    denominator = frame["sent"].where(frame["sent"] > 0)
    frame["missing_share"] = (frame["missing"] / denominator).fillna(0.0).round(6)
    pending_share = ((frame["missing"] + frame["not_yet_arrived"]) / denominator).fillna(0.0)
    frame["mismatch"] = pending_share > tolerance
    frame["failed"] = frame["missing_share"] > tolerance
    return frame


def _totals(
    sent: pd.DataFrame,
    ours: pd.DataFrame,
    events: pd.DataFrame,
    duplicates: pd.DataFrame,
    extras: pd.DataFrame,
    per_date: pd.DataFrame,
) -> dict[str, float | int | None]:
    found = len(ours)
    no_session = int((~ours["has_session"]).sum())
    state = events["state"]
    not_arrived = events[state.isin([MISSING, NOT_YET])]
    left = not_arrived.loc[not_arrived["resendable"], "resend_window_left_h"]
    n_missing = int((state == MISSING).sum())
    return {
        "sent": len(sent),
        "sent_without_transaction_id": int(sent["transaction_id"].isna().sum()),
        "found": found,
        "missing": n_missing,
        "not_yet_arrived": int((state == NOT_YET).sum()),
        "export_unavailable": int((state == UNJUDGED).sum()),
        "missing_share": round(n_missing / len(sent), 6) if len(sent) else 0.0,
        "resendable": int(not_arrived["resendable"].sum()),
        "not_resendable": int((~not_arrived["resendable"]).sum()),
        "resend_window_left_h_min": float(left.min()) if len(left) else None,
        "seen_from_other_sender": int((not_arrived["seen_from_other_sender"] > 0).sum()),
        "duplicate_ids": len(duplicates),
        "duplicate_copies": 0,  # extra copies beyond those sent; filled from the per-row counts
        "possible_duplicates_flagged": int(duplicates["possible_duplicate"].sum()) if len(duplicates) else 0,
        "extra_ids": int(extras["transaction_id"].nunique()) if len(extras) else 0,
        "extra_events": int(extras["count"].sum()) if len(extras) else 0,
        "no_session": no_session,
        "no_session_share": round(no_session / found, 6) if found else None,
        **_attribution(ours),
        "date_shifted": int(ours["shifted"].sum()),
        "dates_final": int((per_date["status"] == "final").sum()),
        "dates_provisional": int((per_date["status"] == "provisional").sum()),
        "dates_failed": int(per_date["failed"].sum()),
    }


def _attribution(ours: pd.DataFrame) -> dict[str, float | int | None]:
    """Shares of found events GA attributed, from the export's own traffic-source fields.

    `session_traffic_source_last_click` is what GA decided (a session source other than
    "(not set)"); `collected_traffic_source` is what the hit itself carried. None when the export
    holds neither field for these events (an older export, or the local collector).
    """
    session = ours["session_source"]
    collected = ours["collected_source"]
    if not len(ours) or (session.isna().all() and collected.isna().all()):
        return {"session_attributed": None, "session_attributed_share": None, "collected_source_share": None}
    attributed = int((session.notna() & (session != "(not set)")).sum())
    return {
        "session_attributed": attributed,
        "session_attributed_share": round(attributed / len(ours), 6),
        "collected_source_share": round(int(collected.notna().sum()) / len(ours), 6),
    }
