"""The record batch handed from extract to transform (docs/ARCHITECTURE.md, `SourceChunk`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class SourceChunk:
    """One batch of canonical records from one source file.

    `lines` counts the source rows consumed (a Shopify order folds several line-item rows into one
    record), so the pipeline can reconcile "rows read" with "records produced". `skipped_blank`
    counts blank rows that were not records at all (they carry no row number).
    """

    source: str
    path: str
    frame: pd.DataFrame
    columns: dict[str, str]
    lines: int
    skipped_blank: int = 0
