"""Vendor timestamps → exact UTC micros; expectations come from datetime + zoneinfo, never from the code under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.transform.timestamps import event_date_in_zone, to_utc_micros

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICRO = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Exact integer micros of an aware datetime (timedelta arithmetic, no floats)."""
    return (moment - EPOCH) // ONE_MICRO


def parse_one(text: str, zone: str = "UTC", **options: str) -> int | None:
    value = to_utc_micros(pd.Series([text]), default_zone=zone, **options).iloc[0]
    return None if value is pd.NA else int(value)


def wall_time_exists(wall: datetime, zone: ZoneInfo) -> bool:
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def first_instant_after_gap(wall: datetime, zone: ZoneInfo) -> datetime:
    """Bisect (µs resolution, with zoneinfo only) for the instant the offset changes around a skipped wall time."""
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # offset after the change: earlier instant
    after = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # offset before the change: later instant
    lo, hi = before, after
    offset_after_change = after.astimezone(zone).utcoffset()
    while hi - lo > ONE_MICRO:
        mid = lo + (hi - lo) // 2
        if mid.astimezone(zone).utcoffset() == offset_after_change:
            hi = mid
        else:
            lo = mid
    return hi


# --- the DST edges named in the brief, with hand-checked facts ------------------------------------------------

LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("text", "zone", "gap_end_wall"),
    [
        ("2026-03-29 01:30", "Europe/London", datetime(2026, 3, 29, 2, 0)),  # 01:00 GMT → 02:00 BST
        ("2026-03-08 02:30", "America/New_York", datetime(2026, 3, 8, 3, 0)),  # 02:00 EST → 03:00 EDT
        ("03/08/2026 2:30 AM", "America/New_York", datetime(2026, 3, 8, 3, 0)),
    ],
)
def test_a_skipped_local_time_shifts_to_the_edge_of_the_gap(text: str, zone: str, gap_end_wall: datetime) -> None:
    first_valid = micros(gap_end_wall.replace(tzinfo=ZoneInfo(zone)))
    assert parse_one(text, zone) == first_valid
    assert parse_one(text, zone, nonexistent="shift_forward") == first_valid
    assert parse_one(text, zone, nonexistent="shift_backward") == first_valid - 1


@pytest.mark.parametrize(
    ("text", "zone", "wall"),
    [
        ("2026-10-25 01:30", "Europe/London", datetime(2026, 10, 25, 1, 30)),
        ("2026-11-01 01:30", "America/New_York", datetime(2026, 11, 1, 1, 30)),
        ("2026-11-01T01:30:00.250000", "America/New_York", datetime(2026, 11, 1, 1, 30, 0, 250000)),
        ("25.10.2026 01:30", "Europe/London", datetime(2026, 10, 25, 1, 30)),
        ("2026-10-25 01:30", "Europe/Dublin", datetime(2026, 10, 25, 1, 30)),  # winter is "DST" in Dublin's rules
        ("2026-04-05 02:30", "Australia/Sydney", datetime(2026, 4, 5, 2, 30)),
    ],
)
def test_a_repeated_local_time_means_the_earliest_or_the_latest_instant(text: str, zone: str, wall: datetime) -> None:
    first = micros(wall.replace(tzinfo=ZoneInfo(zone), fold=0))
    second = micros(wall.replace(tzinfo=ZoneInfo(zone), fold=1))
    assert second - first == 3_600_000_000  # the case really is ambiguous by one hour
    assert parse_one(text, zone) == first
    assert parse_one(text, zone, ambiguous="earliest") == first
    assert parse_one(text, zone, ambiguous="latest") == second


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """UTC instants in ``year`` where ``zone``'s offset changes (hourly scan, then bisection to the µs)."""
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    while moment.year == year:
        step = moment + timedelta(hours=1)
        if moment.astimezone(zone).utcoffset() != step.astimezone(zone).utcoffset():
            lo, hi = moment, step
            while hi - lo > ONE_MICRO:
                mid = lo + (hi - lo) // 2
                if mid.astimezone(zone).utcoffset() == step.astimezone(zone).utcoffset():
                    hi = mid
                else:
                    lo = mid
            found.append(hi)
        moment = step
    return found


