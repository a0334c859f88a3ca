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

`Notes` are counts about rows that *are* sent (no session, a session GA will not attribute…): worth a
line in every summary, never part of the sum. A per-currency money tally is meant to be a sibling
`Counts` subclass (e.g. `Money(value_in, value_sent, value_rejected, …)` with Decimal fields, kept as
`dict[currency, Money]` on `Tally`); `Counts` adds and reads back any numeric fields, not only ints.
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

    @classmethod
    def from_summary(cls, summary: object, *, where: str) -> Buckets:
        """The buckets of a summary.json (a run's or a shard's), every key and type checked."""
        return cls.from_mapping(summary, where=where, optional=cls.ADDED_LATER)


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
    filtered_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (code, reason) → rows
    detectors: Counter[str] = field(default_factory=Counter)  # personal-data detector → values caught
    pii_dropped: Counter[str] = field(default_factory=Counter)  # column → values blanked (on_pii = "drop")
    item_keys_not_sent: Counter[str] = field(default_factory=Counter)  # item key outside the allowlist → items
    params_not_allowed: Counter[str] = field(default_factory=Counter)  # param no row's event allows → rows

    def add(self, other: Tally) -> None:
        """Fold another tally into this one (a chunk into its source, a source into the run)."""
        self.buckets += other.buckets
        self.notes += other.notes
        for name in ("reject_codes", "filtered_reasons", "detectors", "pii_dropped", "item_keys_not_sent",
                     "params_not_allowed"):
            getattr(self, name).update(getattr(other, name))

    def filtered_codes(self) -> dict[str, int]:
        """Filtered rows by code (sums to `buckets.filtered`)."""
        codes: Counter[str] = Counter()
        for (code, _), rows in self.filtered_reasons.items():
            codes[code] += rows
        return dict(codes.most_common())

    def filtered_list(self) -> list[dict[str, Any]]:
        """`[{"code", "reason", "rows"}]`, most rows first: the summary's `filtered_reasons`."""
        return [{"code": code, "reason": reason, "rows": rows}
                for (code, reason), rows in sorted(self.filtered_reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
