"""Source kinds: each knows its vendor's default headers and how rows become records.

A kind turns numbered raw rows into `Built` pieces (canonical text fields by name); the dispatcher
in `etl.extract.sources` adds what every kind shares (identity map, default currency) and
assembles the frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from etl.config import SourceConfig
from etl.extract.fields import FieldSpec, ResolvedColumns
from etl.extract.raw import RawChunk


@dataclass
class Built:
    rows: np.ndarray
    fields: dict[str, pd.Series]
    names: dict[str, str]
    lines: int
    skipped_blank: int = 0
    extra: dict[str, pd.Series] = field(default_factory=dict)  # helper columns (identity key)


class Kind(Protocol):
    def specs(self, source: SourceConfig) -> list[FieldSpec]: ...

    def build(
        self, source: SourceConfig, raw: Iterator[RawChunk], cols: ResolvedColumns, chunk_rows: int
    ) -> Iterator[Built]: ...


def registry() -> dict[str, Callable[[], Kind]]:
    from etl.extract.kinds.bigquery import BigQuery
    from etl.extract.kinds.crm import HubSpot, Salesforce
    from etl.extract.kinds.generic import Generic
    from etl.extract.kinds.shopify import Shopify
    from etl.extract.kinds.square import Square

    return {"csv": Generic, "parquet": Generic, "salesforce": Salesforce, "hubspot": HubSpot, "shopify": Shopify, "square": Square,
            "bigquery": BigQuery}