ZONES_WITH_DST = ["Europe/London", "America/New_York", "Europe/Dublin", "Australia/Sydney", "Australia/Lord_Howe",
                  "America/Santiago", "Europe/Berlin"]


@pytest.mark.parametrize("zone_name", ZONES_WITH_DST)
@pytest.mark.parametrize("ambiguous", ["earliest", "latest"])
@pytest.mark.parametrize("nonexistent", ["shift_forward", "shift_backward"])
def test_every_wall_time_around_every_2026_transition_matches_zoneinfo(zone_name, ambiguous, nonexistent) -> None:
    zone = ZoneInfo(zone_name)
    walls: list[datetime] = []
    for change in transitions(zone, 2026):
        before = change.astimezone(zone).replace(tzinfo=None)
        walls += [before + timedelta(minutes=m, microseconds=7) for m in range(-90, 91, 5)]
    texts = pd.Series([w.isoformat(sep=" ") for w in walls])
    got = to_utc_micros(texts, default_zone=zone_name, ambiguous=ambiguous, nonexistent=nonexistent)
    for wall, value in zip(walls, got, strict=True):
        early = micros(wall.replace(tzinfo=zone, fold=0))
        late = micros(wall.replace(tzinfo=zone, fold=1))
        if not wall_time_exists(wall, zone):
            edge = micros(first_instant_after_gap(wall, zone))
            expected = edge if nonexistent == "shift_forward" else edge - 1
        else:
            expected = min(early, late) if ambiguous == "earliest" else max(early, late)
        assert value == expected, wall


# --- offsets, precision, formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T14:03:11Z", datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)),
        ("2026-11-20 14:03:11 -0500", datetime(2026, 11, 20, 19, 3, 11, tzinfo=UTC)),
        ("2026-11-20T14:03:11+01:00", datetime(2026, 11, 20, 13, 3, 11, tzinfo=UTC)),
        ("2026-11-20T14:03:11+0530", datetime(2026, 11, 20, 8, 33, 11, tzinfo=UTC)),
        ("2026-11-20T14:03:11-03", datetime(2026, 11, 20, 17, 3, 11, tzinfo=UTC)),
        ("2026-11-20 14:03:11 UTC", datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)),
        ("2026-11-20t14:03:11z", datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)),
        ("2026-11-20T14:03:11.123456Z", datetime(2026, 11, 20, 14, 3, 11, 123456, tzinfo=UTC)),
        ("2026-11-20T14:03:11.5+00:00", datetime(2026, 11, 20, 14, 3, 11, 500000, tzinfo=UTC)),
        ("2026-11-20T14:03:11.123456789Z", datetime(2026, 11, 20, 14, 3, 11, 123456, tzinfo=UTC)),  # truncated
        ("11/20/2026 2:03 PM -05:00", datetime(2026, 11, 20, 19, 3, tzinfo=UTC)),
    ],
)
def test_an_explicit_offset_fixes_the_instant_whatever_the_zone(text: str, expected: datetime) -> None:
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        assert parse_one(text, zone) == micros(expected)
    per_row = to_utc_micros(pd.Series([text]), default_zone="UTC", zones=pd.Series(["Pacific/Auckland"]))
    assert per_row.iloc[0] == micros(expected)


