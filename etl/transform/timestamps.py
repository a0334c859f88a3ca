"""Vendor timestamps → exact UTC microseconds since the epoch, and the GA4 ``event_date`` of an instant.

Why integers all the way: MP's ``timestamp_micros`` is an integer and reconciliation matches events by it,
so a float round-trip (which loses microseconds beyond 2^53 µs ≈ year 2255 but, worse, rounds fractional
seconds on the way) is never used. Fields are parsed into integers and combined with integer arithmetic on
``datetime64[us]`` values.

Rules (docs/transform.md quotes them):

* **An explicit offset wins.** ``Z``, ``UTC``/``GMT``, ``±HH``, ``±HHMM`` or ``±HH:MM`` after the time
  (``2026-11-20T14:03:11Z``, ``2026-11-20 14:03:11 -0500``, ``2026-11-20T14:03:11+01:00``) fixes the
  instant; the row's zone and the source's zone are ignored.
* **Otherwise the time is local wall-clock time** in the row's zone (the ``timezone`` column, an IANA
  name; empty → the source's zone) or the source's ``timezone``. DST is applied as the zone's rules say
  for that date. An unknown zone name makes the row unreadable (NA), never silently UTC.
* **Ambiguous local times** (the hour repeated when clocks go back, e.g. 01:30 on 2026-10-25 in
  Europe/London) mean the earliest of the two instants (``ambiguous="earliest"``, the default: the first
  time the clock showed it) or the latest (``"latest"``).
* **Non-existent local times** (skipped when clocks go forward, e.g. 01:30 on 2026-03-29 in London) move
  to the first valid instant after the gap (``nonexistent="shift_forward"``: 02:00 local) or to the last
  microsecond before it (``"shift_backward"``).
* **Date-only values** take ``date_only_time`` (default ``00:00:00``) as local time, then follow the rules
  above.
* **Date layouts** — each is unambiguous, so one file can mix them row by row:

  - year first, ``YYYY-MM-DD`` (also ``/`` or ``.`` between fields): ISO 8601;
  - slashes with the year last, ``MM/DD/YYYY``: **month first** (US CRM exports: Salesforce, HubSpot);
  - dots with the year last, ``DD.MM.YYYY``: **day first** (European exports).

  ``20/11/2026`` is therefore *not* read as 20 November: month 20 does not exist, so the row is
  unreadable. Guessing per row would make ``03/04/2026`` mean different days in the same file. Dashes with
  the year last (``20-11-2026``) and two-digit years are not accepted for the same reason.
* **Times**: ``HH:MM``, ``HH:MM:SS`` or ``HH:MM:SS.ffffff`` (``,`` also accepted before the fraction; up
  to 9 fraction digits, truncated to microseconds), 24-hour, or 12-hour with ``AM``/``PM`` (``2:03 PM``,
  ``12:00 AM`` = midnight). The date and time are separated by ``T``, spaces or ``, ``.
* Anything else (empty, out-of-range fields such as 2026-02-30 or 24:00, leap seconds, text) is NA.

Speed: rows are sorted into layouts with cheap string tests; the common layouts (ISO 8601, US
``MM/DD/YYYY [h:MM[:SS] AM]``, European ``DD.MM.YYYY [HH:MM[:SS]]``) are vetted by a capture-free RE2
pattern and parsed by Arrow's own ISO cast or strptime; everything else goes through one capturing regex
(about three times slower). Naive values are localised with pandas once per distinct zone; pandas'
``nonexistent`` shifting assumes whole-hour jumps, so skipped times are placed by bisection instead.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.arrow_text import arrow_strings, bool_numpy

AMBIGUOUS_CHOICES = ("earliest", "latest")
NONEXISTENT_CHOICES = ("shift_forward", "shift_backward")

MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_HOUR = 3600 * MICROS_PER_SECOND
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND



@dataclass(frozen=True)
class _FastLayout:
    """A layout common enough to deserve Arrow's own parser; its capture-free RE2 pattern vets each row.

    ``strptime`` None means Arrow's ISO-8601 cast. Arrow's strptime rolls 02/30 over into March, so for
    those layouts the month written in the text (field ``month_field`` when split on ``separator``) is
    compared with the parsed month. A fast layout only ever *accepts* rows: anything it cannot read goes
    on to the general pattern, which judges it.
    """

    pattern: str
    strptime: str | None = None
    separator: str = "/"
    month_field: int = 0
    with_offset: bool = False
    date_only: bool = False


_ISO_DATE, _US_DATE, _EU_DATE = r"^\d{4}-\d{2}-\d{2}", r"^\d{1,2}/\d{1,2}/\d{4}", r"^\d{1,2}\.\d{1,2}\.\d{4}"
_ISO_TIME = r"[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"
# ISO 8601 as Arrow's cast reads it exactly as we would (a date, optional time, 0–6 fraction digits).
_ISO_LAYOUTS = (
    _FastLayout(_ISO_DATE + _ISO_TIME + r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", with_offset=True),
    _FastLayout(_ISO_DATE + _ISO_TIME + r"$"),
    _FastLayout(_ISO_DATE + r"$", date_only=True),
)
# US CRM exports (Salesforce, HubSpot): indexed by 2 × (number of colons) + (ends with AM/PM).
_US_LAYOUTS = (
    _FastLayout(_US_DATE + r"$", "%m/%d/%Y", date_only=True),
    None,
    _FastLayout(_US_DATE + r" \d{1,2}:\d{2}$", "%m/%d/%Y %H:%M"),
    _FastLayout(_US_DATE + r" \d{1,2}:\d{2} [AaPp][Mm]$", "%m/%d/%Y %I:%M %p"),
    _FastLayout(_US_DATE + r" \d{1,2}:\d{2}:\d{2}$", "%m/%d/%Y %H:%M:%S"),
    _FastLayout(_US_DATE + r" \d{1,2}:\d{2}:\d{2} [AaPp][Mm]$", "%m/%d/%Y %I:%M:%S %p"),
)
# European exports: indexed by the number of colons.
_EU_LAYOUTS = (
    _FastLayout(_EU_DATE + r"$", "%d.%m.%Y", ".", 1, date_only=True),
    _FastLayout(_EU_DATE + r" \d{1,2}:\d{2}$", "%d.%m.%Y %H:%M", ".", 1),
    _FastLayout(_EU_DATE + r" \d{1,2}:\d{2}:\d{2}$", "%d.%m.%Y %H:%M:%S", ".", 1),
)


_TIME = (
    r"(?:(?:[Tt]|,?\s+)(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?"
    r"\s*(?:(?P<meridiem>[AaPp])\.?[Mm]\.?)?"
    r"\s*(?P<offset>[Zz]|(?i:UTC|GMT)|(?P<sign>[+-])(?P<off_h>\d{2}):?(?P<off_m>\d{2})?)?)?"
)
# One capturing pass for every accepted layout: exactly one date alternative participates, so joining the
# three groups of a field picks it.
_GENERAL = (
    r"^(?:(?P<y1>\d{4})[-/.](?P<m1>\d{1,2})[-/.](?P<d1>\d{1,2})"
    r"|(?P<m2>\d{1,2})/(?P<d2>\d{1,2})/(?P<y2>\d{4})"
    r"|(?P<d3>\d{1,2})\.(?P<m3>\d{1,2})\.(?P<y3>\d{4}))" + _TIME + r"$"
)

_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?")


def to_utc_micros(
    values: pd.Series,
    *,
    default_zone: str,
    zones: pd.Series | None = None,
    date_only_time: str = "00:00:00",
    ambiguous: str = "earliest",
    nonexistent: str = "shift_forward",
) -> pd.Series:
    """Exact UTC microseconds (``Int64``) for each value, NA where unreadable; the rules are in the module doc.

    ``zones`` (same length as ``values``, matched by position) gives a per-row IANA zone for naive values.
    ``values`` may also be a datetime64 Series: aware values keep their instant, naive ones are local time.
    """
    if ambiguous not in AMBIGUOUS_CHOICES:
        raise ValueError(f"ambiguous must be one of {AMBIGUOUS_CHOICES}, got {ambiguous!r}")
    if nonexistent not in NONEXISTENT_CHOICES:
        raise ValueError(f"nonexistent must be one of {NONEXISTENT_CHOICES}, got {nonexistent!r}")
    if zones is not None and len(zones) != len(values):
        raise ValueError(f"zones has {len(zones)} values for {len(values)} timestamps")
    date_only_micros = _time_of_day_micros(date_only_time)
    parsed = _Parsed(len(values))
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        known = values.notna().to_numpy()
        parsed.set_utc(known, pd.DatetimeIndex(values).as_unit("us").asi8[known])  # asi8 of aware: UTC
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        known = values.notna().to_numpy()
        parsed.set_local(known, pd.DatetimeIndex(values).as_unit("us").asi8[known])
    else:
        _parse_text(_arrow_strings(values), parsed, date_only_micros)
    if parsed.naive.any():
        _localise(parsed, _row_zones(zones, default_zone, parsed.naive), default_zone, ambiguous, nonexistent)
    return pd.Series(pd.arrays.IntegerArray(parsed.utc, ~parsed.known), index=values.index, name=values.name)


def event_date_in_zone(micros: pd.Series, zone: str) -> pd.Series:
    """``YYYYMMDD`` of each instant in ``zone`` (the GA4 export's ``event_date``), NA where micros is NA."""
    as_int = micros.astype("Int64")
    if as_int.empty:
        return pd.Series([], index=micros.index, name=micros.name, dtype="str")
    missing = as_int.isna().to_numpy()
    utc = as_int.to_numpy(dtype="int64", na_value=0)
    local = _to_local_micros(utc, zone)
    days = np.floor_divide(local, MICROS_PER_DAY)
    first, last = int(days.min()), int(days.max())
    if last - first < 4096:  # a chunk spans a few days: number them from the first
        codes, distinct = days - first, np.arange(first, last + 1)
    else:
        codes, distinct = pd.factorize(days)
    labels = np.char.replace(np.datetime_as_string(distinct.astype("datetime64[D]"), unit="D"), "-", "")
    dates = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32), mask=missing), pa.array(labels))
    return pd.Series(dates.cast(pa.string()), index=micros.index, name=micros.name, dtype="str")


