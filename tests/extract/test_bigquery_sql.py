"""The SQL a bigquery source runs: names checked and backquoted, window bounds only as parameters,
and a pushed-down window that never excludes a row the transform would keep."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl.extract.bigquery_sql import parse_table, query_text, quote_identifier, select_sql, window_filter

SINCE = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)
UNTIL = dt.datetime(2026, 3, 30, 0, 30, tzinfo=dt.UTC)


def test_table_names_are_checked_and_backquoted_part_by_part():
    assert parse_table("proj-1.crm.closed deals", None).sql() == "`proj-1`.`crm`.`closed deals`"
    assert str(parse_table("crm.deals", "my-project")) == "my-project.crm.deals"
    assert parse_table("example.com:proj.crm.deals", None).project == "example.com:proj"
    for bad in ("crm.deals", "p.crm.de`als", "p.cr-m.deals", "p.crm.deals\nDROP", "p.crm.a\\b", "p..deals"):
        with pytest.raises(ValueError):
            parse_table(bad, None)


def test_identifiers_refuse_what_could_leave_the_backquotes():
    assert quote_identifier("Close Date") == "`Close Date`"
    for bad in ("a`b", "a\\b", "a\nb", ""):
        with pytest.raises(ValueError):
            quote_identifier(bad)


def test_a_query_is_nested_without_its_trailing_semicolon():
    assert query_text("  SELECT 1 ;\n") == "SELECT 1"
    with pytest.raises(ValueError):
        query_text(" ; ")


def test_timestamp_window_is_exact_and_values_are_parameters():
    where = window_filter("ts", "TIMESTAMP", SINCE, UNTIL, zone="Europe/London", row_zones=False)
    sql = select_sql(["id", "ts"], "`p`.`d`.`t`", where)
    assert sql == ("SELECT `id`, `ts` FROM `p`.`d`.`t` WHERE (`ts` IS NULL OR "
                   "(`ts` >= @mpetl_since AND `ts` < @mpetl_until))")
    assert where.params == (("mpetl_since", "TIMESTAMP", SINCE), ("mpetl_until", "TIMESTAMP", UNTIL))
    only_since = window_filter("ts", "TIMESTAMP", SINCE, None, zone="UTC", row_zones=False)
    assert only_since.clause == "(`ts` IS NULL OR (`ts` >= @mpetl_since))"


def test_text_times_and_no_window_are_not_pushed_down():
    assert window_filter("ts", "STRING", SINCE, UNTIL, zone="UTC", row_zones=False) is None
    assert window_filter("ts", "TIMESTAMP", None, None, zone="UTC", row_zones=False) is None


def test_a_type_hint_pushes_text_times_down_through_safe_cast_with_a_day_of_margin():
    where = window_filter("ts", "STRING", SINCE, UNTIL, zone="UTC", row_zones=False, hint="timestamp")
    assert where.clause == ("(SAFE_CAST(`ts` AS TIMESTAMP) IS NULL OR (SAFE_CAST(`ts` AS TIMESTAMP) >= @mpetl_since "
                            "AND SAFE_CAST(`ts` AS TIMESTAMP) < @mpetl_until))")
    assert [p[2] for p in where.params] == [SINCE - dt.timedelta(hours=27), UNTIL + dt.timedelta(hours=27)]
    # A hint never overrides a typed column, and an unknown one is refused.
    typed = window_filter("ts", "TIMESTAMP", SINCE, UNTIL, zone="UTC", row_zones=False, hint="DATE")
    assert typed.params[0] == ("mpetl_since", "TIMESTAMP", SINCE)
    with pytest.raises(ValueError):
        window_filter("ts", "STRING", SINCE, UNTIL, zone="UTC", row_zones=False, hint="INT64; DROP")


@given(st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 12, 31)),
       st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "Pacific/Kiritimati",
                        "Pacific/Pago_Pago", "Asia/Kolkata"]),
       st.sampled_from(["Europe/London", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago"]),
       st.booleans())
def test_a_local_time_the_transform_keeps_is_never_excluded_by_the_sql(local, zone, row_zone, row_zones):
    """Whatever the zone (the source's, or the row's own when a timezone column is mapped) and DST,
    a DATETIME/DATE whose instant is inside [since, until) passes the SQL bounds."""
    effective = row_zone if row_zones else zone
    instant = local.replace(tzinfo=zoneinfo.ZoneInfo(effective)).astimezone(dt.UTC)
    since, until = instant - dt.timedelta(minutes=1), instant + dt.timedelta(minutes=1)
    dtw = window_filter("at", "DATETIME", since, until, zone=zone, row_zones=row_zones)
    (_, _, low), (_, _, high) = dtw.params
    assert low <= local <= high
    dw = window_filter("day", "DATE", since, until, zone=zone, row_zones=row_zones)
    (_, _, low_day), (_, _, high_day) = dw.params
    assert low_day <= local.date() <= high_day


@given(st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 12, 31)),
       st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "Pacific/Kiritimati"]),
       st.booleans())
def test_a_time_after_the_wall_clock_is_read_whatever_until_says(local, zone, row_zones):
    """A row the transform rejects as in the future (its instant after `future_after`) passes the SQL,
    even with --until days earlier: rejected once seen, never skipped unseen night after night."""
    instant = local.replace(tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(dt.UTC)
    future_after, until = instant - dt.timedelta(minutes=1), instant - dt.timedelta(days=3)
    exact = window_filter("ts", "TIMESTAMP", None, until, zone=zone, row_zones=row_zones, future_after=future_after)
    assert exact.clause == "(`ts` IS NULL OR ((`ts` < @mpetl_until OR `ts` > @mpetl_future)))"
    assert exact.params[1] == ("mpetl_future", "TIMESTAMP", future_after) and instant > future_after
    for column, kind, value in (("at", "DATETIME", local), ("day", "DATE", local.date())):
        where = window_filter(column, kind, None, until, zone=zone, row_zones=row_zones, future_after=future_after)
        (_, _, high), (name, _, ahead) = where.params
        assert name == "mpetl_future" and f"`{column}` >= @mpetl_future" in where.clause
        assert value >= ahead and not value <= high


def test_config_needs_exactly_one_of_table_or_query(tmp_path):
    from etl.config import load_config
    from etl.errors import ConfigError
    from tests.support import dump_toml

    def config(**source) -> object:
        path = tmp_path / "c.toml"
        path.write_text(dump_toml({"property": {"measurement_id": "G-TEST1", "timezone": "UTC"},
                                   "sources": [{"name": "bq", "kind": "bigquery", **source}]}))
        return load_config(path)

    loaded = config(table="p.d.t", project="p", location="EU", api_endpoint="http://127.0.0.1:1")
    s = loaded.sources[0]
    assert (s.table, s.query, s.project, s.location, s.path) == ("p.d.t", None, "p", "EU", "bigquery:p.d.t")
    assert config(query="SELECT 1").sources[0].path == "bigquery:query"
    for bad in ({}, {"table": "p.d.t", "query": "SELECT 1"}):
        with pytest.raises(ConfigError) as info:
            config(**bad)
        assert "sources.bq.table" in str(info.value) and "exactly one" in str(info.value)