@pytest.mark.parametrize(
    ("text", "wall"),
    [
        ("2026-11-20 14:03:11", datetime(2026, 11, 20, 14, 3, 11)),
        ("2026-11-20T14:03:11.000042", datetime(2026, 11, 20, 14, 3, 11, 42)),
        ("2026-11-20 14:03", datetime(2026, 11, 20, 14, 3)),
        ("2026/11/20 14:03", datetime(2026, 11, 20, 14, 3)),
        ("2026-1-5 9:03", datetime(2026, 1, 5, 9, 3)),
        ("11/20/2026 2:03 PM", datetime(2026, 11, 20, 14, 3)),
        ("11/20/2026 2:03:59 pm", datetime(2026, 11, 20, 14, 3, 59)),
        ("11/20/2026, 2:03 PM", datetime(2026, 11, 20, 14, 3)),
        ("1/2/2026 12:00 AM", datetime(2026, 1, 2, 0, 0)),
        ("1/2/2026 12:30 PM", datetime(2026, 1, 2, 12, 30)),
        ("1/2/2026 2:03:04 p.m.", datetime(2026, 1, 2, 14, 3, 4)),
        ("11/20/2026 14:03", datetime(2026, 11, 20, 14, 3)),
        ("20.11.2026 14:03", datetime(2026, 11, 20, 14, 3)),
        ("20.11.2026 14:03:11", datetime(2026, 11, 20, 14, 3, 11)),
        ("20.11.2026 14:03:11,250", datetime(2026, 11, 20, 14, 3, 11, 250000)),
        ("20.11.2026, 14:03:11", datetime(2026, 11, 20, 14, 3, 11)),
        ("11/20/2026, 2:03:04 PM", datetime(2026, 11, 20, 14, 3, 4)),
    ],
)
def test_naive_layouts_are_local_time_in_the_zone(text: str, wall: datetime) -> None:
    for zone in ("America/New_York", "Europe/Berlin", "UTC"):
        assert parse_one(text, zone) == micros(wall.replace(tzinfo=ZoneInfo(zone)))


@pytest.mark.parametrize("text", ["2026-11-20", "11/20/2026", "20.11.2026", "2026/11/20"])
def test_date_only_values_take_the_configured_local_time(text: str) -> None:
    zone = ZoneInfo("America/New_York")
    assert parse_one(text, "America/New_York") == micros(datetime(2026, 11, 20, tzinfo=zone))
    noon = parse_one(text, "America/New_York", date_only_time="12:00")
    assert noon == micros(datetime(2026, 11, 20, 12, tzinfo=zone))


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "garbage", "2026-02-30", "2026-02-29", "02/30/2026 2:03 PM", "31.04.2026", "2026-13-01",
        "20/11/2026",  # slashes mean month first: there is no month 20
        "20-11-2026", "11/20/26", "2026-11-20 24:00", "2026-11-20 14:60", "2026-11-20 14:03:60",
        "11/20/2026 13:03 PM", "11/20/2026 0:03 AM", "2026-11-20T14:03:11+25:00", "1749482504", "2026-11-20 14",
        "2026-11-20T14:03:11Zjunk",
    ],
)
def test_unreadable_values_are_na(text: str) -> None:
    assert parse_one(text, "Europe/London") is None


def test_leap_day_of_a_leap_year_is_valid() -> None:
    assert parse_one("2028-02-29") == micros(datetime(2028, 2, 29, tzinfo=UTC))
    assert parse_one("02/29/2028 1:00 AM") == micros(datetime(2028, 2, 29, 1, tzinfo=UTC))


def test_mixed_layouts_and_zones_in_one_column() -> None:
    texts = ["2026-07-01 10:00", "07/01/2026 10:00 AM", "01.07.2026 10:00", "2026-07-01T10:00:00Z", None, "x",
             "2026-07-01 10:00", "2026-07-01 10:00"]
    zones = pd.Series(["Asia/Tokyo", None, " Europe/Paris ", "Asia/Tokyo", None, None, "Not/AZone", ""])
    got = to_utc_micros(pd.Series(texts, index=range(100, 108)), default_zone="America/Chicago", zones=zones)
    wall = datetime(2026, 7, 1, 10)
    assert got.index.tolist() == list(range(100, 108))
    assert got.dtype == "Int64"
    assert got.iloc[0] == micros(wall.replace(tzinfo=ZoneInfo("Asia/Tokyo")))
    assert got.iloc[1] == micros(wall.replace(tzinfo=ZoneInfo("America/Chicago")))  # NA zone → the default
    assert got.iloc[2] == micros(wall.replace(tzinfo=ZoneInfo("Europe/Paris")))
    assert got.iloc[3] == micros(wall.replace(tzinfo=UTC))  # the offset wins over the row's zone
    assert got.iloc[4] is pd.NA and got.iloc[5] is pd.NA
    assert got.iloc[6] is pd.NA  # an unknown zone is never silently replaced
    assert got.iloc[7] == micros(wall.replace(tzinfo=ZoneInfo("America/Chicago")))