def _to_local_micros(utc: np.ndarray, zone: str) -> np.ndarray:
    """Wall-clock micros in ``zone`` of UTC micros, the zone's rules looked up once per distinct hour.

    An hour whose first and last microsecond have the same UTC offset has that offset throughout (no zone
    changes its offset twice within an hour); the rows in an hour that holds a change, or all rows when
    they span too many hours, are converted one by one.
    """
    hours = np.floor_divide(utc, MICROS_PER_HOUR)
    first, last = int(hours.min()), int(hours.max())
    if last - first >= max(len(utc) // 4, 64):
        return _utc_offsets(utc, zone) + utc
    starts = np.arange(first, last + 1, dtype=np.int64) * MICROS_PER_HOUR
    offset_at_start = _utc_offsets(starts, zone)
    steady = offset_at_start == _utc_offsets(starts + MICROS_PER_HOUR - 1, zone)
    slot = hours - first
    local = utc + offset_at_start[slot]
    changing = ~steady[slot]
    if changing.any():
        local[changing] = utc[changing] + _utc_offsets(utc[changing], zone)
    return local


class _Parsed:
    """Per-row parse state: a UTC instant, or a local wall time still to be placed in a zone."""

    def __init__(self, n: int) -> None:
        self.utc = np.zeros(n, dtype=np.int64)
        self.known = np.zeros(n, dtype=bool)
        self.local = np.zeros(n, dtype=np.int64)
        self.naive = np.zeros(n, dtype=bool)

    def set_utc(self, rows: np.ndarray, micros: np.ndarray) -> None:
        self.utc[rows] = micros
        self.known[rows] = True

    def set_local(self, rows: np.ndarray, micros: np.ndarray) -> None:
        self.local[rows] = micros
        self.naive[rows] = True


def _parse_text(text: pa.Array, parsed: _Parsed, date_only_micros: int) -> None:
    """Fill ``parsed`` from strings: Arrow's parsers for the common layouts, the general pattern for the rest.

    Rows are sorted into layouts with cheap string tests (the date separator, colons, a final AM/PM), so
    each row costs one capture-free regex pass and one Arrow parse; RE2's per-call overhead makes trying
    layout after layout on every row several times slower.
    """
    pending = bool_numpy(pc.is_valid(text))
    _parse_fixed_width_iso(text, pending, parsed, date_only_micros)
    if not pending.any():
        return
    head = pc.utf8_slice_codeunits(text, 0, 5)
    for separator, classify in (("-", _iso_layout), ("/", _us_layout), (".", _eu_layout)):
        rows = np.flatnonzero(pending & bool_numpy(pc.match_substring(head, separator)))
        if not len(rows):
            continue
        subset = text if len(rows) == len(text) else text.take(pa.array(rows))
        if separator != "-":  # "11/20/2026, 2:03 PM" and "20.11.2026, 14:03" (browsers' toLocaleString)
            subset = pc.replace_substring(subset, ", ", " ", max_replacements=1)
        layouts, which = classify(subset)
        for index in np.unique(which[which >= 0]):
            layout = layouts[index]
            assert layout is not None  # the classifiers never pick an empty slot
            in_layout = which == index
            candidates = _only(subset, in_layout)
            vetted = bool_numpy(pc.match_substring_regex(candidates, layout.pattern))
            micros, read = _read_fast(_only(candidates, vetted), layout)
            accepted = rows[in_layout][vetted][read]
            if layout.with_offset:
                parsed.set_utc(accepted, micros[read])
            else:
                parsed.set_local(accepted, micros[read] + (date_only_micros if layout.date_only else 0))
            pending[accepted] = False
    if pending.any():
        _parse_general(text, pending, parsed, date_only_micros)


# Fixed-width ISO 8601 as machines write it, read straight from the bytes: `YYYY-MM-DD`,
# `YYYY-MM-DD[T ]HH:MM:SS` and the same with `Z`. Positions of the digits and of the fixed characters.
_FIXED_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_FIXED_MARKS = {4: b"-", 7: b"-", 10: b"T ", 13: b":", 16: b":", 19: b"Z"}


def _parse_fixed_width_iso(text: pa.Array, pending: np.ndarray, parsed: _Parsed, date_only_micros: int) -> None:
    """Accept the rows in a fixed-width ISO layout (the bulk of most files) with integer arithmetic on
    their bytes; every other row stays pending for the layouts below, which would read these the same.

    Only well-formed values are accepted (digits where digits go, real dates, 24-hour times), so a row
    this path leaves alone is judged exactly as before.
    """
    if not isinstance(text, pa.StringArray) or len(text) == 0:
        return
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + len(text) + 1].astype(np.int64)
    lengths = np.diff(offsets)
    data = text.buffers()[2]
    if data is None:
        return
    raw = np.frombuffer(data, dtype=np.uint8)
    for width in (19, 20, 10):
        rows = np.flatnonzero(pending & (lengths == width))
        if not len(rows):
            continue
        starts = offsets[rows]
        if starts[-1] - starts[0] == width * (len(rows) - 1):  # consecutive values: a view, no gather
            matrix = raw[starts[0]:starts[0] + width * len(rows)].reshape(len(rows), width)
        else:
            matrix = raw[starts[:, None] + np.arange(width)]
        ok = np.ones(len(rows), dtype=bool)
        for position, allowed in _FIXED_MARKS.items():
            if position < width:
                column = matrix[:, position]
                ok &= functools.reduce(np.logical_or, [column == mark for mark in allowed])
        positions = _FIXED_DIGITS[:8] if width == 10 else _FIXED_DIGITS
        digits = matrix[:, positions] - np.uint8(48)  # non-digits wrap around above 9
        ok &= (digits <= 9).all(axis=1)
        digits = digits.astype(np.int64)
        year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
        month = digits[:, 4] * 10 + digits[:, 5]
        day = digits[:, 6] * 10 + digits[:, 7]
        days, valid_date = _days_since_epoch(np.where(ok, year, 1970), np.where(ok, month, 1), np.where(ok, day, 1))
        ok &= valid_date
        if width == 10:
            micros = days * MICROS_PER_DAY + date_only_micros
        else:
            hour = digits[:, 8] * 10 + digits[:, 9]
            minute = digits[:, 10] * 10 + digits[:, 11]
            second = digits[:, 12] * 10 + digits[:, 13]
            ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
            micros = days * MICROS_PER_DAY + ((hour * 60 + minute) * 60 + second) * MICROS_PER_SECOND
        accepted = rows[ok]
        if width == 20:
            parsed.set_utc(accepted, micros[ok])
        else:
            parsed.set_local(accepted, micros[ok])
        pending[accepted] = False


