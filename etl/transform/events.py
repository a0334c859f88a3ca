"""Rows → MP events and rejects: the transform stage's one entry point.

Every rule is a vectorised mask over the chunk; a row is rejected (any reason) or becomes an event.
Dedupe against earlier runs and the 72 h window need the ledger and the wall clock at plan and send
time, so they happen in the load stage, not here.
"""

from __future__ import annotations

import functools
import math
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.config import PropertyConfig, SourceConfig, WindowConfig
from etl.policy import EVENT_PARAMS, ITEM_PARAMS, MARKER_PARAMS, NUMERIC_PARAMS, allowed_params
from etl.protocol import rules
from etl.protocol.event_key import digest_tail, tails_for
from etl.shard import Shard
from etl.transform import jsonfrag
from etl.transform.arrow_text import arrow_strings, bool_numpy, holds_any_byte, may_have_edge_whitespace
from etl.transform.consent import apply_default, parse_consent
from etl.transform.identity import client_id_from_ga_cookie, session_cookie_for_property, session_id_from_ga_cookie
from etl.transform.numbers import parse_decimal
from etl.transform.privacy import detect_personal_data
from etl.transform.reasons import RejectReasons
from etl.transform.row_filter import apply_row_filter
from etl.transform.timestamps import event_date_in_zone, to_utc_micros

MICROS_PER_MINUTE = 60_000_000
MICROS_PER_HOUR = 60 * MICROS_PER_MINUTE
ECOMMERCE_EVENTS = ("purchase", "refund")


class Chunk(Protocol):
    """What the transform needs of an extracted chunk (etl.extract.SourceChunk satisfies it)."""

    source: str
    path: str
    frame: pd.DataFrame
    columns: dict[str, str]


@dataclass
class TransformResult:
    events: pd.DataFrame
    rejects: pd.DataFrame
    counters: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _blank(values: pd.Series) -> np.ndarray:
    """NA, empty or only whitespace (utf8_is_space: the characters utf8_trim_whitespace removes)."""
    text = arrow_strings(values)
    return bool_numpy(pc.is_null(text)) | bool_numpy(pc.equal(pc.binary_length(text), 0)) | bool_numpy(pc.utf8_is_space(text))


def _strip(values: pd.Series) -> pd.Series:
    """Trimmed text, NA where nothing is left (the trim only runs when some value has a blank edge)."""
    text = arrow_strings(values)
    if may_have_edge_whitespace(text):
        text = pc.utf8_trim_whitespace(text)
    empty = pc.equal(pc.binary_length(text), 0)
    if pc.any(empty).as_py():
        text = pc.if_else(empty, pa.scalar(None, pa.string()), text)
    return pd.Series(pd.arrays.ArrowStringArray(text), index=values.index, name=values.name)


def _holds_control_characters(values: pd.Series) -> np.ndarray:
    text = arrow_strings(values)
    if not holds_any_byte(text, "\x7f", controls=True):
        return np.zeros(len(values), dtype=bool)
    return bool_numpy(pc.match_substring_regex(text, r"[\x00-\x1f\x7f]"))


class _Frame:
    """Column access that yields an all-NA column for fields the source does not map."""

    def __init__(self, chunk: Chunk) -> None:
        self.df = chunk.frame
        self.columns = chunk.columns

    def __contains__(self, name: str) -> bool:
        return name in self.df.columns

    def get(self, name: str) -> pd.Series:
        if name in self.df.columns:
            return self.df[name]
        return pd.Series(pd.NA, index=self.df.index, dtype="string")

    def label(self, name: str) -> str:
        return self.columns.get(name, name)


def _check_event_names(names: pd.Series, label: str, allowed: frozenset[str], reasons: RejectReasons) -> None:
    """Reject rows whose event name GA4 would refuse or this source may not send; the name is never shown.

    A per-row name (e.g. an export's event type column) can hold anything a source system put there,
    personal data included, so reasons name the column and the rule only.
    """
    for name in names.dropna().unique():
        mask = (names == name).to_numpy(dtype=bool)
        if len(name) > rules.MAX_EVENT_NAME_LEN:
            reasons.add(mask, "events[0].name", f"column {label!r}: the event name is longer than {rules.MAX_EVENT_NAME_LEN} characters (value not shown)", "VALUE_OUT_OF_BOUNDS")
        elif not rules.NAME_PATTERN.fullmatch(name):
            reasons.add(mask, "events[0].name", f"column {label!r}: the event name must start with a letter and hold only letters, digits and underscores (value not shown)", "NAME_INVALID")
        elif name in rules.RESERVED_EVENT_NAMES or name.startswith(rules.RESERVED_PREFIXES):
            reasons.add(mask, "events[0].name", f"column {label!r}: the event name is reserved by Google Analytics (value not shown)", "NAME_RESERVED")
        elif name not in allowed:
            reasons.add(mask, "events[0].name", f"column {label!r}: the event name is not in this source's allowlist (its configured event, purchase, refund, the lead events, or [privacy] extra_params) (value not shown)", "NOT_ALLOWED")


