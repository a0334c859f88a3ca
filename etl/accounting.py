"""Where every input row went: the buckets of one chunk, source, run or night, typed and added up.

Why one object: the bucket list used to be written out three times (`pipeline.SOURCE_BUCKETS`,
`shard.BUCKETS`, the CLI's columns), and each report picked the buckets it remembered — so adding one
(`filtered`) meant finding every copy, and a copy that missed it printed an equation that did not add
up. Every summary, report, the Airflow XCom and `mpetl aggregate` now read `Buckets.NAMES`:

    rows_in == sent + filtered + rejected + duplicate + deferred + expired + rejected_at_send + failed
               + outside_window + other_shard

`filtered` is rows that are fine but are not conversions to send (a stage that is not won, a
`[sources.filter]` value, a denied or missing consent); `rejected` is bad data to fix. `outside_window`
is rows read but timed outside `--since/--until` (or after `--now`): someone else's night.

`Money` is the same equation per currency, for the value the rows carry: `money[EUR].value_in ==
value_sent + value_filtered + … + value_other_shard` (refunds negative).

`Notes` are counts about rows that *are* sent (no session, a session GA will not attribute…): worth a
line in every summary, never part of the sum.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Self


class AccountingError(ValueError):
    """A summary that is not what mpetl writes (a key missing, a count of the wrong type): names the key."""


@dataclass(frozen=True)
class Counts:
    """Numeric fields, added field by field, written as a dict and read back with every key checked."""

    def __add__(self, other: Self) -> Self:
        if type(other) is not type(self):
            return NotImplemented
        return type(self)(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_mapping(cls, data: object, *, where: str, optional: frozenset[str] = frozenset()) -> Self:
        """Read the fields back from a summary; AccountingError naming `where` and the key otherwise.

        A key in `optional` may be absent (it reads as 0): summaries written before that bucket existed.
        """
        if not isinstance(data, Mapping):
            raise AccountingError(f"{where}: expected a JSON object, got {_kind(data)}")
        values = {}
        for name, kind in _field_types(cls).items():
            if name not in data:
                if name in optional:
                    values[name] = kind(0)
                    continue
                raise AccountingError(f"{where}: key {name!r} is missing")
            value = data[name]
            # bool is an int to Python, never a count; a Decimal field also takes an int.
            if isinstance(value, bool) or not isinstance(value, (int, Decimal) if kind is Decimal else int):
                raise AccountingError(f"{where}: key {name!r} must be a whole number, got {_kind(value)}")
            if value < 0:
                raise AccountingError(f"{where}: key {name!r} must not be negative")
            values[name] = kind(value)
        return cls(**values)


@functools.cache
def _field_types(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _kind(value: object) -> str:
    return "null" if value is None else {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), type(value).__name__)


@dataclass(frozen=True)
class Buckets(Counts):
    """Each row's fate, counted: `rows_in` is every row read, each of them in exactly one bucket."""

    rows_in: int = 0
    sent: int = 0
    filtered: int = 0
    rejected: int = 0
    duplicate: int = 0
    deferred: int = 0
    expired: int = 0
    rejected_at_send: int = 0
    failed: int = 0
    outside_window: int = 0
    other_shard: int = 0

    #: The buckets, in the order every report prints them (rows_in is their sum, not a bucket).
    NAMES: ClassVar[tuple[str, ...]] = ("sent", "filtered", "rejected", "duplicate", "deferred", "expired",
                                        "rejected_at_send", "failed", "outside_window", "other_shard")
    #: Always in the printed equation; the others only when they hold rows (a run without --shard has no
    #: other_shard, a run without a window no outside_window).
    ALWAYS_SHOWN: ClassVar[tuple[str, ...]] = ("sent", "filtered", "rejected", "duplicate", "deferred", "failed")
    #: Buckets a summary written before they existed may lack (read as 0 by `from_summary`).
    ADDED_LATER: ClassVar[frozenset[str]] = frozenset({"filtered", "outside_window", "other_shard"})

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in self.NAMES)

    def balanced(self) -> bool:
        return self.rows_in == self.total

    def equation(self, sent_label: str = "sent") -> str:
        """`rows_in 268 == sent 110 + filtered 70 + rejected 24 + …`: what the run prints and logs."""
        parts = [f"{sent_label if name == 'sent' else name} {getattr(self, name):,}" for name in self.NAMES
                 if name in self.ALWAYS_SHOWN or getattr(self, name)]
        return f"rows_in {self.rows_in:,} {'==' if self.balanced() else '!='} " + " + ".join(parts)

    def labelled(self, mode: str) -> dict[str, int]:
        """`to_dict` as a summary of this mode writes it: a dry run or a validation says `would_send`."""
        label = sent_label(mode)
        return {(label if name == "sent" else name): value for name, value in self.to_dict().items()}

    @classmethod
    def from_summary(cls, summary: object, *, where: str) -> Buckets:
        """The buckets of a summary.json (a run's or a shard's), every key and type checked; a dry run's
        or a validation's `would_send` reads as `sent` (summaries written before it say `sent`)."""
        if isinstance(summary, Mapping) and "sent" not in summary and "would_send" in summary:
            summary = {**summary, "sent": summary["would_send"]}
        return cls.from_mapping(summary, where=where, optional=cls.ADDED_LATER)


