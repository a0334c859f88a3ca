"""A corpus of ordinary values that are not personal data: order ids, CRM record ids, coupons, SKUs, barcodes,
tracking numbers, payment-provider ids, amounts, dates, GA cookies and product names — 12,000 of them, and
6,000 look-alikes of the detectors issue 23 added (nine-digit order numbers, 13-digit ids and EANs starting
with 4, Shopify's base64 gids, "at"/"dot" codes, UUIDs in capitals, licence keys, MAC addresses, ISBN-10s,
dates, versions, base64-looking SKUs, BIC codes, postcodes, NI-like stock codes).

Generated from a fixed seed, so the false-positive rate docs/privacy.md reports is reproducible:

    .venv/bin/python -m tests.transform.non_personal_corpus
"""

from __future__ import annotations

import base64
import random
import string
import uuid

ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
WORDS = ["SUMMER", "WELCOME", "BLACKFRIDAY", "SPRING", "VIP", "FREESHIP", "XMAS", "NEWYEAR", "SALE", "THANKS", "BACK",
         "FALL", "LOYAL", "FRIENDS", "STUDENT", "BUNDLE"]
PRODUCTS = ["T-Shirt", "Hoodie", "Mug", "Sneaker", "Backpack", "Notebook", "Cap", "Scarf", "Poster", "Sticker pack"]
COLOURS = ["RED", "BLK", "WHT", "NAVY", "GRN", "GRY"]
SIZES = ["XS", "S", "M", "L", "XL", "XXL", "38", "40", "42", "44"]


