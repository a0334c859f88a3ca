"""Streaming CSV reader: pyarrow on the hot path, a precise diagnosis when it fails.

Why two readers: pyarrow's streaming parser is several times faster than pandas and keeps memory
bounded by its block size, but its errors neither give the record number nor stay clear of cell
text. So the hot path never reports on its own: any failure re-reads the file with the stdlib
`csv` module (strict quoting, bytes kept with surrogateescape) to name the exact record and
column, without the value.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from etl.errors import SourceError
from etl.extract.capped_cells import MARKER, CappedCells
from etl.extract.csv_diagnose import find_problem
from etl.extract.location import is_url, open_bytes
from etl.extract.raw import CELL_PROBLEM, RawChunk, position_name
from etl.extract.text_file import TextLayout, open_binary

# pyarrow's streaming reader reads up to 32 blocks ahead in the background (Arrow's background generator
# queue), so the block size sets the reader's memory: at 4 MiB a 1M-row file held ~140 MB more than at
# 1 MiB before its first chunk was planned (dry run peak 588 → ~450 MB), for no speed (extract of 1M rows
# 5.3 s either way; 0.5 MiB is 15 % slower). An encoding the capped re-read cannot take (UTF-16) keeps
# 4 MiB blocks: there a record over the block is an error, not a re-read.
BLOCK_BYTES = 1 << 20
WIDE_BLOCK_BYTES = 4 << 20
_MARKER_TEXT = MARKER.decode()


class _Straddle(Exception):
    """pyarrow met a record larger than its read block: read again with over-cap cells replaced."""


class _BlankLines:
    """Counts whitespace-only lines pyarrow hands to the invalid-row handler; anything else is an error."""

    def __init__(self) -> None:
        self.count = 0
        self.invalid = False

    def __call__(self, row: pacsv.InvalidRow) -> str:
        try:
            text = row.text  # pyarrow decodes it as UTF-8, which fails on undecodable bytes
        except UnicodeDecodeError:
            self.invalid = True
            return "error"
        if text.strip() == "":
            self.count += 1
            return "skip"
        self.invalid = True
        return "error"


def iter_csv_raw(layout: TextLayout) -> Iterator[RawChunk]:
    """Yield numbered raw records (header and blank records removed) in pyarrow-block-sized chunks.

    A cell over `layout.max_field_bytes` is blanked and its record carries a `cell_problem` naming the
    column. A record too big for pyarrow's block (a 9 MB cell) makes the file be read again past the
    records already yielded, through `CappedCells`, which replaces such cells as they stream by.
    """
    width = len(layout.header)
    names = [position_name(i) for i in range(width)]
    emitted = 0
    for capped in (False, True):
        blanks = _BlankLines()
        # A URL is read through its fsspec file object; a local file through pyarrow's native reader.
        if capped:
            if not _ascii_compatible(layout.encoding):
                raise SourceError(str(layout.path), emitted + 1, None,
                                  f"a record is larger than {_block_bytes(layout, False) >> 20} MiB (cells over "
                                  "max_field_bytes can be "
                                  f"skipped only in ASCII-compatible encodings, not {layout.encoding})")
            handle = CappedCells(open_binary(layout.path, layout.compressed), layout.max_field_bytes, layout.delimiter)
        else:
            handle = open_bytes(layout.path) if is_url(layout.path) else None
        try:
            for chunk in _read(layout, names, blanks, handle, capped=capped, resume_after=emitted):
                if len(chunk):
                    emitted = int(chunk.rows[-1])
                yield chunk
            return
        except _Straddle:
            if capped:
                raise SourceError(str(layout.path), emitted + 1, None,
                                  f"a record is larger than {_block_bytes(layout, True) >> 20} MiB even with every "
                                  "cell over max_field_bytes left out") from None
        finally:
            if handle is not None:
                handle.close()


def _ascii_compatible(encoding: str) -> bool:
    return ',"\n\r'.encode(encoding, errors="replace") == b',"\n\r'


def _block_bytes(layout: TextLayout, capped: bool) -> int:
    """Capped, a record holds cells of at most max_field_bytes: room for a few of them."""
    if capped:
        return max(WIDE_BLOCK_BYTES, 4 * layout.max_field_bytes + (1 << 20))
    return BLOCK_BYTES if _ascii_compatible(layout.encoding) else WIDE_BLOCK_BYTES


def _read(layout: TextLayout, names: list[str], blanks: _BlankLines, handle, *, capped: bool,
          resume_after: int) -> Iterator[RawChunk]:
    try:
        stream = (pa.input_stream(handle) if capped else
                  pa.input_stream(handle if handle is not None else str(layout.path),
                                  compression="gzip" if layout.compressed else None))
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                block_size=_block_bytes(layout, capped),
                column_names=names,
                # Always a Python codec (pyarrow's native "utf8" is skipped on purpose): undecodable
                # bytes then fail in the decoder, before the invalid-row handler would see them.
                encoding="utf-8-sig" if layout.encoding == "utf-8" else layout.encoding,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=layout.delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=blanks,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError, EOFError) as exc:
        if _straddles(exc):
            raise _Straddle from None
        raise _failure(layout, exc) from None

    held: RawChunk | None = None  # one chunk of lookahead: the file's last record is checked before it leaves
    for chunk in _numbered(reader, layout, blanks, resume_after):
        if held is not None:
            yield held
        held = chunk
    if held is not None:
        if len(held) and _has_newline(held.frame.iloc[-1]):
            problem = find_problem(layout)
            if problem is not None:
                raise problem
        yield held


def _straddles(exc: BaseException) -> bool:
    return isinstance(exc, pa.ArrowInvalid) and "straddl" in str(exc)


def _failure(layout: TextLayout, exc: BaseException) -> SourceError:
    """Why the fast reader stopped: the strict re-read names a structural problem; when it finds none
    and the reader failed on I/O (a store connection lost part-way), say so rather than "not CSV"."""
    problem = find_problem(layout)
    if problem is not None:
        return problem
    if isinstance(exc, OSError | EOFError) and not isinstance(exc, pa.ArrowInvalid):
        return SourceError(str(layout.path), None, None, f"cannot be read ({type(exc).__name__} part-way through)")
    return SourceError(str(layout.path), None, None, "could not be parsed as CSV")


def _has_newline(record: pd.Series) -> bool:
    """pyarrow reads an unclosed quote as one field running to the end of the file; such a field
    holds a line break, so a last record with one is checked by the strict reader."""
    return bool(record.drop(CELL_PROBLEM, errors="ignore").str.contains("\n|\r", regex=True).any())


def _numbered(reader: pacsv.CSVStreamingReader, layout: TextLayout, blanks: _BlankLines,
              resume_after: int = 0) -> Iterator[RawChunk]:
    """Numbered records; those up to `resume_after` (already yielded by an earlier pass) are dropped."""
    header_pending = True
    next_row = 1
    seen_blanks = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowInvalid, UnicodeDecodeError, OSError, EOFError) as exc:
            if _straddles(exc):
                raise _Straddle from None
            raise _failure(layout, exc) from None
        batch, problems = _cap_cells(batch, layout)
        frame = batch.to_pandas()
        if problems is not None:
            frame[CELL_PROBLEM] = problems
        blank = _blank_mask(frame)
        if header_pending:
            non_blank = np.flatnonzero(~blank)
            if len(non_blank) == 0:
                continue
            cut = int(non_blank[0]) + 1  # drop leading blank records and the header record itself
            frame = frame.iloc[cut:]
            blank = blank[cut:]
            header_pending = False
        kept = frame.loc[~blank].reset_index(drop=True)
        rows = np.arange(next_row, next_row + len(kept), dtype=np.int64)
        next_row += len(kept)
        skipped = int(blank.sum()) + blanks.count - seen_blanks
        seen_blanks = blanks.count
        if rows.size and rows[0] <= resume_after:
            keep = rows > resume_after
            kept, rows, skipped = kept.loc[keep].reset_index(drop=True), rows[keep], 0
        yield RawChunk(kept, rows, skipped)


def _cap_cells(batch: pa.RecordBatch, layout: TextLayout) -> tuple[pa.RecordBatch, np.ndarray | None]:
    """Blank every cell over max_field_bytes (or replaced by CappedCells); per record, which column held one.

    One length comparison per column: a normal file pays microseconds per block.
    """
    problems: np.ndarray | None = None
    columns = list(batch.columns)
    for pos, column in enumerate(columns):
        over = pc.greater(pc.binary_length(column), layout.max_field_bytes)
        if layout.max_field_bytes >= len(MARKER):
            over = pc.or_(over, pc.equal(column, _MARKER_TEXT))
        mask = over.to_numpy(zero_copy_only=False)
        if not mask.any():
            continue
        columns[pos] = pc.if_else(over, "", column)
        if problems is None:
            problems = np.full(batch.num_rows, "", dtype=object)
        header = layout.header[pos] if pos < len(layout.header) else f"#{pos + 1}"
        problems[mask & (problems == "")] = (f"column {header!r} holds a cell over max_field_bytes "
                                             f"({layout.max_field_bytes:,} bytes); the row was not read")
    if problems is None:
        return batch, None
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names), problems


def _blank_mask(frame: pd.DataFrame) -> np.ndarray:
    """Records whose every cell is empty or whitespace: Excel's trailing ",,,," rows are not records.

    Narrowed column by column so a normal file only pays for one pass over its first column.
    """
    mask = np.ones(len(frame), dtype=bool)
    for name in frame.columns:
        candidates = np.flatnonzero(mask)
        if len(candidates) == 0:
            break
        cells = frame[name].iloc[candidates]
        mask[candidates] = (cells.str.strip().str.len() == 0).to_numpy()
    return mask