def sent_label(mode: str) -> str:
    """What a summary calls the sent bucket: a dry run or a validation sends nothing, it *would* send."""
    return "sent" if mode == "send" else "would_send"


@dataclass(frozen=True)
class Money(Counts):
    """One currency's money, by the bucket its rows landed in: `value_in` is the sum, like `rows_in`.

    Purchases count positive, refunds negative (a refund reverses revenue), so a night's `value_in`
    is what GA's revenue moves by. Amounts are exact `Decimal`s, written to summary.json as decimal
    strings ("1234.50"): a JSON float would not add up to the cent over a night of orders.
    """

    value_in: Decimal = Decimal(0)
    value_sent: Decimal = Decimal(0)
    value_filtered: Decimal = Decimal(0)
    value_rejected: Decimal = Decimal(0)
    value_duplicate: Decimal = Decimal(0)
    value_deferred: Decimal = Decimal(0)
    value_expired: Decimal = Decimal(0)
    value_rejected_at_send: Decimal = Decimal(0)
    value_failed: Decimal = Decimal(0)
    value_outside_window: Decimal = Decimal(0)
    value_other_shard: Decimal = Decimal(0)

    NAMES: ClassVar[tuple[str, ...]] = tuple(f"value_{name}" for name in Buckets.NAMES)

    @property
    def total(self) -> Decimal:
        return sum((getattr(self, name) for name in self.NAMES), Decimal(0))

    def balanced(self) -> bool:
        return self.value_in == self.total

    def equation(self, currency: str, sent_label: str = "sent") -> str:
        """`EUR value_in 1,234.50 == sent 1,000.00 + rejected 234.50`: the buckets that hold money."""
        parts = [f"{sent_label if name == 'value_sent' else name.removeprefix('value_')} {getattr(self, name):,}"
                 for name in self.NAMES if getattr(self, name) or name == "value_sent"]
        return f"{currency} value_in {self.value_in:,} {'==' if self.balanced() else '!='} " + " + ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {name: str(value) for name, value in super().to_dict().items()}

    @classmethod
    def from_summary(cls, data: object, *, where: str) -> Money:
        """One currency of a summary's `money`, every key checked (decimal strings, signed)."""
        if not isinstance(data, Mapping):
            raise AccountingError(f"{where}: expected a JSON object, got {_kind(data)}")
        values = {}
        for name in ("value_in", *cls.NAMES):
            if name not in data:
                raise AccountingError(f"{where}: key {name!r} is missing")
            text = data[name]
            try:
                if isinstance(text, bool) or not isinstance(text, (str, int)):
                    raise ValueError
                values[name] = Decimal(str(text))
                if not values[name].is_finite():
                    raise ValueError
            except (ValueError, ArithmeticError):
                raise AccountingError(f"{where}: key {name!r} must be a decimal amount, got {_kind(text)}") from None
        return cls(**values)


def tidy(value: Decimal, currency: str) -> Decimal:
    """`value` with its currency's places (12.340000000 EUR → 12.34) when that loses nothing."""
    from etl.protocol.currency import exponent

    places = Decimal(1).scaleb(-exponent(currency))
    rounded = value.quantize(places)
    return rounded if rounded == value else value.normalize()


