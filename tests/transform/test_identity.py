"""client_id / session_id recovery from the cookie text that CRMs and shops store."""

from __future__ import annotations

import urllib.parse

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl.transform.identity import client_id_from_ga_cookie, session_id_from_ga_cookie


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("GA1.1.1162820436.1749482504", "1162820436.1749482504"),
        ("GA1.2.987654321.1700000000", "987654321.1700000000"),
        ("GA1.2-2.987654321.1700000000", "987654321.1700000000"),
        ("GA1.3-1.5.1700000000", "5.1700000000"),
        ("1162820436.1749482504", "1162820436.1749482504"),
        ("  1162820436.1749482504\t", "1162820436.1749482504"),
        ('"GA1.1.1162820436.1749482504"', "1162820436.1749482504"),
        ("'1162820436.1749482504'", "1162820436.1749482504"),
        ("_ga=GA1.1.1162820436.1749482504", "1162820436.1749482504"),
        ('_ga="GA1.1.1162820436.1749482504"', "1162820436.1749482504"),
        ("GA1.1.1162820436%2E1749482504", "1162820436.1749482504"),
        ("GA1%2E1%2E1162820436%2e1749482504", "1162820436.1749482504"),
        ("_ga%3DGA1.1.1162820436.1749482504", "1162820436.1749482504"),
        ("ga1.1.1162820436.1749482504", "1162820436.1749482504"),
    ],
)
def test_client_id_is_recovered_from_cookie_forms(raw: str, expected: str) -> None:
    assert client_id_from_ga_cookie(pd.Series([raw])).tolist() == [expected]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "abc",
        "GA1.1.1162820436",  # truncated cookie
        "GA1.1.1162820436.1749482504.99",
        "GA2.1.1162820436.1749482504",
        "GS1.1.1746825440.14.0.1746825440.0.0.0",  # a session cookie in the client id column
        "1162820436",
        "1162820436.",
        "1162820436.abc",
        "john@example.com",
        "1162820436.1749482504 extra",
        "_gid=GA1.1.1162820436.1749482504",
    ],
)
def test_anything_else_is_not_a_client_id(raw: str) -> None:
    assert client_id_from_ga_cookie(pd.Series([raw])).isna().all()


def test_client_id_keeps_index_na_and_string_dtype() -> None:
    values = pd.Series(["GA1.1.1.2", None, "x"], index=[10, 11, 12], dtype=object)
    out = client_id_from_ga_cookie(values)
    assert out.index.tolist() == [10, 11, 12]
    assert out.dtype == "str"
    assert out.iloc[0] == "1.2"
    assert out.iloc[1:].isna().all()


@given(
    random=st.integers(min_value=1, max_value=2**31 - 1),
    ts=st.integers(min_value=1_000_000_000, max_value=9_999_999_999),
    domains=st.integers(min_value=1, max_value=4),
    path_level=st.none() | st.integers(min_value=1, max_value=3),
    prefix=st.booleans(),
    quote=st.sampled_from(["", '"', "'"]),
    encode=st.booleans(),
    pad=st.sampled_from(["", " ", "\t", "  "]),
)
def test_any_wrapped_ga_cookie_yields_its_client_id(random, ts, domains, path_level, prefix, quote, encode, pad) -> None:
    counter = f"{domains}-{path_level}" if path_level else str(domains)
    cookie = f"GA1.{counter}.{random}.{ts}"
    if prefix:
        cookie = f"_ga={cookie}"
    if encode:
        cookie = urllib.parse.quote(cookie, safe="", encoding="ascii").replace(".", "%2E")
    raw = f"{pad}{quote}{cookie}{quote}{pad}"
    assert client_id_from_ga_cookie(pd.Series([raw])).tolist() == [f"{random}.{ts}"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("GS1.1.1746825440.14.0.1746825440.0.0.0", "1746825440"),
        ("GS1.2-1.1746825440.3.1.1746826000.60.0.0", "1746825440"),
        ("GS2.1.s1747132561$o1$g0$t1747132655$j0$l0$h0", "1747132561"),
        ("GS2.1.o1$g0$s1747132561$t1747132655", "1747132561"),
        ("GS2.1.o3$g1$t1747132655$j0$l0$h0$s1747132561", "1747132561"),
        ("GS2.1.s1747132561%24o1%24g0%24t1747132655", "1747132561"),
        ("_ga_ABC123XYZ=GS2.1.s1747132561$o1$g0", "1747132561"),
        ('_ga_ABC123XYZ="GS1.1.1746825440.14.0.1746825440.0.0.0"', "1746825440"),
        ("1746825440", "1746825440"),
        (" '1746825440' ", "1746825440"),
    ],
)
def test_session_id_is_recovered_from_cookie_forms(raw: str, expected: str) -> None:
    assert session_id_from_ga_cookie(pd.Series([raw])).tolist() == [expected]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "GS2.1.o1$g0$t1747132655",  # no s field
        "GS2.1.os1747132561$g0",  # 's' inside another field's value is not the s field
        "GS2.1.sabc$o1",
        "GS3.1.s1747132561$o1",
        "GS1.1.abc.14",
        "GA1.1.1162820436.1749482504",  # a client cookie in the session column
        "1746825440.5",
        "12345678901234567890",  # more digits than an INT64 session id
        "session 1746825440",
    ],
)
def test_anything_else_is_not_a_session_id(raw: str) -> None:
    assert session_id_from_ga_cookie(pd.Series([raw])).isna().all()


@given(
    session=st.integers(min_value=1_000_000_000, max_value=9_999_999_999),
    others=st.permutations(["o4", "g1", "t1747132655", "j0", "l0", "h0", "dAbC-12_x"]),
    position=st.integers(min_value=0, max_value=7),
    encode=st.booleans(),
    container=st.none() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=4, max_size=10),
)
def test_gs2_session_is_found_whatever_the_field_order(session, others, position, encode, container) -> None:
    fields = list(others)
    fields.insert(position, f"s{session}")
    cookie = "GS2.1." + "$".join(fields)
    if encode:
        cookie = cookie.replace("$", "%24")
    if container:
        cookie = f"_ga_{container}={cookie}"
    assert session_id_from_ga_cookie(pd.Series([cookie])).tolist() == [str(session)]


def test_session_id_mixed_column_keeps_positions() -> None:
    values = pd.Series(["GS1.1.111.1.0.111.0.0.0", None, "junk", "GS2.1.o1$s222", "333"], index=[5, 4, 3, 2, 1])
    out = session_id_from_ga_cookie(values)
    assert out.index.tolist() == [5, 4, 3, 2, 1]
    assert out.dtype == "str"
    assert out.isna().tolist() == [False, True, True, False, False]
    assert out.dropna().tolist() == ["111", "222", "333"]
