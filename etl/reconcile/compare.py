"""The comparison itself: what the ledger sent against what the export holds, all vectorised.

Why only marked events are proof: the site's own tag (or another tool) may send a `purchase` with
the same transaction_id. An exported event counts as delivered for a ledger event only when it has
the same (event_name, transaction_id) AND carries our `mpetl_run` marker naming a run that planned
or sent that event (the sender writes the sending run's id into each request; the planning run is
accepted too, for events sent before that). A same-id event without that marker is "seen from
another sender", never ours. An event sent without a transaction id (a lead may lack one) is matched
on (event_name, event_timestamp): MP keeps the `timestamp_micros` we sent, to the microsecond.

Why these states per event: *arrived*; *not yet arrived* while the export has not shown that it
processed hits received after the event's send plus the arrival grace (evidence.py: its watermark)
and the date is still provisional; *missing* once it has (or the date is final) and the event is
not there: the early verdict, hours after sending, while MP still takes a resend. *Excluded* when
the BigQuery link leaves the event (or our stream) out of the export: never missing, never resent.
Each event not arrived says how much of the 72 h window is left, from the wall clock (Google's clock
decides, not `--now`). Dates the export cannot judge (see health.py) are left out: their events are
`export_unavailable`, never missing.

Why copies are counted: `mpetl resend` marks what it sends again (`mpetl_resend`), so an exported
row is an original or a copy. Our rows beyond the events sent are duplicates (a late original beside
its copy, a retried request recorded twice), with their value. GA4's reports deduplicate purchases
with the same transaction id *from the same user* (support.google.com/analytics/answer/12313109,
"Minimize duplicate key events with transaction IDs"); the export keeps every row, so reports from
the export need jobs/sql/dedup_events_view.sql.

Matched events are counted on the ledger's date for their key, so a sender/property time-zone
disagreement shows up as `date_shifted`, not as a missing and an extra event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from etl.reconcile.money import money_rows, money_totals, signed_micros, units, worst_by_date

KEY = ["event_name", "match_key"]
ID_KEY = ["event_name", "transaction_id"]

ARRIVED = "arrived"
NOT_YET = "not_yet_arrived"
MISSING = "missing"
UNJUDGED = "export_unavailable"
EXCLUDED = "excluded"
EXCLUDED_TEXT = "excluded from the export"

ROW_COLUMNS = [
    "event_date",
    "event_name",
    "status",
    "sent",
    "found",
    "missing",
    "not_yet_arrived",
    "export_unavailable",
    "excluded",
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
    "value",
    "currency",
    "evidence_after",
    "resend_window_left_h",
    "resendable",
]
DUPLICATE_COLUMNS = [
    "event_date",
    "event_name",
    "transaction_id",
    "count",
    "resend_copies",
    "possible_duplicate",
    "sent_run_id",
    "duplicate_value",
    "currency",
]
EXTRA_COLUMNS = ["event_date", "event_name", "transaction_id", "count", "sender"]

SENDER_OTHER = "other (no mpetl_run marker, not in ledger)"
SENDER_OTHER_SAME_ID = "other sender, same id as ours (no mpetl_run marker of its runs): not proof"
SENDER_MPETL_OTHER_RUN = "mpetl marker of a run that did not send this id: not proof"
SENDER_MPETL_UNRECORDED = "mpetl (run marker, not recorded as sent)"

_HOUR_MICROS = 3_600_000_000
_MINUTE_MICROS = 60_000_000


@dataclass(frozen=True)
class Timing:
    """The clocks, windows and evidence an event's state depends on."""

    now: datetime  # decides provisional dates (pinnable with --now)
    wall_now: datetime  # decides the resend window: Google's clock, never pinned
    arrival_grace_minutes: float
    max_age_hours: float
    safety_margin_minutes: float
    evidence_micros: int | None = None  # the export's watermark (evidence.py); None: no evidence yet