def sum_by_currency(currency: Any, values: Any) -> dict[str, Decimal]:
    """Σ of exact decimal values (text or Arrow decimals) per currency, one Arrow group-by; rows
    without a currency or a value are left out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    codes = pa.array(currency, type=pa.string(), from_pandas=True)
    amounts = values if isinstance(values, (pa.Array, pa.ChunkedArray)) and pa.types.is_decimal(values.type) else \
        pc.cast(pa.array(values, type=pa.string(), from_pandas=True), pa.decimal128(38, 9), safe=False)
    table = pa.table({"c": codes, "v": amounts})
    table = table.filter(pc.and_(pc.is_valid(table["c"]), pc.is_valid(table["v"])))
    if not table.num_rows:
        return {}
    grouped = table.group_by("c").aggregate([("v", "sum")]).to_pydict()
    return {code: tidy(total, code) for code, total in zip(grouped["c"], grouped["v_sum"], strict=True)}


def add_money(a: Mapping[str, Money], b: Mapping[str, Money]) -> dict[str, Money]:
    """Two per-currency money tallies added, currency by currency."""
    out = dict(a)
    for code, money in b.items():
        out[code] = out[code] + money if code in out else money
    return out


def money_to_dict(money: Mapping[str, Money]) -> dict[str, dict[str, str]]:
    return {code: money[code].to_dict() for code in sorted(money)}


def money_from_summary(data: object, *, where: str) -> dict[str, Money]:
    if not isinstance(data, Mapping):
        raise AccountingError(f"{where}: expected a JSON object, got {_kind(data)}")
    return {str(code): Money.from_summary(part, where=f"{where}.{code}") for code, part in data.items()}


@dataclass(frozen=True)
class Notes(Counts):
    """Counts about rows that are sent (or planned): not buckets, but each worth a line in the summary."""

    no_session: int = 0  # sent without session_id: GA shows "(not set)" source/medium
    session_cookie_unparsed: int = 0  # a session cookie was there but is no _ga_<ID> cookie we can read
    session_cookie_other_property: int = 0  # only other properties' _ga_<ID> cookies: sent without a session
    session_too_old_to_attribute: int = 0  # session started > 24 h before sending: GA will not attribute it
    timestamp_before_session_start: int = 0  # the event lies before its session began: not attributed either
    timestamp_clamped: int = 0  # timed within future_tolerance_minutes after the wall clock: sent as "now"
    purchase_without_items: int = 0  # the reference marks items as required for purchase
    refunds_outside_window: int = 0  # refunds timed outside --since/--until (among outside_window)
    value_from_total: int = 0  # no Subtotal: value = Total − Taxes − Shipping (never Total)
    value_net_of_tax: int = 0  # options.value_includes_tax: the amount less its tax
    refunds_on_purchase_basis: int = 0  # refunds put on their purchase's basis (refunded × value / total …)
    refund_without_purchase: int = 0  # a refund whose purchase this tool never planned: sent all the same
    refund_nothing_new: int = 0  # a refund level whose delta over what the ledger holds is nothing: a duplicate
    items_do_not_add_up: int = 0  # the items fall short of the order's value: sent, value kept
    items_without_price: int = 0  # an item without a price: items sent as given, value kept
    with_location: int = 0  # sent with a user_location ([sources.location]): GA shows their store's city, region, country
    without_location: int = 0  # the source maps a location but the row had none (a blank cell, an unknown store omitted)


@dataclass
class Tally:
    """Everything a chunk, a source or a run counts: buckets, notes, and the reasons behind them.

    `reject_codes` counts each reject reason (a row with two reasons counts under both);
    `filtered_reasons` counts each filtered row once, under its first filter reason, so it sums to
    `buckets.filtered`. The `*_not_sent` counters name what was left out of events that were sent.
    """

    buckets: Buckets = field(default_factory=Buckets)
    notes: Notes = field(default_factory=Notes)
    reject_codes: Counter[str] = field(default_factory=Counter)
    reject_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (code, description) → rows
    filtered_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (code, reason) → rows
    detectors: Counter[str] = field(default_factory=Counter)  # personal-data detector → values caught
    pii_dropped: Counter[str] = field(default_factory=Counter)  # column → values blanked (on_pii = "drop")
    item_keys_not_sent: Counter[str] = field(default_factory=Counter)  # item key outside the allowlist → items
    params_not_allowed: Counter[str] = field(default_factory=Counter)  # param no row's event allows → rows
    limits: Counter[str] = field(default_factory=Counter)  # a Google limit applied, by rule → values cut or dropped
    money: dict[str, Money] = field(default_factory=dict)  # currency → its money by bucket
    value_unreadable: int = 0  # rows whose value (or its currency) cannot be read: they carry no money

    def add(self, other: Tally) -> None:
        """Fold another tally into this one (a chunk into its source, a source into the run)."""
        self.buckets += other.buckets
        self.notes += other.notes
        for name in ("reject_codes", "reject_reasons", "filtered_reasons", "detectors", "pii_dropped",
                     "item_keys_not_sent", "params_not_allowed", "limits"):
            getattr(self, name).update(getattr(other, name))
        self.money = add_money(self.money, other.money)
        self.value_unreadable += other.value_unreadable

    def add_value(self, bucket: str, currency: str, value: Decimal) -> None:
        """Count `value` (signed: refunds negative) of `currency` into `bucket` and into value_in."""
        if not value:
            return
        value = tidy(value, currency)
        money = self.money.get(currency, Money())
        self.money[currency] = money + Money(**{"value_in": value, f"value_{bucket}": value})

    def filtered_codes(self) -> dict[str, int]:
        """Filtered rows by code (sums to `buckets.filtered`)."""
        codes: Counter[str] = Counter()
        for (code, _), rows in self.filtered_reasons.items():
            codes[code] += rows
        return dict(codes.most_common())

    def filtered_list(self) -> list[dict[str, Any]]:
        """`[{"code", "reason", "rows"}]`, most rows first: the summary's `filtered_reasons`."""
        return _reason_list(self.filtered_reasons)

    def reject_list(self, limit: int = 20) -> list[dict[str, Any]]:
        """The `limit` most common reject reasons, `[{"code", "reason", "rows"}]`: the summary's
        `reject_reasons` (rejects.ndjson holds every row; a source can have one reason per column)."""
        return _reason_list(self.reject_reasons)[:limit]


def _reason_list(counts: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"code": code, "reason": reason, "rows": rows}
            for (code, reason), rows in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