def test_one_bad_calendar_date_does_not_spoil_its_group() -> None:
    got = to_utc_micros(pd.Series(["2026-11-20", "2026-02-30", "2026-11-21T10:00:00Z", "2026-02-30T10:00:00Z"]),
                        default_zone="UTC")
    assert got.isna().tolist() == [False, True, False, True]
    assert got.iloc[2] == micros(datetime(2026, 11, 21, 10, tzinfo=UTC))


def test_datetime64_columns_are_accepted() -> None:
    aware = pd.Series(pd.to_datetime(["2026-11-20T14:03:11.123456+01:00", None], utc=True))
    assert to_utc_micros(aware, default_zone="Asia/Tokyo").tolist()[0] == micros(
        datetime(2026, 11, 20, 13, 3, 11, 123456, tzinfo=UTC)
    )
    naive = pd.Series(pd.to_datetime(["2026-11-20 14:03:11", None]))
    got = to_utc_micros(naive, default_zone="America/New_York")
    assert got.iloc[0] == micros(datetime(2026, 11, 20, 14, 3, 11, tzinfo=NEW_YORK))
    assert got.iloc[1] is pd.NA


def test_bad_options_are_refused() -> None:
    values = pd.Series(["2026-11-20"])
    with pytest.raises(ValueError, match="ambiguous"):
        to_utc_micros(values, default_zone="UTC", ambiguous="first")
    with pytest.raises(ValueError, match="nonexistent"):
        to_utc_micros(values, default_zone="UTC", nonexistent="NaT")
    with pytest.raises(ValueError, match="date_only_time"):
        to_utc_micros(values, default_zone="UTC", date_only_time="noon")


def test_empty_input() -> None:
    assert to_utc_micros(pd.Series([], dtype="str"), default_zone="UTC").empty
    assert event_date_in_zone(pd.Series([], dtype="Int64"), "UTC").empty


# --- properties -----------------------------------------------------------------------------------------------------

fixed_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_datetimes = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=fixed_offsets | st.just(UTC)
)


@given(moment=aware_datetimes, layout=st.sampled_from(["iso_t", "iso_space", "strftime_z", "zulu"]))
def test_formatting_with_an_offset_and_parsing_returns_the_exact_micros(moment: datetime, layout: str) -> None:
    if layout == "iso_t":
        text = moment.isoformat()
    elif layout == "iso_space":
        text = moment.isoformat(sep=" ", timespec="microseconds")
    elif layout == "strftime_z":
        text = moment.strftime("%Y-%m-%d %H:%M:%S.%f %z")
    else:
        text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert parse_one(text, "Asia/Kathmandu") == micros(moment)