def _check_amount(numbers: pd.Series, label: str, field_path: str, reasons: RejectReasons) -> pd.Series:
    """Reject non-finite or absurd amounts (a 400-digit cell parses to infinity); they become NA.

    Infinity is no JSON number: left in, it would crash the sender on every later run.
    """
    values = numbers.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        absurd = np.isinf(values) | (np.abs(values) > rules.MAX_ABS_AMOUNT)
    if not absurd.any():
        return numbers
    reasons.add(absurd, field_path, f"column {label!r} is not a finite number of at most {rules.MAX_ABS_AMOUNT:.0e} in size (value not shown)", "VALUE_OUT_OF_BOUNDS")
    return numbers.mask(absurd)


def _scan_personal_data(
    values: pd.Series,
    *,
    label: str,
    field_path: str,
    reasons: RejectReasons,
    counters: dict[str, Any],
    droppable: bool,
    on_pii: str,
) -> pd.Series:
    """Reject (or blank, when allowed) values that look like personal data; count each detector."""
    detected = detect_personal_data(values)
    hits = detected.notna().to_numpy(dtype=bool)
    if not hits.any():
        return values
    detectors = counters.setdefault("detectors", {})
    for name in pd.unique(detected[hits]):
        mask = hits & (detected == name).fillna(False).to_numpy(dtype=bool)
        detectors[name] = detectors.get(name, 0) + int(mask.sum())
        if droppable and on_pii == "drop":
            dropped = counters.setdefault("pii_dropped", {})
            dropped[label] = dropped.get(label, 0) + int(mask.sum())
        else:
            reasons.add(
                mask,
                field_path,
                f"column {label!r} looks like personal data (detector: {name}); the value is not shown and was not sent",
                "PERSONAL_DATA",
            )
    if droppable and on_pii == "drop":
        return values.mask(hits)
    return values


_ITEM_AMOUNT_KEYS = frozenset({"price", "discount"})
_ITEM_INTEGER_KEYS = frozenset({"quantity", "index"})


def _item_value_problem(key: str, v: Any) -> tuple[str, str] | None:
    """Why one kept item value would fail GA4's checks (or leak unscanned), as (rule, code); None when fine.

    The rule names the item field, never the value.
    """
    kind = type(v)
    if kind is dict or kind is list:
        return f"item field {key} holds a list or object (only text and numbers are sent)", "VALUE_INVALID"
    if key in _ITEM_AMOUNT_KEYS:
        if kind is bool or kind not in (int, float):
            return f"item field {key} is not a number", "VALUE_INVALID"
        if not math.isfinite(v) or abs(v) > rules.MAX_ABS_AMOUNT:
            return f"item field {key} is not a finite number of at most {rules.MAX_ABS_AMOUNT:.0e} in size", "VALUE_OUT_OF_BOUNDS"
        return None
    if key in _ITEM_INTEGER_KEYS:
        if kind is bool or kind not in (int, float) or (kind is float and not (math.isfinite(v) and v.is_integer())):
            return f"item field {key} is not a whole number", "VALUE_INVALID"
        if abs(v) > rules.MAX_ITEM_QUANTITY:
            return f"item field {key} is larger than {rules.MAX_ITEM_QUANTITY:,}", "VALUE_OUT_OF_BOUNDS"
        return None
    if kind is str:
        if len(v) > rules.MAX_PARAM_VALUE_LEN:
            return f"item field {key} is longer than {rules.MAX_PARAM_VALUE_LEN} characters", "VALUE_OUT_OF_BOUNDS"
        return None
    if kind is bool or kind not in (int, float) or not math.isfinite(v):
        return f"item field {key} is not text or a finite number", "VALUE_INVALID"
    return None