def _only(values: pa.Array, keep: np.ndarray) -> pa.Array:
    """``values`` filtered by ``keep``, without a copy in the usual case where every row is kept."""
    return values if keep.all() else values.filter(pa.array(keep))


def _iso_layout(text: pa.Array) -> tuple[tuple[_FastLayout | None, ...], np.ndarray]:
    """Offset (Z, +, - after the minutes), date only (10 characters) or naive, for year-first values."""
    tail = pc.utf8_slice_codeunits(text, 16)
    offset = bool_numpy(pc.match_substring(tail, "Z"))
    offset |= bool_numpy(pc.match_substring(tail, "+")) | bool_numpy(pc.match_substring(tail, "-"))
    date_only = bool_numpy(pc.equal(pc.utf8_length(text), 10))
    return _ISO_LAYOUTS, np.where(offset, 0, np.where(date_only, 2, 1))


def _us_layout(text: pa.Array) -> tuple[tuple[_FastLayout | None, ...], np.ndarray]:
    colons = pc.count_substring(text, ":").to_numpy(zero_copy_only=False)
    meridiem = bool_numpy(pc.match_substring(pc.utf8_slice_codeunits(text, -2), "M", ignore_case=True))
    which = np.where(colons <= 2, 2 * colons + meridiem, -1)
    return _US_LAYOUTS, np.where(which == 1, -1, which)


