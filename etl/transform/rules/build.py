"""The events: each row's fate decided, the exact MP event JSON and the ledger's columns built.

Fates are decided at most twice: an event too big for any request (130 kB with its request's
identity) or carrying more than 25 params is rejected here, never planned, and the fates are decided
again without it. The JSON is built column-wise (`jsonfrag.Template`): one flat concatenation per
event, about twice as fast as building members, then params, then the event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.accounting import Notes
from etl.policy import MARKER_PARAMS
from etl.protocol import rules
from etl.protocol.event_key import digest_tail, level_tails, tails_for
from etl.transform import jsonfrag
from etl.transform.arrow_text import arrow_strings
from etl.transform.context import Param, RuleContext
from etl.transform.rules.identity import Identity
from etl.transform.rules.names import EventNames
from etl.transform.rules.times import Times
from etl.transform.timestamps import event_date_in_zone

#: Room kept for what the sender adds: ``validation_behavior`` (about 50 bytes) in the request and the
#: run marker ``"mpetl_run":"<run id>"`` (38 bytes) and on a resend ``"mpetl_resend":"<run id>"`` (42).
_REQUEST_SLACK_BYTES = 200


@dataclass(frozen=True)
class Parts:
    """What the rules produced, per row of the chunk in scope."""

    names: EventNames
    identity: Identity
    times: Times
    transaction_id: pd.Series
    value: pd.Series  # part of the dedupe key of an event without transaction id
    params: list[Param]  # in the order they are written, after engagement_time_msec, before session_id
    user_id: pd.Series | None = None
    consent: dict[str, pd.Series | str] = field(default_factory=dict)
    items: pd.Series | None = None
    key_level: pd.Series | None = None  # refund rows of a cumulative export: the key's level (basis rule)
    money: tuple[pd.Series, pa.Array] | None = None  # currency (valid codes) and signed exact value per row
    place: pd.Series | None = None  # the request members "user_location":{…},"device":{…} (NA: none)


def apply(ctx: RuleContext, parts: Parts) -> pd.DataFrame:
    """The events to plan (one per row sent); the tally's notes are set for them."""
    reasons = ctx.reasons
    for _pass in range(2):
        send_mask = ~reasons.not_sent
        events, event_json, param_parts = _events(ctx, parts, send_mask)
        k = len(events)
        oversized = _oversized(event_json, events)
        # GA4 takes at most 25 params per event; the sender adds the run marker to each, and a resend
        # its resend marker too: room for both is kept, or a resent copy would lose a param.
        crowded = np.zeros(k, dtype=bool)
        if len(param_parts) + MARKER_PARAMS > rules.MAX_PARAMS_PER_EVENT:
            present = sum(np.ones(k, dtype=np.int64) if v is None else np.asarray(pc.is_valid(v).to_numpy(zero_copy_only=False), dtype=np.int64)
                          for _, v, _ in param_parts)
            crowded = present + MARKER_PARAMS > rules.MAX_PARAMS_PER_EVENT
        if _pass or not (oversized.any() or crowded.any()):
            break
        for bad, description in (
            (oversized, f"the event is larger than one request may be ({rules.MAX_BODY_BYTES:,} bytes with its client_id and consent): shorten or drop params or items"),
            (crowded, f"the event would carry more than {rules.MAX_PARAMS_PER_EVENT} params (with the run and resend markers): declare fewer extra params"),
        ):
            full = np.zeros(ctx.n, dtype=bool)
            full[np.flatnonzero(send_mask)[bad]] = True
            reasons.add(full, "events[0]" if bad is oversized else "events[0].params", description,
                        "VALUE_OUT_OF_BOUNDS" if bad is oversized else "EXCEEDED_MAX_ENTITIES")
    ctx.tally.notes += _notes(ctx, parts, send_mask)
    return events


