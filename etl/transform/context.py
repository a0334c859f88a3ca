"""What the transform is given (`TransformOptions`) and what its rules share (`RuleContext`).

Why a context object: the rules (`etl/transform/rules/`) each read a few columns of the same chunk,
add reasons to the same `RejectReasons` and counts to the same `Tally`; passing those four things to
every rule as arguments made `transform_chunk` a 309-line function with 10 parameters. A rule takes
the context (and the columns earlier rules produced) and returns the columns it produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pandas as pd

from etl.accounting import Tally
from etl.config import PlaceConfig, PropertyConfig, SourceConfig, WindowConfig
from etl.shard import Shard
from etl.transform.reasons import RejectReasons


class Chunk(Protocol):
    """What the transform needs of an extracted chunk (etl.extract.SourceChunk satisfies it)."""

    source: str
    path: str
    frame: pd.DataFrame
    columns: dict[str, str]


@dataclass(frozen=True)
class TransformOptions:
    """Everything a run decides for the transform, once per run (not per chunk).

    `wall_micros` is the wall clock (`etl.clock`), never `--now`: a row later than it plus
    `window.future_tolerance_minutes` is rejected whatever the selection, and an event within the
    tolerance is sent timed at the wall clock, since Google takes no timestamp after the request.
    `since_micros`/`until_micros` select rows by event time ([since, until): `--since`, `--until`,
    `--now`); `shard` keeps only the clients of one shard (`--shard K/N`).
    """

    source: SourceConfig
    prop: PropertyConfig
    wall_micros: int
    window: WindowConfig = field(default_factory=WindowConfig)
    since_micros: int | None = None
    until_micros: int | None = None
    extra_params: Mapping[str, Any] = field(default_factory=dict)  # [privacy] extra_params
    shard: Shard | None = None
    locations: Mapping[str, PlaceConfig] = field(default_factory=dict)  # [locations]: store → where it is


@dataclass(frozen=True)
class Param:
    """One event param a rule produced, per row (NA: the event goes without it), as `build` writes it.

    `kind`: "number" (a JSON number), "text" (a JSON string, escaped), "plain" (a JSON string known to
    need no escaping: validated currency codes, digit-only ids), "json" (already JSON text, e.g. items).
    """

    name: str
    values: pd.Series
    kind: Literal["number", "text", "plain", "json"]


@dataclass
class RuleContext:
    """One chunk on its way through the rules: its rows in scope, their labels, reasons and counts."""

    source: str  # the source's name (events and rejects carry it)
    frame: pd.DataFrame  # the rows in scope: inside the window, owned by this shard
    labels: Mapping[str, str]  # canonical field → the source's own header, to name it in reasons
    options: TransformOptions
    times: pd.Series  # each row's event time as exact UTC µs (Int64; NA where unreadable or unmapped)
    reasons: RejectReasons
    tally: Tally

    @property
    def n(self) -> int:
        return len(self.frame)

    @property
    def config(self) -> SourceConfig:
        return self.options.source

    def has(self, name: str) -> bool:
        return name in self.frame.columns

    def get(self, name: str) -> pd.Series:
        """The column, or an all-NA one for a field the source does not map."""
        if name in self.frame.columns:
            return self.frame[name]
        return pd.Series(pd.NA, index=self.frame.index, dtype="string")

    def label(self, name: str) -> str:
        return self.labels.get(name, name)
