"""Parquet sources: record batches cast to text, so every kind sees the same raw shape as CSV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.errors import SourceError
from etl.extract.raw import RawChunk, position_name
from etl.extract.text_file import check_exists

if TYPE_CHECKING:
    import pyarrow.parquet as pq

BATCH_ROWS = 65_536


def open_parquet(path: Path) -> pq.ParquetFile:
    import pyarrow.parquet as pq  # only Parquet sources pay for it (≈ 35 ms of every run's start-up)

    check_exists(path)
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError):
        raise SourceError(str(path), None, None, "is not a readable Parquet file") from None


def parquet_header(path: Path) -> list[str]:
    return list(open_parquet(path).schema_arrow.names)


def iter_parquet_raw(path: Path) -> Iterator[RawChunk]:
    """Yield numbered raw records; nulls become "" like an empty CSV cell."""
    pf = open_parquet(path)
    next_row = 1
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            columns = {}
            for pos, array in enumerate(batch.columns):
                text = array if pa.types.is_string(array.type) else _as_text(array)
                columns[position_name(pos)] = pc.fill_null(text.cast(pa.string()), "")
            frame = pa.table(columns).to_pandas() if columns else None
            n = batch.num_rows
            rows = np.arange(next_row, next_row + n, dtype=np.int64)
            next_row += n
            yield RawChunk(frame, rows)
    except (pa.ArrowInvalid, OSError):
        raise SourceError(str(path), next_row, None, "unreadable Parquet data from this row on") from None


def _as_text(array: pa.Array) -> pa.Array:
    """Timestamps as ISO text (with the offset when the column has a zone); other scalars via Arrow's cast."""
    if pa.types.is_timestamp(array.type):
        fmt = "%Y-%m-%dT%H:%M:%S%z" if array.type.tz else "%Y-%m-%d %H:%M:%S"
        return pc.strftime(array, format=fmt)
    if pa.types.is_dictionary(array.type):
        return array.cast(pa.string())
    return array.cast(pa.string())