def _gtin_check(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def _generators(rng: random.Random) -> list:
    def choice(chars: str, n: int) -> str:
        return "".join(rng.choice(chars) for _ in range(n))

    return [
        # order and invoice numbers
        lambda: f"#{rng.randint(1000, 99_999_999)}",
        lambda: f"T-{rng.randint(2000, 2099)}-{rng.randint(0, 999_999):06d}",
        lambda: f"ORD-{rng.randint(2020, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(0, 999_999):06d}",
        lambda: f"INV/{rng.randint(2020, 2030)}/{rng.randint(1, 9999):04d}",
        lambda: f"SO-{rng.randint(0, 999_999):06d}-{rng.choice('ABCDEFG')}",
        lambda: str(rng.randint(10**12, 10**13 - 1)),  # Shopify order id
        lambda: str(rng.randint(1, 10**11)),  # HubSpot record id
        # CRM record ids (Salesforce 15/18 characters)
        lambda: "006" + choice(ALNUM, 12),
        lambda: "0065g" + choice(ALNUM, 10) + choice(string.ascii_uppercase, 3),
        # coupons
        lambda: f"{rng.choice(WORDS)}{rng.choice([5, 10, 15, 20, 25, 30, 50])}",
        lambda: f"{rng.choice(WORDS)}-{rng.randint(2020, 2030)}",
        lambda: choice(UPPER_ALNUM, rng.randint(6, 12)),
        lambda: f"{choice(UPPER_ALNUM, 4)}-{choice(UPPER_ALNUM, 4)}-{choice(UPPER_ALNUM, 4)}",
        # SKUs and barcodes
        lambda: f"{rng.choice(PRODUCTS).upper().replace(' ', '')[:6]}-{rng.choice(COLOURS)}-{rng.choice(SIZES)}",
        lambda: f"SKU-{rng.randint(1, 99999):05d}-{rng.choice(COLOURS)}",
        lambda: f"{choice(string.ascii_uppercase, 3)}-{rng.randint(100, 999)}",
        lambda: _gtin_check(str(rng.randint(10**11, 10**12 - 1))),  # EAN-13
        lambda: _gtin_check(str(rng.randint(10**10, 10**11 - 1))),  # UPC-A
        lambda: _gtin_check("97" + str(rng.randint(8, 9)) + str(rng.randint(10**8, 10**9 - 1))),  # ISBN-13
        lambda: f"978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}",
        lambda: f"{rng.randint(100000, 999999)}-{rng.randint(10, 99)}",  # supplier article numbers
        # carriers and payment providers
        lambda: "1Z" + choice(UPPER_ALNUM, 6) + str(rng.randint(10**9, 10**10 - 1)),  # UPS
        lambda: str(rng.randint(10**11, 10**12 - 1)),  # FedEx 12 digits
        lambda: "pi_" + choice(ALNUM, 24),  # Stripe
        lambda: "ch_" + choice(ALNUM, 24),
        lambda: choice(ALNUM, 29),  # Square payment id
        lambda: str(uuid.UUID(int=rng.getrandbits(128))),
        lambda: f"PAYID-{choice(UPPER_ALNUM, 24)}",  # PayPal
        # amounts, quantities, dates, times
        lambda: f"{rng.randint(0, 9_999_999)}.{rng.randint(0, 99):02d}",
        lambda: f"-{rng.randint(0, 9999)}.{rng.randint(0, 99):02d}",
        lambda: f"{rng.randint(1, 99)} x {rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
        lambda: f"{rng.randint(2000, 2099)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(2000, 2099)} {rng.randint(1, 12)}:{rng.randint(0, 59):02d} PM",
        lambda: f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2000, 2099)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        lambda: f"{rng.randint(2000, 2099)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
        # GA cookies and ids
        lambda: f"{rng.randint(1, 2**31 - 1)}.{rng.randint(10**9, 10**10 - 1)}",
        lambda: f"GA1.1.{rng.randint(1, 2**31 - 1)}.{rng.randint(10**9, 10**10 - 1)}",
        lambda: f"GS1.1.{rng.randint(10**9, 10**10 - 1)}.{rng.randint(1, 500)}.1.{rng.randint(10**9, 10**10 - 1)}.60.0.0",
        lambda: f"GS2.1.s{rng.randint(10**9, 10**10 - 1)}$o{rng.randint(1, 500)}$g1$t{rng.randint(10**9, 10**10 - 1)}$j0$l0$h0",
        # product names and versions
        lambda: f"{rng.choice(PRODUCTS)} {rng.choice(COLOURS).title()} {rng.choice(SIZES)}",
        lambda: f"{rng.choice(PRODUCTS)} ({rng.randint(2, 12)}-pack)",
        lambda: f"v{rng.randint(0, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
    ]