@dataclass(frozen=True)
class Scope:
    """What the export holds at all (the BigQuery link's settings; see export_scope.py)."""

    excluded_events: frozenset[str] = frozenset()
    stream_exported: bool = True

    def excludes(self, event_name: pd.Series) -> pd.Series:
        if not self.stream_exported:
            return pd.Series(True, index=event_name.index)
        return event_name.isin(list(self.excluded_events)).fillna(False).astype(bool)


@dataclass(frozen=True)
class Tolerance:
    share: float = 0.0  # of a date's sent events allowed missing (or doubled)
    value: float | None = None  # per currency and date, the amount allowed missing (or doubled); None: not checked


@dataclass
class Comparison:
    """Frames for the reports, plus per-date verdict inputs and totals."""

    rows: pd.DataFrame
    dates: pd.DataFrame
    missing: pd.DataFrame
    duplicates: pd.DataFrame
    extras: pd.DataFrame
    events: pd.DataFrame
    money: pd.DataFrame
    totals: dict[str, float | int | None] = field(default_factory=dict)
    money_totals: dict[str, dict[str, float]] = field(default_factory=dict)


def match_keys(transaction_id: pd.Series, timestamp: pd.Series) -> pd.Series:
    """`i<id>` for an event with a transaction id, `t<µs>` for one without: the two cannot collide."""
    tid = transaction_id.astype("string")
    at = pd.to_numeric(timestamp, errors="coerce").astype("Int64").astype("string")
    return ("i" + tid).where(tid.notna(), "t" + at)


def compare(
    sent: pd.DataFrame,
    export: pd.DataFrame,
    *,
    run_ids: set[str],
    provisional: dict[str, bool],
    available: dict[str, bool],
    tolerance: Tolerance,
    timing: Timing,
    ledger_knows: Callable[[pd.DataFrame], pd.DataFrame],
    scope: Scope | None = None,
    final_at: dict[str, str] | None = None,
) -> Comparison:
    """Compare sent events (ledger) with exported events; `provisional`/`available` map each date."""
    scope = scope or Scope()
    dates = sorted(provisional)
    sent = sent.assign(match_key=match_keys(sent["transaction_id"], sent["timestamp_micros"]),
                       micros=signed_micros(sent["event_name"], sent["value"]))
    export = export.assign(match_key=match_keys(export["transaction_id"], export["event_timestamp"]),
                           micros=signed_micros(export["event_name"], export["value"]))
    keys = sent.groupby(KEY, as_index=False).agg(
        ledger_date=("event_date", "first"),
        expected=("event_date", "size"),
        possible_duplicate=("possible_duplicate", "max"),
        sent_run_id=("sent_run_id", "first"),
        transaction_id=("transaction_id", "first"),
        ledger_currency=("currency", "first"),
    )
    # The markers that prove a key: the runs that planned or sent it.
    proof = (
        pd.concat(
            [sent[[*KEY, "run_id"]].rename(columns={"run_id": "run_marker"}),
             sent[[*KEY, "sent_run_id"]].rename(columns={"sent_run_id": "run_marker"})],
            ignore_index=True,
        )
        .dropna()
        .drop_duplicates()
        .assign(proof=True)
    )

    exported = export.merge(keys[[*KEY, "ledger_date", "ledger_currency", "expected"]], on=KEY, how="left")
    exported = exported.merge(proof, on=[*KEY, "run_marker"], how="left")
    matched = exported["ledger_date"].notna()
    proven = exported["proof"].notna()
    ours = _ours(exported[proven])
    same_id_other = exported[matched & ~proven]

    copies = ours.groupby(KEY, as_index=False).agg(
        count=("event_date", "size"), resend_copies=("resend", "sum"),
        duplicate_micros=("copy_micros", "sum"), currency=("currency", "first"))
    others = same_id_other.groupby(KEY, as_index=False).agg(seen_from_other_sender=("event_date", "size"))

    events = _event_states(sent, copies, others, provisional, available, timing, scope)
    missing = events[events["state"].isin([MISSING, NOT_YET])][MISSING_COLUMNS]
    missing = missing.sort_values(MISSING_COLUMNS[:3]).reset_index(drop=True)

    dup = keys.drop(columns=["ledger_currency"]).merge(copies, on=KEY, how="inner")
    dup = dup[dup["count"] > dup["expected"]].rename(columns={"ledger_date": "event_date"})
    dup = dup.assign(count=dup["count"].astype("int64"), resend_copies=dup["resend_copies"].astype("int64"),
                     duplicate_value=dup["duplicate_micros"].map(units))
    duplicates = dup[DUPLICATE_COLUMNS].sort_values(DUPLICATE_COLUMNS[:3]).reset_index(drop=True)

    marked = exported["run_marker"].isin(list(run_ids)).fillna(False).astype(bool)
    extras = _extras(exported, matched, proven, marked, dates, ledger_knows)
    money = money_rows(
        sent[["event_date", "currency", "micros"]],
        ours[["date", "currency", "micros"]].rename(columns={"date": "event_date"}),
        events.loc[events["state"] == MISSING, ["event_date", "currency", "micros"]],
        ours.loc[ours["copy"], ["date", "currency", "micros"]].rename(columns={"date": "event_date"}),
    )
    rows = _rows(sent, ours, events, dup, provisional)
    per_date = _dates(rows, money, provisional, tolerance, final_at or {})
    totals = _totals(sent, ours, events, duplicates, extras, per_date)
    return Comparison(rows=rows, dates=per_date, missing=missing, duplicates=duplicates, extras=extras,
                      events=events, money=money, totals=totals, money_totals=money_totals(money))