def _normalise_items(
    items: pd.Series, reasons: RejectReasons, counters: dict[str, Any], label: str
) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """Parse, check and re-serialise item arrays; only item params in the allowlist leave.

    Every kept value is checked the way GA4's validator will check it at send time (numbers finite and
    in range, quantities whole, text within 100 characters, no nested lists or objects, which could
    carry personal data the scan below does not reach): a row that would fail is rejected here, with the
    item field named, instead of failing the send gate every night. Also returns every string value of
    the kept items, with its row position, for the PII scan (collected here, so each order's items are
    parsed once).
    """
    out = pd.Series(pd.NA, index=items.index, dtype="string")
    strings: list[str] = []
    positions: list[int] = []
    bad_json = np.zeros(len(items), dtype=bool)
    too_many = np.zeros(len(items), dtype=bool)
    no_id = np.zeros(len(items), dtype=bool)
    problems: dict[tuple[str, str], np.ndarray] = {}
    dropped_keys: dict[str, int] = {}
    for pos, text in enumerate(items.to_numpy()):
        if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
            continue
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            bad_json[pos] = True  # also numbers too large for a double ("number is infinity")
            continue
        if not isinstance(parsed, list) or not all(isinstance(i, dict) for i in parsed):
            bad_json[pos] = True
            continue
        if len(parsed) > rules.MAX_ITEMS_PER_EVENT:
            too_many[pos] = True
            continue
        clean = []
        for item in parsed:
            kept = {k: v for k, v in item.items() if k in ITEM_PARAMS and v is not None and v != ""}
            for k in item.keys() - ITEM_PARAMS:
                dropped_keys[k] = dropped_keys.get(k, 0) + 1
            if "item_id" not in kept and "item_name" not in kept:
                no_id[pos] = True
            for k, v in kept.items():
                problem = _item_value_problem(k, v)
                if problem is not None:
                    problems.setdefault(problem, np.zeros(len(items), dtype=bool))[pos] = True
                elif isinstance(v, str):
                    strings.append(v)
                    positions.append(pos)
                elif k in _ITEM_INTEGER_KEYS and type(v) is float:
                    kept[k] = int(v)  # a spreadsheet's 2.0: GA4 wants the integer 2
            clean.append(kept)
        out.iat[pos] = orjson.dumps(clean).decode()
    reasons.add(bad_json, "events[0].params.items", f"column {label!r} does not hold a list of items (or holds a number too large to read)", "VALUE_INVALID")
    reasons.add(too_many, "events[0].params.items", f"more than {rules.MAX_ITEMS_PER_EVENT} items in one event", "EXCEEDED_MAX_ENTITIES")
    reasons.add(no_id, "events[0].params.items", "every item needs item_id or item_name", "VALUE_REQUIRED")
    for (rule, code), mask in problems.items():
        reasons.add(mask, "events[0].params.items", f"column {label!r}: {rule} (value not shown)", code)
    if dropped_keys:
        counters["item_keys_not_sent"] = dropped_keys
    return out, pd.Series(strings, dtype="string"), np.asarray(positions, dtype=np.int64)


