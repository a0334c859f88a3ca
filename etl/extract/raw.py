"""Raw records: the file's rows as text, numbered, before any field mapping.

A `RawChunk` keeps the columns by header *position* (`c0`, `c1`, …) so duplicate or oddly spelled
headers cannot collide; `fields.resolve` maps positions to canonical fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: A raw column (beside c0..cN) naming the cell the reader refused in a record, "" when none.
CELL_PROBLEM = "cell_problem"


@dataclass
class RawChunk:
    frame: pd.DataFrame  # columns c0..cN, str dtype, "" for empty cells (and CELL_PROBLEM, when a cell was refused)
    rows: np.ndarray  # int64, 1-based record numbers
    skipped_blank: int = 0

    def __len__(self) -> int:
        return len(self.frame)

    def column(self, pos: int) -> pd.Series:
        return self.frame[position_name(pos)]


def position_name(pos: int) -> str:
    return f"c{pos}"


def rechunk(chunks: Iterator[RawChunk], chunk_rows: int) -> Iterator[RawChunk]:
    """Re-slice a stream of arbitrarily sized raw chunks into chunks of exactly `chunk_rows` (last: fewer)."""
    pending: list[RawChunk] = []
    size = 0
    blanks = 0
    template = pd.DataFrame()  # an empty frame with the file's columns, for a blank-only tail
    for chunk in chunks:
        blanks += chunk.skipped_blank
        template = chunk.frame.iloc[:0]
        if len(chunk) == 0:
            continue
        pending.append(chunk)
        size += len(chunk)
        while size >= chunk_rows:
            merged = _concat(pending)
            head = RawChunk(merged.frame.iloc[:chunk_rows].reset_index(drop=True), merged.rows[:chunk_rows], blanks)
            rest = RawChunk(merged.frame.iloc[chunk_rows:].reset_index(drop=True), merged.rows[chunk_rows:])
            blanks = 0
            yield head
            pending = [rest] if len(rest) else []
            size = len(rest)
    if pending or blanks:
        merged = _concat(pending) if pending else None
        if merged is None:
            yield RawChunk(template, np.empty(0, dtype=np.int64), blanks)
        else:
            yield RawChunk(merged.frame, merged.rows, blanks)


def _concat(chunks: list[RawChunk]) -> RawChunk:
    if len(chunks) == 1:
        return chunks[0]
    frame = pd.concat([c.frame for c in chunks], ignore_index=True)
    return RawChunk(frame, np.concatenate([c.rows for c in chunks]))