def _eu_layout(text: pa.Array) -> tuple[tuple[_FastLayout | None, ...], np.ndarray]:
    colons = pc.count_substring(text, ":").to_numpy(zero_copy_only=False)
    return _EU_LAYOUTS, np.where(colons <= 2, colons, -1)


def _read_fast(subset: pa.Array, layout: _FastLayout) -> tuple[np.ndarray, np.ndarray]:
    """Micros (UTC for offset layouts, else local wall time) and which rows Arrow read correctly."""
    if layout.strptime is None:
        try:
            stamps = pc.cast(subset, pa.timestamp("us", "UTC") if layout.with_offset else pa.timestamp("us"))
        except pa.ArrowInvalid:  # e.g. 2026-02-30 somewhere in the group: the general path judges each row
            return np.zeros(len(subset), dtype=np.int64), np.zeros(len(subset), dtype=bool)
        return stamps.cast(pa.int64()).to_numpy(), np.ones(len(subset), dtype=bool)
    stamps = pc.strptime(subset, format=layout.strptime, unit="us", error_is_null=True)
    fields = pc.split_pattern(subset, layout.separator, max_splits=layout.month_field + 1)
    written_month = pc.cast(pc.list_element(fields, layout.month_field), pa.int64())
    read = bool_numpy(pc.equal(pc.month(stamps), written_month))
    return pc.fill_null(stamps.cast(pa.int64()), 0).to_numpy(), read


