"""Strict number parsing: empty is absent, unreadable is invalid, never a guess."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl.transform.numbers import parse_decimal, parse_int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("-12.5", -12.5), ("12", 12.0), (" 12.50 ", 12.5), ("+3.25", 3.25), ("0.99", 0.99), (".5", 0.5), ("7.", 7.0)],
)
def test_plain_decimals_are_read(raw: str, expected: float) -> None:
    numbers, invalid = parse_decimal(pd.Series([raw]))
    assert numbers.tolist() == [expected]
    assert not invalid.any()


@pytest.mark.parametrize("raw", ["12abc", "1,234.56", "12,5", "1e5", "NaN", "inf", "--1", "1.2.3", "$12", "12 345", "."])
def test_anything_else_is_invalid_not_zero(raw: str) -> None:
    numbers, invalid = parse_decimal(pd.Series([raw]))
    assert np.isnan(numbers.iloc[0])
    assert invalid.tolist() == [True]


def test_empty_is_absent_not_invalid() -> None:
    numbers, invalid = parse_decimal(pd.Series(["", "   ", None, np.nan], dtype=object))
    assert numbers.isna().all()
    assert not invalid.any()


def test_result_keeps_the_index_and_dtypes() -> None:
    values = pd.Series(["1.5", "x", ""], index=[7, 8, 9])
    numbers, invalid = parse_decimal(values)
    assert numbers.dtype == "float64" and invalid.dtype == bool
    assert numbers.index.tolist() == invalid.index.tolist() == [7, 8, 9]
    assert invalid.tolist() == [False, True, False]


@given(st.decimals(min_value=-10**12, max_value=10**12, places=4, allow_nan=False, allow_infinity=False))
def test_decimal_text_round_trips_to_the_nearest_double(value: Decimal) -> None:
    text = f"{value:f}"
    numbers, invalid = parse_decimal(pd.Series([text]))
    assert not invalid.iloc[0]
    assert numbers.iloc[0] == float(text)


@pytest.mark.parametrize(("raw", "expected"), [("3", 3), (" 12 ", 12), ("-2", -2), ("+4", 4), ("3.0", 3), ("007", 7)])
def test_integers_are_read(raw: str, expected: int) -> None:
    numbers, invalid = parse_int(pd.Series([raw]))
    assert numbers.tolist() == [expected]
    assert numbers.dtype == "Int64"
    assert not invalid.any()


@pytest.mark.parametrize("raw", ["2.5", "1,000", "3x", "1e3", "99999999999999999999", "one"])
def test_non_integers_are_invalid(raw: str) -> None:
    numbers, invalid = parse_int(pd.Series([raw]))
    assert numbers.isna().all()
    assert invalid.tolist() == [True]


def test_empty_quantity_is_absent() -> None:
    numbers, invalid = parse_int(pd.Series(["", None, " 2 "]))
    assert numbers.isna().tolist() == [True, True, False]
    assert numbers.iloc[2] == 2
    assert not invalid.any()


@given(st.integers(min_value=-(10**18) + 1, max_value=10**18 - 1))
def test_any_int64_quantity_round_trips(value: int) -> None:
    numbers, invalid = parse_int(pd.Series([str(value)]))
    assert numbers.tolist() == [value] and not invalid.any()