def _ours(proven: pd.DataFrame) -> pd.DataFrame:
    """Our exported rows, on the ledger's date, each marked original or copy.

    Per key the rows beyond the events sent are copies: originals (no resend marker) first, then the
    earliest; so a late original beside its resent copy leaves the copy counted as the duplicate.
    """
    ours = proven.assign(
        date=proven["ledger_date"],
        shifted=proven["ledger_date"] != proven["event_date"],
        resend=proven["resend_marker"].notna(),
        currency=proven["currency"].fillna(proven["ledger_currency"]),
    )
    ours = ours.sort_values([*KEY, "resend", "event_timestamp"], kind="stable")
    ours["copy"] = ours.groupby(KEY).cumcount() >= ours["expected"]
    ours["copy_micros"] = ours["micros"].where(ours["copy"], 0).fillna(0).astype("int64")
    return ours.reset_index(drop=True)


def _event_states(
    sent: pd.DataFrame,
    copies: pd.DataFrame,
    others: pd.DataFrame,
    provisional: dict[str, bool],
    available: dict[str, bool],
    timing: Timing,
    scope: Scope,
) -> pd.DataFrame:
    """One row per sent event: its state, when evidence can judge it, what is left of its resend window."""
    frame = sent.merge(copies[[*KEY, "count"]], on=KEY, how="left").merge(others, on=KEY, how="left")
    frame["seen_from_other_sender"] = frame["seen_from_other_sender"].fillna(0).astype("int64")
    sent_at = pd.to_numeric(frame["sent_at_micros"], errors="coerce")
    judge_from = sent_at + round(timing.arrival_grace_minutes * _MINUTE_MICROS)
    if timing.evidence_micros is None:
        evidenced = pd.Series(False, index=frame.index)
    else:
        evidenced = (judge_from <= timing.evidence_micros).fillna(False).astype(bool)
    date_final = ~frame["event_date"].map(provisional).fillna(False).astype(bool)
    judged = frame["event_date"].map(available).fillna(False).astype(bool)
    arrived = frame["count"].notna()
    excluded = scope.excludes(frame["event_name"]) & ~arrived
    state = pd.Series(NOT_YET, index=frame.index, dtype="object")
    state[date_final | evidenced] = MISSING
    state[arrived] = ARRIVED
    state[~judged] = UNJUDGED
    state[excluded] = EXCLUDED
    frame["state"] = state
    after = pd.to_datetime(judge_from, unit="us", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame["evidence_after"] = after.where(state.isin([NOT_YET, MISSING]))

    wall_micros = int(timing.wall_now.timestamp() * 1_000_000)
    ts = pd.to_numeric(frame["timestamp_micros"], errors="coerce")
    left_h = ((ts + timing.max_age_hours * _HOUR_MICROS - wall_micros) / _HOUR_MICROS).clip(lower=0).round(2)
    open_states = state.isin([MISSING, NOT_YET, UNJUDGED])
    frame["resend_window_left_h"] = left_h.where(open_states)
    frame["resendable"] = open_states & (left_h * 60 > timing.safety_margin_minutes)
    return frame.reset_index(drop=True)


def _extras(
    exported: pd.DataFrame,
    matched: pd.Series,
    proven: pd.Series,
    marked: pd.Series,
    dates: list[str],
    ledger_knows: Callable[[pd.DataFrame], pd.DataFrame],
) -> pd.DataFrame:
    """Exported events with a transaction id that do not prove a sent event (they never fail the verdict)."""
    in_dates = exported["event_date"].isin(dates)
    same_id = exported[matched & ~proven]
    same_id = same_id.assign(
        sender=same_id["run_marker"].isna().map({True: SENDER_OTHER_SAME_ID, False: SENDER_MPETL_OTHER_RUN})
    )
    in_scope = ~matched & exported["transaction_id"].notna() & in_dates
    unmarked = exported[in_scope & exported["run_marker"].isna()]
    known = ledger_knows(unmarked[ID_KEY].drop_duplicates())
    flagged = unmarked.merge(known.drop_duplicates().assign(known=True), on=ID_KEY, how="left")
    other = flagged[flagged["known"].isna()].assign(sender=SENDER_OTHER)
    ours_unrecorded = exported[in_scope & marked].assign(sender=SENDER_MPETL_UNRECORDED)
    parts = [f for f in (same_id, other, ours_unrecorded) if not f.empty]
    if not parts:
        return pd.DataFrame(columns=EXTRA_COLUMNS)
    both = pd.concat(parts, ignore_index=True)
    grouped = both.groupby(["event_date", *ID_KEY, "sender"], as_index=False, dropna=False).agg(
        count=("event_name", "size"))
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
        events[events["state"] == state].groupby(index).size().rename(state)
        for state in (MISSING, NOT_YET, UNJUDGED, EXCLUDED)
    ]
    extra_copies = (dup["count"] - dup["expected"]).groupby([dup["event_date"], dup["event_name"]]).sum()
    extra_copies = extra_copies.rename_axis(index).rename("duplicate_copies")
    rows = pd.concat([sent_n, found, *by_state, extra_copies], axis=1).fillna(0).astype("int64").reset_index()
    if rows.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    rows = rows.rename(columns={MISSING: "missing", EXCLUDED: "excluded"})
    rows["status"] = rows["event_date"].map(lambda d: "provisional" if provisional.get(d) else "final")
    rows["difference"] = rows["found"] - rows["sent"]
    rows["ratio"] = (rows["found"] / rows["sent"].where(rows["sent"] > 0)).round(4)
    rows["no_session_share"] = (rows["no_session"] / rows["found"].where(rows["found"] > 0)).round(4)
    return rows[ROW_COLUMNS].sort_values(index).reset_index(drop=True)


