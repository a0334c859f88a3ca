"""Currencies' minor units (ISO 4217) and exact amounts in them.

Why minor units: Google's purchase `value` is Σ item price × quantity ("Apply a discount to an
ecommerce event", developers.google.com/analytics/devguides/collection/ga4/apply-discount: 3 × 8.00 +
1 × 17.60 = 41.60). Floats cannot promise that sum to the cent (0.1 + 0.2 != 0.3), so every money
computation of mpetl (discount allocation, refund shares, Total − Taxes − Shipping, the per-currency
tally) is done in integers of the currency's minor unit, or in `Decimal`.

The minor units come from the `iso4217` package (the ISO 4217 maintenance agency's table, e.g. JPY 0,
EUR 2, KWD 3, CLF 4). Codes the table gives no minor unit (precious metals, XDR, XXX: "N.A.") and the
withdrawn codes mpetl still accepts (ANG, CUC, SLL, ZWL; etl/protocol/rules.py) are counted in
hundredths, the common case.
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

DEFAULT_EXPONENT = 2

#: The currency marks the extractor strips (etl/extract/money.py), and the ISO 4217 codes each may stand for. A mark that
#: disagrees with the row's currency (`$10` in a EUR file) rejects the row: stripping it silently
#: sent 10 EUR for ten dollars (issue 23).
_DOLLARS = frozenset({"USD", "CAD", "AUD", "NZD", "HKD", "SGD", "TWD", "MXN", "ARS", "CLP", "COP", "CUP", "DOP", "UYU",
                      "BSD", "BBD", "BZD", "BMD", "BND", "KYD", "FJD", "GYD", "JMD", "LRD", "NAD", "SBD", "SRD", "TTD",
                      "XCD", "ZWG", "ZWL", "BRL", "NIO", "TOP", "WST", "KID", "TVD"})
CURRENCY_MARKS: dict[str, frozenset[str]] = {
    "$": _DOLLARS, "US$": frozenset({"USD"}), "CA$": frozenset({"CAD"}), "AU$": frozenset({"AUD"}),
    "NZ$": frozenset({"NZD"}), "HK$": frozenset({"HKD"}), "S$": frozenset({"SGD"}),
    "€": frozenset({"EUR"}), "£": frozenset({"GBP", "GIP", "FKP", "SHP", "EGP", "LBP", "SYP", "SSP"}),
    "¥": frozenset({"JPY", "CNY"}), "₹": frozenset({"INR"}),
}




@functools.cache
def exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (JPY 0, USD 2, KWD 3); 2 when ISO gives none."""
    import iso4217

    try:
        value = iso4217.Currency(currency.upper()).exponent
    except (ValueError, KeyError, AttributeError):
        return DEFAULT_EXPONENT
    return DEFAULT_EXPONENT if value is None else int(value)


def to_minor(amount: Decimal | str | float | int, currency: str) -> int:
    """An amount as whole minor units, rounded half to even (10.005 USD → 1000; 1000 JPY → 1000)."""
    exp = exponent(currency)
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    return int(value.scaleb(exp).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_minor(minor: int, currency: str) -> Decimal:
    """Minor units back as an exact Decimal with the currency's places (800 USD → Decimal('8.00'))."""
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)) if exp else Decimal(minor)


def json_number(minor: int, currency: str) -> float | int:
    """The amount as the JSON number the body carries: an int for a whole amount, else a float whose
    shortest repr is the exact decimal (amounts below 10^13 with up to 4 places have ≤ 17 digits and
    round-trip; mpetl rejects amounts beyond 10^15, etl/protocol/rules.py)."""
    exp = exponent(currency)
    if exp == 0 or minor % 10**exp == 0:
        return minor // 10**exp
    return float(from_minor(minor, currency))


def parse(text: object) -> Decimal | None:
    """A plain decimal text (as the extractor normalised it) as a Decimal; None when not one."""
    if text is None:
        return None
    try:  # pd.NA reads "<NA>" and NaN "nan": neither is a finite decimal
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None
