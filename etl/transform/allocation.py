"""Discounts spread over items so that Σ item price × quantity == value, exactly, in minor units.

Google's rule ("Apply a discount to an ecommerce event",
developers.google.com/analytics/devguides/collection/ga4/apply-discount): an item's `price` is its
unit price *after* discount, `discount` the unit discount, and `value` the sum of price × quantity
("Google Analytics does not automatically subtract the discount value from the price"); their example:
3 × 8.00 + 1 × 17.60 = 41.60 after a 2.00 and a 4.40 unit discount.

Exports give discounts per line (Shopify's `Lineitem discount` is the whole line's) and per order
(a code on the cart): the line's net is its gross less its own discount, and whatever separates the
lines' nets from the order's value (Subtotal) is an order-level discount, shared over the lines in
proportion to their nets by the largest-remainder rule (ties to the earlier line), so the shares add
up to the cent. A line total that does not divide by its quantity (3 units for 29.00) is sent as two
item entries of the same item, 2 × 9.67 + 1 × 9.66, so every unit price is a whole number of minor
units and the sum is still exact. Everything here is integers of the currency's minor unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any


def shares(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split over `weights` in proportion, as integers that add up to `total` exactly.

    Largest remainder (Hamilton): each gets the floor of its exact share, then the units left go to
    the largest remainders, ties to the earlier weight; deterministic. Zero weights get nothing
    (unless every weight is zero: then the units go one by one from the first).
    """
    n = len(weights)
    if n == 0:
        return []
    sign = -1 if total < 0 else 1
    total = abs(total)
    whole = sum(weights)
    if whole <= 0:
        base, extra = divmod(total, n)
        return [sign * (base + (1 if i < extra else 0)) for i in range(n)]
    out = [total * w // whole for w in weights]
    left = total - sum(out)
    order = sorted(range(n), key=lambda i: (-((total * weights[i]) % whole), i))
    for i in order[:left]:
        out[i] += 1
    return [sign * v for v in out]


@dataclass
class Line:
    """One line of an order, in minor units: `gross` (before any discount) None when it has no price."""

    item: dict[str, Any]  # the item's other fields (item_id, item_name, …), sent as they are
    quantity: int
    gross: int | None
    discount: int = 0  # the line's own discount, for the whole line


@dataclass
class Allocation:
    items: list[dict[str, Any]] = field(default_factory=list)  # price/discount as minor units (ints)
    value: int = 0  # the event's value in minor units
    adds_up: bool = True  # Σ price × quantity == value
    priced: bool = True  # every line had a price


def allocate(lines: Sequence[Line], target: int | None) -> Allocation:
    """Items with unit prices after every discount, and the value they add up to.

    `target` is the order's value (Subtotal, or Total − Taxes − Shipping) in minor units; None when the
    order has none (the value is then the lines' nets). When the lines' nets fall short of the target
    by more than one minor unit per line, no discount can explain it: the items are sent after their
    own discounts, the value stays the order's, and `adds_up` is False (counted by the caller).
    """
    if any(line.gross is None for line in lines):
        return Allocation([_unpriced(line) for line in lines], target or 0, adds_up=False, priced=False)
    live = [i for i, line in enumerate(lines) if line.quantity > 0]
    nets = [lines[i].gross - lines[i].discount for i in live]  # type: ignore[operator]
    total_net = sum(nets)
    value = total_net if target is None else target
    order_discount = total_net - value
    finals = list(nets)
    adds_up = True
    if 0 <= order_discount <= total_net or (order_discount < 0 and -order_discount <= len(live)):
        finals = [net - share for net, share in zip(nets, shares(order_discount, nets), strict=True)]
    else:
        adds_up = not live and value == 0
    items: list[dict[str, Any]] = []
    finals_by_line = dict(zip(live, finals, strict=True))
    for i, line in enumerate(lines):
        if i not in finals_by_line:
            items.append({**line.item, "quantity": line.quantity})  # a zero-quantity line carries no money
            continue
        items.extend(_entries(line, finals_by_line[i]))
    return Allocation(items, value, adds_up=adds_up)


def _entries(line: Line, final: int) -> list[dict[str, Any]]:
    """The line as one entry, or two when its total does not divide by its quantity."""
    q = line.quantity
    base, extra = divmod(final, q)
    unit_gross = Decimal(line.gross) / q  # type: ignore[arg-type]
    out = []
    for price, units in ((base + 1, extra), (base, q - extra)):
        if units <= 0:
            continue
        discount = int((unit_gross - price).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        entry = {**line.item, "price": price, "quantity": units}
        if discount > 0:
            entry["discount"] = discount
        out.append(entry)
    return out


def _unpriced(line: Line) -> dict[str, Any]:
    return {**line.item, "quantity": line.quantity}