_DATE_SUMS = ("sent", "found", "missing", "not_yet_arrived", "export_unavailable", "excluded", "duplicate_copies",
              "no_session")


def _dates(rows: pd.DataFrame, money: pd.DataFrame, provisional: dict[str, bool], tolerance: Tolerance,
           final_at: dict[str, str]) -> pd.DataFrame:
    """Per date: counts, final or provisional (and from when final), and what the verdict needs.

    `failed`: events judged missing exceed the share tolerance, or (with `tolerance_value`) a
    currency's missing value exceeds it (exit 3). `duplicated`: our copies in the export exceed the
    same tolerances. `mismatch`: missing plus not yet arrived exceed the share (a provisional verdict
    when nothing failed).
    """
    frame = pd.DataFrame({"event_date": sorted(provisional)})
    sums = rows.groupby("event_date")[list(_DATE_SUMS)].sum() if not rows.empty else None
    for column in _DATE_SUMS:
        frame[column] = frame["event_date"].map(sums[column]).fillna(0).astype("int64") if sums is not None else 0
    frame["status"] = frame["event_date"].map(lambda d: "provisional" if provisional[d] else "final")
    frame["final_at"] = frame["event_date"].map(final_at)
    denominator = frame["sent"].where(frame["sent"] > 0)
    frame["missing_share"] = (frame["missing"] / denominator).fillna(0.0).round(6)
    pending_share = ((frame["missing"] + frame["not_yet_arrived"]) / denominator).fillna(0.0)
    copies_share = (frame["duplicate_copies"] / denominator).fillna(0.0)
    frame["mismatch"] = pending_share > tolerance.share
    frame["failed_value"] = False
    duplicated_value = pd.Series(False, index=frame.index)
    if tolerance.value is not None:
        frame["failed_value"] = frame["event_date"].map(worst_by_date(money, "missing_value")).fillna(0) > tolerance.value
        duplicated_value = frame["event_date"].map(worst_by_date(money, "duplicate_value")).fillna(0) > tolerance.value
    frame["failed"] = (frame["missing_share"] > tolerance.share) | frame["failed_value"]
    frame["duplicated"] = (copies_share > tolerance.share) | duplicated_value
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
    waiting = events.loc[state == NOT_YET, "evidence_after"].dropna()
    n_missing = int((state == MISSING).sum())
    return {
        "sent": len(sent),
        "sent_without_transaction_id": int(sent["transaction_id"].isna().sum()),
        "found": found,
        "arrived": int((state == ARRIVED).sum()),
        "missing": n_missing,
        "not_yet_arrived": int((state == NOT_YET).sum()),
        "evidence_expected_after": str(waiting.min()) if len(waiting) else None,
        "export_unavailable": int((state == UNJUDGED).sum()),
        "excluded_from_export": int((state == EXCLUDED).sum()),
        "missing_share": round(n_missing / len(sent), 6) if len(sent) else 0.0,
        "resendable": int(not_arrived["resendable"].sum()),
        "not_resendable": int((~not_arrived["resendable"]).sum()),
        "resend_window_left_h_min": float(left.min()) if len(left) else None,
        "seen_from_other_sender": int((not_arrived["seen_from_other_sender"] > 0).sum()),
        "duplicate_ids": len(duplicates),
        "duplicate_copies": int(ours["copy"].sum()),
        "resend_copies": int(ours["resend"].sum()),
        "possible_duplicates_flagged": int(duplicates["possible_duplicate"].sum()) if len(duplicates) else 0,
        "extra_ids": int(extras["transaction_id"].nunique()) if len(extras) else 0,
        "extra_events": int(extras["count"].sum()) if len(extras) else 0,
        "no_session": no_session,
        "no_session_share": round(no_session / found, 6) if found else None,
        **_attribution(ours),
        **_geo(ours),
        "date_shifted": int(ours["shifted"].sum()),
        "dates_final": int((per_date["status"] == "final").sum()),
        "dates_provisional": int((per_date["status"] == "provisional").sum()),
        "dates_failed": int(per_date["failed"].sum()),
        "dates_duplicated": int(per_date["duplicated"].sum()),
    }


def _geo(ours: pd.DataFrame) -> dict[str, float | int | None]:
    """How many of our arrived events GA placed in a country (`geo.country`): an in-store sale sent with
    its store's `user_location` should be all of them; a server event without one shows "(not set)"."""
    if "geo_country" not in ours:
        return {"with_geo": None, "with_geo_share": None}
    country = ours["geo_country"].astype("string")
    placed = int((country.notna() & ~country.isin(["", "(not set)"])).sum())
    return {"with_geo": placed, "with_geo_share": round(placed / len(ours), 6) if len(ours) else None}


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
