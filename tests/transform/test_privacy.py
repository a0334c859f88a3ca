"""Personal-data detection: what must be caught, and the ids, cookies, amounts and dates that must pass."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.transform.privacy import DETECTORS, LUHN_ATTEMPTS, detect_personal_data, scan_frame


def detect(value: str) -> str | None:
    found = detect_personal_data(pd.Series([value])).iloc[0]
    return None if pd.isna(found) else found


# Text around a value as people write it: words and punctuation, separated from the value by a space or
# punctuation (a digit glued to a phone number makes it a different number).
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ,;()", max_size=20)
left = st.tuples(words, st.sampled_from(["", " ", ": ", "(", "=", "; ", ", "])).map(lambda t: t[0] + t[1] if t[0] else t[1])
right = st.tuples(st.sampled_from(["", " ", ")", ", ", ".", "; "]), words).map(lambda t: t[0] + " " + t[1] if t[1] else t[0])


def embedded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(left, values, right).map(lambda t: "".join(t) if not t[0] or not t[0][-1].isalnum() else f"{t[0]} {t[1]}{t[2]}")


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


# --- generators of personal data --------------------------------------------------------------------------------

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
emails = st.builds(
    lambda local, sep, domain, tld, encoded: f"{local}{'%40' if encoded else '@'}{domain}.{tld}".replace("+-", "+x"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-", min_size=1, max_size=20),
    st.none(),
    label,
    st.sampled_from(["com", "co.uk", "de", "io", "email", "fr"]),
    st.booleans(),
)

phones = st.one_of(
    # E.164 with the usual groupings: +44 20 7946 0958, +1-555-123-4567, +33 6 12 34 56 78, +4915123456789
    st.builds(lambda cc, groups, sep: f"+{cc}{sep}{sep.join(groups)}", st.sampled_from(["1", "44", "33", "49", "353", "61"]),
              st.lists(digits(3) | digits(4) | digits(2), min_size=2, max_size=4), st.sampled_from([" ", "-"])).filter(
        lambda phone: 8 <= sum(ch.isdigit() for ch in phone) <= 15  # E.164 lengths
    ),
    st.builds(lambda cc, rest: f"+{cc}{rest}", st.sampled_from(["44", "49", "33"]), digits(10)),
    # North American forms
    st.builds(lambda a, b, c: f"({a}) {b}-{c}", digits(3), digits(3), digits(4)),
    st.builds(lambda a, b, c, s: f"{a}{s}{b}{s}{c}", digits(3), digits(3), digits(4), st.sampled_from(["-", ".", " "])),
    # national numbers written in groups: 020 7946 0958, 07700 900123, 06 12 34 56 78
    st.builds(lambda a, b, c: f"0{a} {b} {c}", digits(2), digits(4), digits(4)),
    st.builds(lambda a, b: f"07{a} {b}", digits(3), digits(6)),
    st.builds(lambda pairs: "0" + " ".join(pairs)[1:], st.lists(digits(2), min_size=5, max_size=5)),
)

ipv4s = st.ip_addresses(v=4).map(str)
ipv6s = st.ip_addresses(v=6).filter(
    # "::", "::1", "fe80::" hold at most one group: not flagged by design (see the module doc)
    lambda ip: sum(1 for part in str(ip).split(":") if part) >= 2
).flatmap(lambda ip: st.sampled_from([str(ip), ip.exploded]))


def luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


CARD_LAYOUTS = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15),
                ("6011", 16), ("65", 16), ("35", 16), ("36", 16), ("62", 19), ("4", 19)]


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(CARD_LAYOUTS))
    number = luhn_complete(prefix + draw(digits(length - len(prefix) - 1)))
    sep = draw(st.sampled_from(["", " ", "-"]))
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, length, 4))


digests = st.builds(
    lambda data, algo, upper, b64: (
        base64.b64encode(hashlib.sha256(data).digest()).decode()
        if b64
        else (hashlib.new(algo, data).hexdigest().upper() if upper else hashlib.new(algo, data).hexdigest())
    ),
    st.binary(max_size=40),
    st.sampled_from(["md5", "sha1", "sha256"]),
    st.booleans(),
    st.booleans(),
)


@settings(deadline=None)
@given(embedded(emails))
def test_emails_are_detected(value: str) -> None:
    assert detect(value) == "email"


@settings(deadline=None)
@given(embedded(phones))
def test_phone_numbers_are_detected(value: str) -> None:
    assert detect(value) == "phone"


@settings(deadline=None)
@given(embedded(ipv4s))
def test_ipv4_addresses_are_detected(value: str) -> None:
    assert detect(value) == "ipv4"


@settings(deadline=None)
@given(embedded(ipv6s))
def test_ipv6_addresses_are_detected(value: str) -> None:
    assert detect(value) == "ipv6"


@settings(deadline=None)
@given(embedded(cards()))
def test_luhn_valid_card_numbers_are_detected(value: str) -> None:
    assert detect(value) == "payment_card"


@settings(deadline=None)
@given(embedded(digests))
def test_hex_and_base64_digests_are_detected(value: str) -> None:
    assert detect(value) == "hashed_identifier"


@settings(deadline=None)
@given(st.lists(st.sampled_from(["a", "4242 4242 4242 4241", "note", "4111-1111-1111-1111", "5555555555554444"]),
                min_size=1, max_size=LUHN_ATTEMPTS))
def test_a_card_is_found_behind_card_shaped_runs_that_fail_luhn(parts: list[str]) -> None:
    value = ", ".join(parts)
    expected = "payment_card" if ("4111-1111-1111-1111" in parts or "5555555555554444" in parts) else None
    assert detect(value) == expected


def test_card_shaped_numbers_failing_luhn_are_not_cards() -> None:
    assert detect("4111 1111 1111 1112") is None
    assert detect("4111111111111112") is None


# --- what must pass -------------------------------------------------------------------------------------------------

REALISTIC_NON_PERSONAL = [
    "#1001", "1001", "006Hs00001AbCdE", "0065g00000XyZ12AAB", "T-2026-000123", "ORD-2026-11-000123", "INV/2026/0042",
    "SO-000123-A", "5123456789012", "44123456789012", "1749482504", "1749482504123", "1234.56", "-12.50", "0.99",
    "1234567.89", "+12.50", "2026-11-20", "2026-11-20T14:03:11Z", "2026-11-20 14:03:11 -0500",
    "2026-11-20T14:03:11.123456+01:00", "2026-11-20 14:03", "11/20/2026 2:03 PM", "20.11.2026 14:03",
    "1162820436.1749482504", "GA1.1.1162820436.1749482504", "GA1.2-2.987654321.1700000000",
    "GS1.1.1746825440.14.0.1746825440.0.0.0", "GS2.1.s1747132561$o1$g0$t1747132655$j0$l0$h0",
    "SKU-12345-BLK", "ABC-123", "TSHIRT-RED-XL", "EUR", "USD", "purchase", "generate_lead", "Website", "Phone call",
    "Closed Won", "123e4567-e89b-12d3-a456-426614174000", "14:03:11", "v1.2.3", "std::string", "https://example.com/p/42",
    "Summer sale 2026", "Qty 3 @ 19.99",
]


@pytest.mark.parametrize("value", REALISTIC_NON_PERSONAL)
def test_realistic_non_personal_values_pass(value: str) -> None:
    assert detect(value) is None


non_personal = st.one_of(
    st.integers(1, 99_999_999).map(lambda n: f"#{n}"),
    st.builds(lambda y, n: f"T-{y}-{n:06d}", st.integers(2000, 2099), st.integers(0, 999_999)),
    st.builds(lambda a, b: f"{a}.{b:02d}", st.integers(0, 9_999_999), st.integers(0, 99)),
    st.integers(1_000_000_000, 9_999_999_999).map(str),  # unix seconds
    st.integers(10**12, 10**13 - 1).map(str),  # unix millis, Shopify order ids
    st.builds(lambda r, t: f"{r}.{t}", st.integers(1, 2**31 - 1), st.integers(10**9, 10**10 - 1)),
    st.builds(lambda r, t: f"GA1.1.{r}.{t}", st.integers(1, 2**31 - 1), st.integers(10**9, 10**10 - 1)),
    st.builds(lambda s, n, t: f"GS1.1.{s}.{n}.1.{t}.60.0.0", st.integers(10**9, 10**10 - 1), st.integers(1, 500),
              st.integers(10**9, 10**10 - 1)),
    st.builds(lambda s, n, t: f"GS2.1.s{s}$o{n}$g1$t{t}$j0$l0$h0", st.integers(10**9, 10**10 - 1), st.integers(1, 500),
              st.integers(10**9, 10**10 - 1)),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).flatmap(
        lambda d: st.sampled_from([d.isoformat(), d.strftime("%Y-%m-%d %H:%M:%S"), d.strftime("%m/%d/%Y %I:%M %p"),
                                   d.strftime("%d.%m.%Y %H:%M"), d.strftime("%Y-%m-%d")])
    ),
    st.sampled_from(["EUR", "USD", "GBP", "JPY", "SKU-1", "ABC-123-XL"]),
)


@settings(deadline=None)
@given(non_personal)
def test_generated_ids_cookies_amounts_and_dates_pass(value: str) -> None:
    assert detect(value) is None


# --- output contract ----------------------------------------------------------------------------------------------


def test_the_first_detector_in_order_names_the_value() -> None:
    assert list(DETECTORS) == ["email", "payment_card", "iban", "ipv4", "ipv6", "phone", "us_ssn", "uk_national_insurance",
                               "encoded_personal_data", "hashed_identifier"]
    assert detect("jane@example.com or +44 20 7946 0958") == "email"
    assert detect("+44 20 7946 0958 from 192.168.1.20") == "ipv4"


def test_result_holds_detector_names_only_and_keeps_the_index() -> None:
    values = pd.Series(["jane@example.com", None, "#1001", "+44 20 7946 0958"], index=[3, 1, 2, 0], dtype=object)
    out = detect_personal_data(values)
    assert out.index.tolist() == [3, 1, 2, 0]
    assert out.isna().tolist() == [False, True, True, False]
    assert set(out.dropna()) <= set(DETECTORS)
    assert not out.dropna().isin(values.dropna()).any()


def test_scan_frame_reports_per_column_and_skips_absent_columns() -> None:
    frame = pd.DataFrame(
        {"transaction_id": ["#1", "#2", "#3"], "param.note": ["ok", "mail jane@example.com", None], "row": [1, 2, 3]},
        index=[7, 8, 9],
    )
    out = scan_frame(frame, ["transaction_id", "param.note", "param.absent", "row"])
    assert list(out.columns) == ["transaction_id", "param.note", "row"]
    assert out.index.tolist() == [7, 8, 9]
    assert out["transaction_id"].isna().all() and out["row"].isna().all()
    assert out["param.note"].isna().tolist() == [True, False, True]
    assert out.loc[8, "param.note"] == "email"


def test_scan_of_an_empty_frame() -> None:
    out = scan_frame(pd.DataFrame({"a": pd.Series([], dtype="str")}), ["a"])
    assert out.shape == (0, 1)