def transform_chunk(
    chunk: Chunk,
    source: SourceConfig,
    prop: PropertyConfig,
    window: WindowConfig,
    *,
    now_micros: int,
    run_id: str,
    since_micros: int | None = None,
    until_micros: int | None = None,
    extra_params: Mapping[str, Any] | None = None,
    shard: Shard | None = None,
) -> TransformResult:
    """Map one extracted chunk to MP events; every row ends in exactly one of events/rejects.

    With `since_micros`/`until_micros` (the incremental window, e.g. an Airflow data interval), rows
    whose event time falls outside [since, until) are not part of this run: they are counted in
    `counters["outside_window"]` and otherwise left alone. Rows with an unreadable time stay in (and
    are rejected), so a bad date can never hide a row.
    """
    ts = _event_times(chunk.frame, source, window)
    outside = refunds_outside = 0
    if since_micros is not None or until_micros is not None:
        chunk, ts, outside, refunds_outside = _within_window(chunk, ts, since_micros, until_micros)
    other_shard = 0
    if shard is not None and not shard.whole:
        chunk, ts, other_shard = _owned_by_shard(chunk, ts, shard)
    f = _Frame(chunk)
    n = len(f.df)
    reasons = RejectReasons(n)
    counters: dict[str, Any] = {"rows": n, "outside_window": outside, "refunds_outside_window": refunds_outside,
                                "other_shard": other_shard}
    rows = f.df["row"].astype("int64")

    # Rows the extractor knows are not conversions (e.g. an opportunity not in a won stage).
    if "skip_reason" in f:
        skip = f.get("skip_reason").astype("string")
        for why in skip.dropna().unique():
            reasons.add((skip == why).fillna(False), "events[0].name", f"not a conversion: {why}", "FILTERED")

    apply_row_filter(f.df, source.filter, reasons)

    if "event_name" in f:
        names = _strip(f.get("event_name")).fillna(source.event)
    else:  # the source's one event: built once, not filled row by row
        names = pd.Series(pd.arrays.ArrowStringArray(pa.repeat(pa.scalar(source.event, pa.string()), n)), index=f.df.index)
    allowed_events = frozenset({source.event, *EVENT_PARAMS, *(extra_params or {})})
    _check_event_names(names, f.label("event_name") if "event_name" in f else "event (config)", allowed_events, reasons)

    # Identity.
    raw_cid = f.get("client_id")
    client_id = client_id_from_ga_cookie(raw_cid)
    cid_blank = _blank(raw_cid)
    reasons.add(cid_blank, "client_id", f"client_id is required: column {f.label('client_id')!r} is empty (no invented ids)", "VALUE_REQUIRED")
    reasons.add(~cid_blank & client_id.isna().to_numpy(dtype=bool), "client_id", f"column {f.label('client_id')!r} holds neither a _ga cookie nor a client id", "VALUE_INVALID")
    raw_sid = f.get("session_id")
    # Several _ga_<ID> cookies (one per GA4 property on the site): only this property's is its session.
    sid_text, other_property = session_cookie_for_property(raw_sid, prop.measurement_id)
    session_id = session_id_from_ga_cookie(sid_text)
    session_unparsed = ~_blank(raw_sid) & session_id.isna().to_numpy(dtype=bool) & ~other_property

    # Time (parsed above, once): exact integer micros, then the 72 h window.
    raw_ts = f.get("timestamp")
    ts_blank = _blank(raw_ts)
    ts_na = ts.isna().to_numpy(dtype=bool)
    ts_label = f.label("timestamp")
    bad_zone = np.zeros(n, dtype=bool)
    if "timezone" in f:
        zones = _strip(f.df["timezone"])
        bad_zone = (zones.notna() & ~zones.isin(_known_zones())).to_numpy(dtype=bool)
        reasons.add(bad_zone, "events[0].timestamp_micros", f"column {f.label('timezone')!r} is not a time zone this tool knows", "VALUE_INVALID")
    reasons.add(ts_blank, "events[0].timestamp_micros", f"column {ts_label!r} is empty: a conversion needs its time", "VALUE_REQUIRED")
    reasons.add(~ts_blank & ts_na & ~bad_zone, "events[0].timestamp_micros", f"column {ts_label!r} is not a date/time this tool can read", "VALUE_INVALID")
    ts_filled = ts.fillna(now_micros).astype("int64").to_numpy()
    future_limit = now_micros + int(window.future_tolerance_minutes * MICROS_PER_MINUTE)
    reasons.add(
        ~ts_na & (ts_filled > future_limit),
        "events[0].timestamp_micros",
        f"column {ts_label!r} is in the future (beyond {window.future_tolerance_minutes:g} min of clock skew)",
        "VALUE_OUT_OF_BOUNDS",
    )

    # Transaction id: required for e-commerce; the dedupe key for everything.
    tid = _strip(f.get("transaction_id"))
    tid_blank = tid.isna().to_numpy(dtype=bool)
    is_ecommerce = names.isin(ECOMMERCE_EVENTS).to_numpy(dtype=bool)
    tid_label = f.label("transaction_id")
    reasons.add(is_ecommerce & tid_blank, "events[0].params.transaction_id", f"transaction_id is required for purchase and refund: column {tid_label!r} is empty", "VALUE_REQUIRED")
    reasons.add((tid.str.len() > rules.MAX_PARAM_VALUE_LEN).fillna(False), "events[0].params.transaction_id", f"column {tid_label!r} is longer than {rules.MAX_PARAM_VALUE_LEN} characters", "VALUE_OUT_OF_BOUNDS")
    # An id is the join key of reconciliation: one holding control characters (NUL, line breaks) is corrupt.
    reasons.add(_holds_control_characters(tid), "events[0].params.transaction_id", f"column {tid_label!r} holds control characters", "VALUE_INVALID")

    # Value and currency.
    value, value_invalid = parse_decimal(f.get("value"))
    reasons.add(value_invalid, "events[0].params.value", f"column {f.label('value')!r} is not a number", "VALUE_INVALID")
    value = _check_amount(value, f.label("value"), "events[0].params.value", reasons)
    currency = _strip(f.get("currency")).str.upper()
    if source.options.get("currency"):
        currency = currency.fillna(str(source.options["currency"]).upper())
    has_value = value.notna().to_numpy(dtype=bool)
    cur_blank = currency.isna().to_numpy(dtype=bool)
    reasons.add(has_value & cur_blank, "events[0].params.currency", f"currency is required with value: column {f.label('currency')!r} is empty", "VALUE_REQUIRED")
    reasons.add(~cur_blank & ~currency.isin(rules.ISO_4217_CODES).fillna(False).to_numpy(dtype=bool), "events[0].params.currency", f"column {f.label('currency')!r} is not an ISO 4217 currency code", "VALUE_INVALID")

    # Extra params: only where the row's event allows them (an extractor's default mapping, e.g. a
    # CRM's Lead Source, never rides on an event whose allowlist lacks it). Configured params were
    # checked against the allowlist before the run started.
    extra: dict[str, pd.Series] = {}
    event_names = [str(x) for x in names.dropna().unique()]
    for column in f.df.columns:
        if not column.startswith("param."):
            continue
        pname = column.removeprefix("param.")
        label = f.label(column)
        allowing = [e for e in event_names if pname in allowed_params(e, extra_params)]
        if not allowing:
            counters.setdefault("params_not_allowed", {})[pname] = int(f.df[column].notna().sum())
            continue
        if pname in NUMERIC_PARAMS:
            numbers, invalid = parse_decimal(f.df[column])
            reasons.add(invalid, f"events[0].params.{pname}", f"column {label!r} is not a number", "VALUE_INVALID")
            numbers = _check_amount(numbers, label, f"events[0].params.{pname}", reasons)
            extra[pname] = numbers.where(names.isin(allowing))
        else:
            text = _strip(f.df[column])
            reasons.add((text.str.len() > rules.MAX_PARAM_VALUE_LEN).fillna(False), f"events[0].params.{pname}", f"column {label!r} is longer than {rules.MAX_PARAM_VALUE_LEN} characters", "VALUE_OUT_OF_BOUNDS")
            extra[pname] = _scan_personal_data(
                text.where(names.isin(allowing)), label=label, field_path=f"events[0].params.{pname}", reasons=reasons, counters=counters, droppable=True, on_pii=source.on_pii
            )

    # The core params ride only on events whose allowlist has them (the sender stops the whole run on a
    # param outside it): a row whose event lacks one is rejected here, naming the column.
    for pname, present in (
        ("transaction_id", ~tid_blank),
        ("value", value.notna().to_numpy(dtype=bool) | value_invalid.to_numpy(dtype=bool)),
        ("items", ~_blank(f.get("items")) if "items" in f else np.zeros(n, dtype=bool)),
    ):
        if not present.any():
            continue
        # Only names that are allowed events yet lack this param (rows whose event name is itself outside
        # the allowlist already carry that reason); usually there are none and no row is looked at.
        lacking = [e for e in event_names if e in allowed_events and pname not in allowed_params(e, extra_params)]
        if not lacking:
            continue
        outside_list = present & names.isin(lacking).to_numpy(dtype=bool)
        reasons.add(outside_list, f"events[0].params.{pname}", f"column {f.label(pname)!r}: {pname} is not in the allowlist for this row's event (declare it under [privacy] extra_params)", "NOT_ALLOWED")

    # Items (POS exports): parsed per order — only sources with line items pay for it.
    items = None
    if "items" in f:
        items, strings, positions = _normalise_items(f.df["items"], reasons, counters, f.label("items"))
        if len(strings):
            detected = detect_personal_data(strings)
            hit_rows = np.zeros(n, dtype=bool)
            hit_positions = positions[detected.notna().to_numpy(dtype=bool)]
            hit_rows[hit_positions] = True
            if hit_rows.any():
                detectors = counters.setdefault("detectors", {})
                for name, count in detected.dropna().value_counts().items():
                    detectors[name] = detectors.get(name, 0) + int(count)
                reasons.add(hit_rows, "events[0].params.items", f"column {f.label('items')!r} holds personal data in an item; the value is not shown and was not sent", "PERSONAL_DATA")

    # Outgoing strings that are not params we can drop.
    tid = _scan_personal_data(tid, label=tid_label, field_path="events[0].params.transaction_id", reasons=reasons, counters=counters, droppable=False, on_pii="reject")
    user_id = None
    if source.send_user_id and "user_id" in f:
        user_id = _scan_personal_data(_strip(f.get("user_id")), label=f.label("user_id"), field_path="user_id", reasons=reasons, counters=counters, droppable=False, on_pii="reject")
        reasons.add((user_id.str.len() >= rules.MAX_USER_ID_LEN).fillna(False), "user_id", f"column {f.label('user_id')!r} must be shorter than {rules.MAX_USER_ID_LEN} characters", "VALUE_OUT_OF_BOUNDS")

    # Consent follows the data.
    consent_cols: dict[str, pd.Series | str] = {}  # a str: the policy's value on every row
    policy = source.consent_default
    if "consent_analytics" in f:
        label = f.label("consent_analytics")
        parsed, unrecognised = parse_consent(f.get("consent_analytics"))
        reasons.add(unrecognised, label, f"column {label!r} holds a consent value this tool does not recognise (value not shown)", "VALUE_INVALID")
        reasons.add((parsed == "DENIED").fillna(False), label, f"analytics consent is denied in column {label!r}", "CONSENT_DENIED")
        missing = parsed.isna().to_numpy(dtype=bool) & ~unrecognised
        if policy == "deny":
            reasons.add(missing, label, f"no analytics consent recorded in column {label!r}; consent_default is 'deny'", "CONSENT_DENIED")
    elif policy == "deny":
        reasons.add(np.ones(n, dtype=bool), "consent", "this source maps no analytics consent column and consent_default is 'deny'", "CONSENT_DENIED")
    for key in ("ad_user_data", "ad_personalization"):
        if key in f:
            label = f.label(key)
            parsed, unrecognised = parse_consent(f.get(key))
            reasons.add(unrecognised, label, f"column {label!r} holds a consent value this tool does not recognise (value not shown)", "VALUE_INVALID")
            consent_cols[key] = apply_default(parsed, policy)
        elif policy != "omit":
            consent_cols[key] = "GRANTED" if policy == "grant" else "DENIED"

    # Fates, decided at most twice: an event too big for any request (130 kB with its request's identity)
    # is rejected here, never planned, and the fates are decided again without it.
    def pick(series: pd.Series | None, mask: np.ndarray) -> pd.Series | None:
        return None if series is None else series[mask].reset_index(drop=True)

    for _pass in range(2):
        # Age is not decided here: the ledger defers what the wall clock says is too old when it plans,
        # and the sender expires what aged out before it could leave (Google's clock, not --now).
        rejected = reasons.rejected
        send_mask = ~rejected
        counters["rejected"] = int(rejected.sum())
        counters["to_send"] = int(send_mask.sum())
        counters["reject_codes"] = reasons.count_by_code()
        counters["no_session"] = int((send_mask & session_id.isna().to_numpy(dtype=bool)).sum())
        counters["session_cookie_unparsed"] = int((send_mask & session_unparsed).sum())
        counters["session_cookie_other_property"] = int((send_mask & other_property).sum())
        # GA attributes an MP event to its session only when the request arrives within 24 h of the
        # session start and the event lies inside the session: say how many will show "(not set)" anyway.
        session_start_s = pc.cast(arrow_strings(session_id), pa.float64()).to_numpy(zero_copy_only=False)  # digits only
        with np.errstate(invalid="ignore"):
            late = send_mask & (now_micros // 1_000_000 - session_start_s > 86_400)
            before = send_mask & (ts_filled // 1_000_000 < session_start_s)
        counters["session_too_old_to_attribute"] = int(late.sum())
        counters["timestamp_before_session_start"] = int(before.sum())

        sel = send_mask
        k = int(sel.sum())
        s_names = pick(names, sel)
        s_ts = pd.Series(ts_filled[sel], dtype="int64")
        s_tid = pick(tid, sel)
        s_session = pick(session_id, sel)
        s_client = pick(client_id, sel)
        # Params in order: (text before the value, the value's JSON text or None for a constant, text after).
        param_parts: list[tuple[str, pa.Array | None, str]] = []
        # Engagement only where the source opted in: Google counts a user as active when
        # engagement_time_msec arrives, and an offline conversion is not engagement. The run marker is
        # added by the sender: it names the run that sends, which reconciliation joins on.
        if source.engagement_time:
            param_parts.append(('"engagement_time_msec":1', None, ""))
        param_parts += [
            ('"transaction_id":"', jsonfrag.escaped(s_tid), '"'),
            ('"value":', jsonfrag.json_number(pick(value, sel)), ""),
            # Validated ISO 4217 codes and digits-only session ids need no escaping.
            ('"currency":"', arrow_strings(pick(currency, sel)), '"'),
        ]
        for pname, series in extra.items():
            if pname in NUMERIC_PARAMS:
                param_parts.append((f'"{pname}":', jsonfrag.json_number(pick(series, sel)), ""))
            else:
                param_parts.append((f'"{pname}":"', jsonfrag.escaped(pick(series, sel)), '"'))
        if items is not None:
            param_parts.append(('"items":', jsonfrag.raw(pick(items, sel)), ""))
        param_parts.append(('"session_id":"', arrow_strings(s_session), '"'))
        # One flat concatenation per event (jsonfrag.Template).
        name_text = arrow_strings(s_names)
        one_name = jsonfrag.single_value(name_text)  # a source's rows mostly share one event name
        event = jsonfrag.Template(k).text('{"name":"').column(name_text, one_name).text('","timestamp_micros":')
        event.column(pc.cast(pa.array(s_ts), pa.string())).text(',"params":{')
        jsonfrag.add_members(event, param_parts)
        event_json = event.text("}}").build()

        consent_json = None
        if consent_cols:
            joined = jsonfrag.string_object({key: col if isinstance(col, str) else pick(col, sel)
                                             for key, col in consent_cols.items()}, k)
            empty = pc.equal(joined, "{}")
            if pc.any(empty).as_py():
                joined = pc.if_else(empty, pa.scalar(None, pa.string()), joined)
            consent_json = pd.Series(pd.arrays.ArrowStringArray(joined))

        key_tail = tails_for(s_tid)  # ids are opaque: one starting with "row:" cannot pass for a digest
        if key_tail.isna().any():
            # No transaction id (lead events may lack one): a stable digest of what identifies the conversion.
            basis = pd.DataFrame({"c": s_client, "t": s_ts, "v": pick(value, sel)})
            digest = pd.util.hash_pandas_object(basis, index=False).map(lambda h: digest_tail(f"{h:016x}"))
            key_tail = key_tail.fillna(digest.astype("string"))
        events = pd.DataFrame(
            {
                "source": chunk.source,
                "row": rows[sel].reset_index(drop=True),
                "event_key": pd.Series(pd.arrays.ArrowStringArray(
                    jsonfrag.Template(k).text(chunk.source + "|").column(name_text, one_name).text("|")
                    .column(arrow_strings(key_tail)).build())),
                "event_name": s_names,
                "client_id": s_client,
                "user_id": pick(user_id, sel) if user_id is not None else pd.Series(pd.NA, index=range(k), dtype="string"),
                "consent_json": consent_json if consent_json is not None else pd.Series(pd.NA, index=range(k), dtype="string"),
                "timestamp_micros": s_ts,
                "event_date": event_date_in_zone(s_ts, prop.timezone).reset_index(drop=True),
                "transaction_id": s_tid,
                "has_session": s_session.notna(),
                # Wrapped, not converted: a round trip through Python str objects cost ~50 MB per 100k rows.
                "event_json": pd.Series(pd.arrays.ArrowStringArray(event_json)),
            }
        )

        oversized = _oversized(event_json, s_client, events["user_id"], events["consent_json"])
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
            full = np.zeros(n, dtype=bool)
            full[np.flatnonzero(sel)[bad]] = True
            reasons.add(full, "events[0]" if bad is oversized else "events[0].params", description,
                        "VALUE_OUT_OF_BOUNDS" if bad is oversized else "EXCEEDED_MAX_ENTITIES")

    purchases = send_mask if event_names == ["purchase"] else send_mask & (names == "purchase").to_numpy(dtype=bool)
    counters["purchase_without_items"] = int((purchases & _no_items(items, n)).sum()) if "purchase" in event_names else 0

    return TransformResult(events=events, rejects=reasons.to_frame(chunk.source, rows), counters=counters)


#: Room kept for what the sender adds: ``validation_behavior`` (about 50 bytes) in the request, the
#: run marker ``"mpetl_run":"<run id>"`` (38 bytes) and on a resend ``"mpetl_resend":"<run id>"`` (42).
_REQUEST_SLACK_BYTES = 200


def _oversized(event_json: pa.Array, client_id: pd.Series, user_id: pd.Series, consent_json: pd.Series) -> np.ndarray:
    """Events that cannot fit in one request even alone: ``{"client_id":…,"user_id":…,"consent":…,"events":[…]}``."""
    size = pc.binary_length(pc.cast(event_json, pa.binary())).to_numpy(zero_copy_only=False).astype(np.int64)
    if not len(size) or int(size.max()) + 2_000 < rules.MAX_BODY_BYTES:
        return np.zeros(len(size), dtype=bool)  # the usual case: far below the limit, whatever the identity
    head = len('{"client_id":,"events":[]}') + _REQUEST_SLACK_BYTES
    for series, overhead in ((client_id, 2), (user_id, len(',"user_id":') + 2), (consent_json, len(',"consent":'))):
        lengths = series.astype("string").str.encode("utf-8").str.len()
        # JSON escaping can at most double a string: count it doubled, so an event passing here always fits.
        factor = 1 if series is consent_json else 2
        size = size + (lengths.fillna(-overhead).to_numpy(dtype=np.int64) * factor + overhead)
    return size + head > rules.MAX_BODY_BYTES


def _no_items(items: pd.Series | None, n: int) -> np.ndarray:
    """Rows whose event carries no items (the reference marks items as required for purchase)."""
    if items is None:
        return np.ones(n, dtype=bool)
    text = items.astype("string")
    return (text.isna() | (text == "[]")).to_numpy(dtype=bool)


@dataclass
class _WindowedChunk:
    source: str
    path: str
    frame: pd.DataFrame
    columns: dict[str, str]


def _event_times(frame: pd.DataFrame, source: SourceConfig, window: WindowConfig) -> pd.Series:
    """Each row's event time as exact UTC micros (NA where unreadable or unmapped)."""
    if "timestamp" not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="Int64")
    return to_utc_micros(
        frame["timestamp"],
        default_zone=source.timezone,
        zones=frame["timezone"] if "timezone" in frame.columns else None,
        date_only_time=window.date_only_time,
        ambiguous=window.ambiguous,
        nonexistent=window.nonexistent,
    )


def _within_window(chunk: Chunk, ts: pd.Series, since: int | None,
                   until: int | None) -> tuple[Chunk, pd.Series, int, int]:
    """Drop the rows whose known event time is outside [since, until); the parsed times go along.

    Also returns how many of the dropped rows were refunds: a refund timed (by the export) outside the
    window is someone else's night, and the summary says so rather than letting it vanish from view.
    """
    known = ts.notna().to_numpy(dtype=bool)
    values = ts.fillna(0).astype("int64").to_numpy()
    out = np.zeros(len(ts), dtype=bool)
    if since is not None:
        out |= known & (values < since)
    if until is not None:
        out |= known & (values >= until)
    if not out.any():
        return chunk, ts, 0, 0
    refunds = 0
    if "event_name" in chunk.frame.columns:
        refunds = int((out & (chunk.frame["event_name"].astype("string").str.strip() == "refund").fillna(False).to_numpy(dtype=bool)).sum())
    kept = chunk.frame[~out].reset_index(drop=True)
    return _WindowedChunk(chunk.source, chunk.path, kept, chunk.columns), ts[~out].reset_index(drop=True), int(out.sum()), refunds


def _owned_by_shard(chunk: Chunk, ts: pd.Series, shard: Shard) -> tuple[Chunk, pd.Series, int]:
    """Keep the rows whose client id this shard owns (etl/shard.py); rows without one go to shard 1.

    After the --since/--until window, so every shard counts the same rows and `other_shard` balances.
    """
    if "client_id" in chunk.frame.columns:
        client_ids = client_id_from_ga_cookie(chunk.frame["client_id"])
    else:
        client_ids = pd.Series(pd.NA, index=chunk.frame.index, dtype="string")
    owned = shard.owns(client_ids)
    if owned.all():
        return chunk, ts, 0
    kept = chunk.frame[owned].reset_index(drop=True)
    return (_WindowedChunk(chunk.source, chunk.path, kept, chunk.columns), ts[owned].reset_index(drop=True),
            int((~owned).sum()))