def _events(ctx: RuleContext, parts: Parts, sel: np.ndarray) -> tuple[pd.DataFrame, pa.Array, list]:
    def pick(series: pd.Series | None) -> pd.Series | None:
        return None if series is None else series[sel].reset_index(drop=True)

    k = int(sel.sum())
    s_names = pick(parts.names.names)
    s_ts = pd.Series(parts.times.sent[sel], dtype="int64")
    s_tid = pick(parts.transaction_id)
    s_session = pick(parts.identity.session_id)
    s_client = pick(parts.identity.client_id)
    # Params in order: (text before the value, the value's JSON text or None for a constant, text after).
    param_parts: list[tuple[str, pa.Array | None, str]] = []
    # Engagement only where the source opted in: Google counts a user as active when
    # engagement_time_msec arrives, and an offline conversion is not engagement. The run marker is
    # added by the sender: it names the run that sends, which reconciliation joins on.
    if ctx.config.engagement_time:
        param_parts.append(('"engagement_time_msec":1', None, ""))
    for param in (*parts.params, Param("session_id", parts.identity.session_id, "plain")):
        param_parts.append(_param_part(param, pick(param.values)))
    name_text = arrow_strings(s_names)
    one_name = jsonfrag.single_value(name_text)  # a source's rows mostly share one event name
    event = jsonfrag.Template(k).text('{"name":"').column(name_text, one_name).text('","timestamp_micros":')
    event.column(pc.cast(pa.array(s_ts), pa.string())).text(',"params":{')
    jsonfrag.add_members(event, param_parts)
    event_json = event.text("}}").build()

    consent_json = None
    if parts.consent:
        joined = jsonfrag.string_object({key: col if isinstance(col, str) else pick(col)
                                         for key, col in parts.consent.items()}, k)
        empty = pc.equal(joined, "{}")
        if pc.any(empty).as_py():
            joined = pc.if_else(empty, pa.scalar(None, pa.string()), joined)
        consent_json = pd.Series(pd.arrays.ArrowStringArray(joined))

    key_tail = tails_for(s_tid)  # ids are opaque: one starting with "row:" cannot pass for a digest
    if parts.key_level is not None:
        key_tail = level_tails(key_tail, pick(parts.key_level))  # a refund level is its own event
    if key_tail.isna().any():
        # No transaction id (lead events may lack one): a stable digest of what identifies the conversion.
        # The time as the row holds it, not as sent: a rerun must find the same key.
        basis = pd.DataFrame({"c": s_client, "t": pd.Series(parts.times.micros[sel], dtype="int64"), "v": pick(parts.value)})
        digest = pd.util.hash_pandas_object(basis, index=False).map(lambda h: digest_tail(f"{h:016x}"))
        key_tail = key_tail.fillna(digest.astype("string"))
    no_text = pd.Series(pd.NA, index=range(k), dtype="string")
    events = pd.DataFrame(
        {
            "source": ctx.source,
            "row": ctx.frame["row"].astype("int64")[sel].reset_index(drop=True),
            "event_key": pd.Series(pd.arrays.ArrowStringArray(
                jsonfrag.Template(k).text(ctx.source + "|").column(name_text, one_name).text("|")
                .column(arrow_strings(key_tail)).build())),
            "event_name": s_names,
            "client_id": s_client,
            "user_id": pick(parts.user_id) if parts.user_id is not None else no_text,
            "consent_json": consent_json if consent_json is not None else no_text,
            "place_json": pick(parts.place).astype("string") if parts.place is not None else no_text,
            "timestamp_micros": s_ts,
            "event_date": event_date_in_zone(s_ts, ctx.options.prop.timezone).reset_index(drop=True),
            "transaction_id": s_tid,
            "has_session": s_session.notna(),
            # Wrapped, not converted: a round trip through Python str objects cost ~50 MB per 100k rows.
            "event_json": pd.Series(pd.arrays.ArrowStringArray(event_json)),
        }
    )
    if parts.money is not None:  # what the event moves in GA's revenue, exact (the pipeline's money tally)
        currency, moved = parts.money
        events["money_currency"] = pick(currency)
        events["money_value"] = pd.Series(pc.cast(moved.filter(pa.array(sel, type=pa.bool_())), pa.string())
                                          .to_numpy(zero_copy_only=False), dtype="string")
    return events, event_json, param_parts


def _param_part(param: Param, values: pd.Series) -> tuple[str, pa.Array, str]:
    if param.kind == "number":
        return f'"{param.name}":', jsonfrag.json_number(values), ""
    if param.kind == "json":
        return f'"{param.name}":', jsonfrag.raw(values), ""
    text = jsonfrag.escaped(values) if param.kind == "text" else arrow_strings(values)
    return f'"{param.name}":"', text, '"'


def _oversized(event_json: pa.Array, events: pd.DataFrame) -> np.ndarray:
    """Events that cannot fit in one request even alone: ``{"client_id":…,"user_id":…,"consent":…,"user_location":…,"events":[…]}``."""
    size = pc.binary_length(pc.cast(event_json, pa.binary())).to_numpy(zero_copy_only=False).astype(np.int64)
    if not len(size) or int(size.max()) + 2_000 < rules.MAX_BODY_BYTES:
        return np.zeros(len(size), dtype=bool)  # the usual case: far below the limit, whatever the identity
    head = len('{"app_instance_id":,"events":[]}') + _REQUEST_SLACK_BYTES
    for column, overhead in (("client_id", 2), ("user_id", len(',"user_id":') + 2), ("consent_json", len(',"consent":')),
                             ("place_json", 1)):
        lengths = events[column].astype("string").str.encode("utf-8").str.len()
        # JSON escaping can at most double a string: count it doubled, so an event passing here always fits.
        factor = 1 if column in ("consent_json", "place_json") else 2
        size = size + (lengths.fillna(-overhead).to_numpy(dtype=np.int64) * factor + overhead)
    return size + head > rules.MAX_BODY_BYTES


def _notes(ctx: RuleContext, parts: Parts, send_mask: np.ndarray) -> Notes:
    """What is worth knowing about the events sent (GA's session attribution, items on purchases)."""
    who = parts.identity
    # GA attributes an MP event to its session only when the request arrives within 24 h of the
    # session start and the event lies inside the session: say how many will show "(not set)" anyway.
    session_start_s = pc.cast(arrow_strings(who.session_id), pa.float64()).to_numpy(zero_copy_only=False)  # digits only
    with np.errstate(invalid="ignore"):
        late = send_mask & (ctx.options.wall_micros // 1_000_000 - session_start_s > 86_400)
        before = send_mask & (parts.times.sent // 1_000_000 < session_start_s)
    names = parts.names
    purchases = send_mask if names.distinct == ["purchase"] else send_mask & (names.names == "purchase").to_numpy(dtype=bool)
    return Notes(
        no_session=int((send_mask & who.session_id.isna().to_numpy(dtype=bool)).sum()),
        session_cookie_unparsed=int((send_mask & who.session_unparsed).sum()),
        session_cookie_other_property=int((send_mask & who.other_property).sum()),
        session_too_old_to_attribute=int(late.sum()),
        timestamp_before_session_start=int(before.sum()),
        timestamp_clamped=int((send_mask & (parts.times.sent != parts.times.micros)).sum()),
        purchase_without_items=int((purchases & _no_items(parts.items, ctx.n)).sum()) if "purchase" in names.distinct else 0,
    )


def _no_items(items: pd.Series | None, n: int) -> np.ndarray:
    """Rows whose event carries no items (the reference marks items as required for purchase)."""
    if items is None:
        return np.ones(n, dtype=bool)
    text = items.astype("string")
    return (text.isna() | (text == "[]")).to_numpy(dtype=bool)