def _parse_general(text: pa.Array, pending: np.ndarray, parsed: _Parsed, date_only_micros: int) -> None:
    """Every accepted layout through one capturing regex; fields validated and combined as integers."""
    rows = np.flatnonzero(pending)
    fields = pc.extract_regex(text.take(pa.array(rows)), _GENERAL)
    matched = bool_numpy(pc.is_valid(fields))

    def field(*names: str) -> pa.Array:
        parts = [pc.struct_field(fields, name) for name in names]
        return pc.binary_join_element_wise(*parts, pa.scalar("", parts[0].type))

    def number(*names: str) -> np.ndarray:
        return _integers(field(*names))

    year, month, day = number("y1", "y2", "y3"), number("m1", "m2", "m3"), number("d1", "d2", "d3")
    hour, minute, second = number("hour"), number("minute"), number("second")
    fraction = _integers(pc.utf8_slice_codeunits(pc.utf8_rpad(field("fraction"), 6, "0"), 0, 6))
    has_time = bool_numpy(pc.not_equal(field("hour"), ""))
    meridiem = pc.utf8_upper(field("meridiem"))
    is_pm, is_am = bool_numpy(pc.equal(meridiem, "P")), bool_numpy(pc.equal(meridiem, "A"))
    twelve_hour = is_pm | is_am

    days, valid_date = _days_since_epoch(year, month, day)
    valid = matched & valid_date & (minute <= 59) & (second <= 59)
    valid &= np.where(twelve_hour, (hour >= 1) & (hour <= 12), hour <= 23)
    hour24 = np.where(twelve_hour, hour % 12 + np.where(is_pm, 12, 0), hour)
    time_of_day = ((hour24 * 60 + minute) * 60 + second) * MICROS_PER_SECOND + fraction
    local = days * MICROS_PER_DAY + np.where(has_time, time_of_day, date_only_micros)

    offset_text = field("offset")
    has_offset = bool_numpy(pc.not_equal(offset_text, ""))
    off_h, off_m = number("off_h"), number("off_m")
    valid &= (off_h <= 23) & (off_m <= 59)
    sign = np.where(bool_numpy(pc.equal(field("sign"), "-")), -1, 1)
    offset = sign * (off_h * 60 + off_m) * MICROS_PER_MINUTE

    aware = valid & has_offset
    parsed.set_utc(rows[aware], (local - offset)[aware])
    naive = valid & ~has_offset
    parsed.set_local(rows[naive], local[naive])