@given(
    wall=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31)),
    zone=st.sampled_from(["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
    style=st.sampled_from(["{} PM", "{} pm", "{}PM", "{} P.M."]),  # the last two take the general pattern
)
def test_us_twelve_hour_layout_matches_zoneinfo(wall: datetime, zone: str, style: str) -> None:
    wall = wall.replace(microsecond=0)
    tz = ZoneInfo(zone)
    if not wall_time_exists(wall, tz):
        return  # the gap is covered by the transition test
    meridiem = style.replace("P", "A").replace("p", "a") if wall.hour < 12 else style
    text = f"{wall.month}/{wall.day}/{wall.year} " + meridiem.format(f"{(wall.hour % 12) or 12}:{wall:%M:%S}")
    expected = min(micros(wall.replace(tzinfo=tz, fold=0)), micros(wall.replace(tzinfo=tz, fold=1)))
    assert parse_one(text, zone) == expected


@given(moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       zone=st.sampled_from(["UTC", "America/Los_Angeles", "Pacific/Kiritimati", "Asia/Kolkata", "Europe/London"]))
def test_event_date_is_the_local_calendar_day(moment: datetime, zone: str) -> None:
    got = event_date_in_zone(pd.Series([micros(moment), None], dtype="Int64"), zone)
    assert got.iloc[0] == moment.astimezone(ZoneInfo(zone)).strftime("%Y%m%d")
    assert got.isna().tolist() == [False, True]


def test_event_date_keeps_the_index() -> None:
    values = pd.Series(np.array([0, 86_400_000_000 - 1], dtype=np.int64), index=["a", "b"])
    got = event_date_in_zone(values, "UTC")
    assert got.to_dict() == {"a": "19700101", "b": "19700101"}


_FIXED_WIDTH_CHARS = "0123456789-: TZz/.x"
# Fields just in and out of range: 2026-02-29, 2026-13-01, 24:00:00, 23:60:00, 00:00:60.
_NEAR_RANGE = st.builds(
    lambda y, mo, d, sep, h, mi, s, z: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{z}",
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.sampled_from("T t"),
    st.integers(0, 25), st.integers(0, 60), st.integers(0, 60), st.sampled_from(["", "Z", "z", "+"]))
_FIXED_WIDTH_VALUES = st.one_of(
    _NEAR_RANGE,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"),
    st.text(_FIXED_WIDTH_CHARS, min_size=10, max_size=10),
    st.text(_FIXED_WIDTH_CHARS, min_size=19, max_size=20),
    st.none(),
)


def _with_and_without_the_fast_path(values: list, zone: str) -> tuple[pd.Series, pd.Series]:
    import etl.transform.timestamps as timestamps

    series = pd.Series(values, dtype="string")
    fast = to_utc_micros(series, default_zone=zone, date_only_time="07:30:00")
    original = timestamps._parse_fixed_width_iso
    timestamps._parse_fixed_width_iso = lambda *args: None
    try:
        return fast, to_utc_micros(series, default_zone=zone, date_only_time="07:30:00")
    finally:
        timestamps._parse_fixed_width_iso = original


@settings(deadline=None)  # two whole parses per example: slow on a loaded machine, never wrong
@given(st.lists(_FIXED_WIDTH_VALUES, min_size=1, max_size=40),
       st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe"]))
def test_the_fixed_width_fast_path_reads_every_value_as_the_general_layouts_do(values, zone):
    """The byte-level ISO reader must accept only what the layouts below accept, with the same micros."""
    fast, reference = _with_and_without_the_fast_path(values, zone)
    pd.testing.assert_series_equal(fast, reference)


@settings(deadline=None)
@given(st.lists(_NEAR_RANGE, min_size=1, max_size=40))
def test_the_fixed_width_fast_path_refuses_out_of_range_fields_as_the_general_layouts_do(values):
    fast, reference = _with_and_without_the_fast_path(values, "Europe/London")
    pd.testing.assert_series_equal(fast, reference)


@pytest.mark.parametrize("zone_name", ["Europe/London", "America/St_Johns", "Australia/Lord_Howe", "Pacific/Chatham",
                                       "Asia/Kathmandu", "America/Sao_Paulo"])
def test_event_date_around_every_2026_transition_matches_zoneinfo(zone_name) -> None:
    """Many rows in few hours take the per-hour lookup; hours holding a change (at :30 UTC in St John's)
    must still give each instant its own local day."""
    zone = ZoneInfo(zone_name)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    changes = [start + timedelta(hours=h) for h in range(365 * 24)
               if (start + timedelta(hours=h)).astimezone(zone).utcoffset()
               != (start + timedelta(hours=h + 1)).astimezone(zone).utcoffset()]
    changes.append(datetime(2026, 6, 30, 23, 0, tzinfo=UTC))  # a zone without DST still gets a midnight
    for change in changes:
        micros = np.array([int((change - epoch).total_seconds()) * 1_000_000 + k * 59_999_999
                           for k in range(-6 * 60, 6 * 60)], dtype=np.int64)
        dates = event_date_in_zone(pd.Series(micros), zone_name)
        walls = [(epoch + timedelta(microseconds=int(m))).astimezone(zone) for m in micros]
        assert dates.tolist() == [w.strftime("%Y%m%d") for w in walls], change
        # The wall-clock micros behind the dates, exactly.
        from etl.transform.timestamps import _to_local_micros

        local = _to_local_micros(micros, zone_name)
        assert local.tolist() == [(w.replace(tzinfo=UTC) - epoch) // timedelta(microseconds=1) for w in walls], change
