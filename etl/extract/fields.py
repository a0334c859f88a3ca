"""Canonical field names and the resolution of source headers to them.

Why a resolver: vendor exports drift (``Currency`` vs ``Opportunity Currency``, trailing spaces,
different capitalisation), so each kind lists candidate headers per field and the user's
``columns`` override wins. Resolution happens once per file, against the header row, so a missing
column fails before any record is produced and the error names the header that was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from etl.config import SourceConfig
from etl.errors import SourceError
from etl.protocol.place import PLACE_PREFIX as _PLACE_PREFIX

CANONICAL_FIELDS = (
    "client_id",
    "session_id",
    "timestamp",
    "timezone",
    "transaction_id",
    "value",
    "currency",
    "event_name",
    "items",
    "consent_analytics",
    "ad_user_data",
    "ad_personalization",
    "user_id",
    "total",  # the order's total with tax and shipping: value = total − tax − shipping when value is unmapped
    "refunded",  # a refund row's cumulative refunded amount, tax included (Shopify's Refunded Amount)
    "app_instance_id",  # an app stream's pseudonymous id (32 hex digits), instead of client_id
)
#: Columns only a kind writes (never mapped by a user): `value_sign`, the currency mark the value cell
#: carried (etl.extract.money.currency_marks); `time_unknown`, a refund whose export has no time for it
#: (the transform times it at the wall clock: when it was first seen).
INTERNAL_FIELDS = ("value_sign", "time_unknown")
PARAM_PREFIX = "param."
# `[sources.location]` columns: place.store (looked up in [locations]), place.city, … (etl/protocol/place.py)
PLACE_PREFIX = _PLACE_PREFIX
FILTER_PREFIX = "filter."  # `[sources.filter]` columns, carried to the transform's row filter
SKIP_REASON = "skip_reason"
# Params holding money: normalised like `value` so "$2.16" arrives as "2.16".
MONEY_PARAMS = frozenset({"tax", "shipping", "tip", "discount"})
MONEY_FIELDS = frozenset({"value", "total", "refunded"})


@dataclass(frozen=True)
class FieldSpec:
    """A field a kind reads: candidate headers in order of preference, and whether it must exist."""

    field: str
    headers: tuple[str, ...]
    required: bool = False


def header_key(name: str) -> str:
    """Headers match case-insensitively and trimmed (a BOM or stray space must not break a mapping)."""
    return name.replace("\ufeff", "").strip().casefold()


@dataclass(frozen=True)
class ResolvedColumns:
    """Field → position in the header row, and field → the header as the file spells it."""

    positions: dict[str, int]
    headers: dict[str, str]

    def has(self, field: str) -> bool:
        return field in self.positions


def specs_for(source: SourceConfig, defaults: Sequence[FieldSpec], helpers: Iterable[str] = ()) -> list[FieldSpec]:
    """The kind's default specs with the user's `columns` and `params` laid over them.

    A user mapping is required (the user named it, so its absence is an error); an empty string
    unmaps a default. Unknown field names are refused so a typo cannot silently map nothing.
    """
    known = set(CANONICAL_FIELDS) | {"time"} | set(helpers) | {s.field for s in defaults}
    by_field = {s.field: s for s in defaults}
    for field, header in source.columns.items():
        if field not in known:
            close = difflib.get_close_matches(field, sorted(known), n=1, cutoff=0.6)
            raise SourceError(
                str(source.path), None, None,
                f"config columns.{field} is not a known field" + (f"; did you mean {close[0]!r}?" if close else "")
                + f" (expected one of: {', '.join(sorted(known))})",
            )
        if header.strip():
            by_field[field] = FieldSpec(field, (header,), required=True)
        else:
            by_field.pop(field, None)
    for name, header in source.params.items():
        by_field[PARAM_PREFIX + name] = FieldSpec(PARAM_PREFIX + name, (header,), required=True)
    for column in source.filter:
        by_field[FILTER_PREFIX + column] = FieldSpec(FILTER_PREFIX + column, (column,), required=True)
    _place_specs(source, by_field)
    return list(by_field.values())


def _place_specs(source: SourceConfig, by_field: dict[str, FieldSpec]) -> None:
    """`[sources.location]`'s columns. An empty table means the kind's own store column (Shopify's and
    Square's `Location`), then required: a store location the export cannot give is a mapping to fix."""
    store = PLACE_PREFIX + "store"
    place = source.place
    if place is None or place.fixed_store is not None:
        by_field.pop(store, None)
        return
    named = {PLACE_PREFIX + k: v for k, v in place.columns().items()}
    if place.store is not None:
        named[store] = place.store
    if named:
        by_field.pop(store, None)
        for field, header in named.items():
            by_field[field] = FieldSpec(field, (header,), required=True)
    elif store in by_field:
        by_field[store] = FieldSpec(store, by_field[store].headers, required=True)
    else:
        raise SourceError(str(source.path), None, None,
                          f"[sources.location] names no column and kind {source.kind!r} has no store column of its own: "
                          "set store (a column looked up in [locations]), fixed_store, or city/region_id/country_id")


def resolve(path: str, header_row: Sequence[str], specs: Sequence[FieldSpec]) -> ResolvedColumns:
    """Match specs against the header row; raise SourceError naming the first missing required header."""
    index: dict[str, list[int]] = {}
    for pos, name in enumerate(header_row):
        index.setdefault(header_key(name), []).append(pos)
    positions: dict[str, int] = {}
    headers: dict[str, str] = {}
    for spec in specs:
        found = next((index[header_key(h)] for h in spec.headers if header_key(h) in index), None)
        if found is None:
            if spec.required:
                expected = " or ".join(repr(h) for h in spec.headers)
                raise SourceError(
                    path, None, spec.headers[0],
                    f"required column not found: expected a header {expected} for {spec.field} "
                    f"(the header row has {len(header_row)} columns)",
                )
            continue
        if len(found) > 1:
            raise SourceError(path, None, header_row[found[0]], f"header appears {len(found)} times; {spec.field} would be ambiguous")
        positions[spec.field] = found[0]
        headers[spec.field] = header_row[found[0]].replace("\ufeff", "").strip()
    return ResolvedColumns(positions, headers)