def _days_since_epoch(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 for proleptic Gregorian dates, and which (year, month, day) triples exist."""
    valid = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    months = np.where(valid, (year - 1970) * 12 + (month - 1), 0)
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    following = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    valid &= day <= following - first
    return first + day - 1, valid


def _row_zones(zones: pd.Series | None, default_zone: str, naive: np.ndarray) -> pa.DictionaryArray | None:
    """The IANA zone of each naive row, dictionary-encoded (each distinct name once); None: all default."""
    if zones is None:
        return None
    names = pc.utf8_trim_whitespace(_arrow_strings(zones)).filter(pa.array(naive))
    names = pc.if_else(pc.equal(names, ""), pa.scalar(None, names.type), names)
    return pc.dictionary_encode(pc.fill_null(names, default_zone))


def _localise(parsed: _Parsed, zones: pa.DictionaryArray | None, default_zone: str, ambiguous: str,
              nonexistent: str) -> None:
    """Place local wall times in their zones, one vectorised call per distinct zone."""
    rows = np.flatnonzero(parsed.naive)
    if zones is None:
        groups = [(default_zone, rows)]
    else:
        codes = zones.indices.to_numpy(zero_copy_only=False)
        groups = [(zone, rows[codes == code]) for code, zone in enumerate(zones.dictionary.to_pylist())]
    for zone, in_zone in groups:
        if len(in_zone) and _is_zone(zone):  # an unknown zone leaves its rows unreadable
            parsed.set_utc(in_zone, _localise_zone(parsed.local[in_zone], zone, ambiguous, nonexistent))


def _localise_zone(local: np.ndarray, zone: str, ambiguous: str, nonexistent: str) -> np.ndarray:
    """UTC micros for local wall-clock micros in one zone, with the ambiguity and gap policies."""
    wall = pd.DatetimeIndex(local.view("datetime64[us]"))
    first = wall.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    utc = first.asi8.copy()
    unresolved = np.flatnonzero(np.asarray(first.isna()))  # inputs are never NaT: repeated or skipped times
    if not len(unresolved):
        return utc
    # Localise the rest both ways and keep the earlier or later instant. Comparing instants (rather than
    # trusting pandas' "is DST" flag) stays right where winter time is the "DST" one, as in Europe/Dublin.
    rest = wall[unresolved]
    one = rest.tz_localize(zone, ambiguous=np.ones(len(rest), dtype=bool), nonexistent="NaT")
    other = rest.tz_localize(zone, ambiguous=np.zeros(len(rest), dtype=bool), nonexistent="NaT")
    pick = np.minimum if ambiguous == "earliest" else np.maximum
    utc[unresolved] = pick(one.asi8, other.asi8)
    skipped = np.asarray(one.isna())
    if skipped.any():
        # pandas' own shift_forward lands on the next whole hour, wrong for 30-minute shifts (Lord Howe):
        # find the instant the clocks jumped instead.
        gap_end = _first_instant_after_gap(local[unresolved[skipped]], zone)
        utc[unresolved[skipped]] = gap_end if nonexistent == "shift_forward" else gap_end - 1
    return utc


def _first_instant_after_gap(local: np.ndarray, zone: str) -> np.ndarray:
    """For wall times skipped by a forward jump: the UTC instant of the jump, by bisection on the offset.

    The jump lies within a day either side of the wall time read as UTC (offsets are under 24 h), and a
    zone never changes its offset twice within two days, so the later offset marks "after the jump".
    """
    low, high = local - MICROS_PER_DAY, local + MICROS_PER_DAY
    offset_after = _utc_offsets(high, zone)
    while (high - low > 1).any():
        middle = low + (high - low) // 2
        after = _utc_offsets(middle, zone) == offset_after
        high, low = np.where(after, middle, high), np.where(after, low, middle)
    return high


def _utc_offsets(utc: np.ndarray, zone: str) -> np.ndarray:
    """The zone's UTC offset in micros at each instant."""
    instants = pd.DatetimeIndex(utc.view("datetime64[us]"), tz="UTC")
    return instants.tz_convert(zone).tz_localize(None).asi8 - utc


def _is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: "Europe" is a folder
        return False
    return True


def _time_of_day_micros(text: str) -> int:
    """Micros after midnight for ``HH:MM[:SS[.ffffff]]`` (the configured time of date-only values)."""
    match = _TIME_OF_DAY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"date_only_time must look like HH:MM[:SS], got {text!r}")
    hour, minute = int(match[1]), int(match[2])
    second = int(match[3] or 0)
    fraction = int((match[4] or "").ljust(6, "0"))
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"date_only_time must be a time of day, got {text!r}")
    return ((hour * 60 + minute) * 60 + second) * MICROS_PER_SECOND + fraction


def _integers(text: pa.Array) -> np.ndarray:
    """Digit strings as int64 (empty or null → 0; the patterns guarantee digits only)."""
    return pc.cast(pc.fill_null(pc.utf8_lpad(text, 1, "0"), "0"), pa.int64()).to_numpy(zero_copy_only=False)




def _arrow_strings(values: pd.Series) -> pa.Array:
    """The values trimmed, as one Arrow string array (nulls for NA), whatever the Series' dtype."""
    return pc.utf8_trim_whitespace(arrow_strings(values))
