"""Parquet sources: record batches cast to text (`arrow_text`), so every kind sees the same raw shape as CSV."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from etl.errors import SourceError
from etl.extract.arrow_text import column_text
from etl.extract.location import Location, check_file, is_url, open_bytes
from etl.extract.raw import RawChunk, position_name

BATCH_ROWS = 65_536


def open_parquet(path: Location) -> pq.ParquetFile:
    """The Parquet file (a URL is opened through fsspec: Parquet needs a seekable file, which it gives)."""
    check_file(path)
    try:
        return pq.ParquetFile(open_bytes(path) if is_url(path) else path)
    except (pa.ArrowInvalid, OSError):
        raise SourceError(str(path), None, None, "is not a readable Parquet file") from None


def parquet_header(path: Location) -> list[str]:
    pf = open_parquet(path)
    try:
        return list(pf.schema_arrow.names)
    finally:
        pf.close(force=True)


def iter_parquet_raw(path: Location) -> Iterator[RawChunk]:
    """Yield numbered raw records; nulls become "" like an empty CSV cell."""
    pf = open_parquet(path)
    try:
        yield from _batches(path, pf)
    finally:
        pf.close(force=True)  # force: also an fsspec file handed to ParquetFile


def _batches(path: Location, pf: pq.ParquetFile) -> Iterator[RawChunk]:
    next_row = 1
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            columns = {}
            for pos, array in enumerate(batch.columns):
                columns[position_name(pos)] = column_text(array)
            frame = pa.table(columns).to_pandas() if columns else None
            n = batch.num_rows
            rows = np.arange(next_row, next_row + n, dtype=np.int64)
            next_row += n
            yield RawChunk(frame, rows)
    except (pa.ArrowInvalid, OSError):
        raise SourceError(str(path), next_row, None, "unreadable Parquet data from this row on") from None