def _lookalike_generators(rng: random.Random) -> list:
    """Ordinary values shaped like issue 23's new detectors' targets (each must stay unflagged)."""
    def choice(chars: str, n: int) -> str:
        return "".join(rng.choice(chars) for _ in range(n))

    return [
        # nine-digit order numbers (not SSNs without the word)
        lambda: str(rng.randint(10**8, 10**9 - 1)),
        lambda: f"{rng.choice(['Order', 'PO', 'Ticket', '#', 'Invoice no.'])} {rng.randint(10**8, 10**9 - 1)}",
        # 13-digit ids starting with 4 (Shopify orders of 2021-22) and German EANs (GS1 prefixes 400-440)
        lambda: str(rng.randint(4 * 10**12, 5 * 10**12 - 1)),
        lambda: _gtin_check(str(rng.randint(400, 440)) + f"{rng.randint(0, 10**9 - 1):09d}"),
        lambda: f"EAN {_gtin_check(str(rng.randint(400, 440)) + f'{rng.randint(0, 10**9 - 1):09d}')}",
        lambda: f"gid://shopify/Order/{rng.randint(4 * 10**12, 6 * 10**12)}",
        # Shopify's GraphQL ids are base64 of such a gid: they decode, and hold nothing personal
        lambda: base64.b64encode(f"gid://shopify/Order/{rng.randint(4 * 10**12, 6 * 10**12)}".encode()).decode(),
        # "at"/"dot" in codes and product text
        lambda: f"{rng.choice(['AT', 'DOT', 'AT-DOT', 'ATDOT', 'DOTCOM'])}-{rng.randint(2020, 2030)}",
        lambda: f"{rng.choice(['SAVE-AT-HOME', 'DOTCOM', 'AT', 'MEET-AT'])}{rng.choice([5, 10, 20, 50])}",
        lambda: rng.choice(["Pick up at store.com", "Buy 2 @ 9.99", "50% off at checkout", "AT&T prepaid", "Dot matrix paper",
                            "Polka dot dress", "Meet at Berlin store", "Sold at example.com"]),
        # UUIDs written in capitals or braces, licence keys, MAC addresses, short git hashes
        lambda: str(uuid.UUID(int=rng.getrandbits(128))).upper(),
        lambda: "{" + str(uuid.UUID(int=rng.getrandbits(128))) + "}",
        lambda: "-".join(choice("0123456789ABCDEF", 4) for _ in range(4)),
        lambda: ":".join(choice("0123456789abcdef", 2) for _ in range(6)),
        lambda: choice("0123456789abcdef", 7),
        # ISBN-10, dates and times, versions
        lambda: f"{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.choice('0123456789X')}",
        lambda: f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2000, 2099)}",
        lambda: f"{rng.randint(2000, 2099)}/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}",
        lambda: f"{rng.randint(1, 28):02d}-{rng.randint(1, 12):02d}-{rng.randint(2000, 2099)}",
        lambda: f"{rng.randint(0, 3)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}-rc{rng.randint(1, 5)}",
        lambda: f"10.0.{rng.randint(10000, 22999)}",
        # base64-looking SKUs and codes, SWIFT/BIC codes, UK postcodes, NI-like stock codes
        lambda: choice(string.ascii_uppercase + string.digits, rng.randint(16, 24)),
        lambda: "prod_" + choice(ALNUM, 14),
        lambda: rng.choice(["DEUTDEFF500", "COBADEFFXXX", "BARCGB22", "NWBKGB2L"]),
        lambda: f"{rng.choice(['SW1A', 'EC1V', 'M1', 'B33'])} {rng.randint(1, 9)}{choice('ABDEFGHJLNPQRSTUWXYZ', 2)}",
        lambda: f"{choice(string.ascii_uppercase, 2)}{rng.randint(100000, 999999)}",
        lambda: f"{choice(string.ascii_uppercase, 2)}-{rng.randint(100000, 999999)}-{rng.choice('ABCD')}",
        # quantities, ranges, postal codes and opening hours next to digits
        lambda: f"{rng.randint(1, 24)} x {rng.choice([250, 330, 500, 750])} ml",
        lambda: f"Mon-Fri {rng.randint(7, 10):02d}:00-{rng.randint(16, 20)}:00",
        lambda: f"Art.-Nr. {rng.randint(0, 9999):04d}/{rng.randint(0, 9999):04d}",
    ]


def corpus(n: int = 12_000, seed: int = 14) -> list[str]:
    """The original corpus (issue 14) followed by ``lookalikes`` values shaped like issue 23's detectors' targets."""
    return _draw(_generators, n, seed) + lookalikes()


def lookalikes(n: int = 6_000, seed: int = 23) -> list[str]:
    return _draw(_lookalike_generators, n, seed)


def _draw(make, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    generators = make(rng)
    return [generators[i % len(generators)]() for i in range(n)]


if __name__ == "__main__":
    import pandas as pd

    from etl.transform.privacy import detect_personal_data

    values = corpus()
    found = detect_personal_data(pd.Series(values))
    hits = int(found.notna().sum())
    print(f"{hits} of {len(values)} ordinary values flagged: false-positive rate {hits / len(values):.4%}")
    for value, name in zip(values, found, strict=True):
        if not pd.isna(name):
            print(f"  {name}: {value}")
