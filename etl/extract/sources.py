"""Dispatch: open a source, resolve its columns once, and stream canonical chunks."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from etl.config import SourceConfig
from etl.errors import SourceError
from etl.extract.canonical import TEXT, assemble
from etl.extract.chunk import SourceChunk
from etl.extract.csv_stream import iter_csv_raw
from etl.extract.fields import FieldSpec, ResolvedColumns, header_key, resolve
from etl.extract.identity import check_map, fill_client_ids, load_identity_map, source_key_spec
from etl.extract.kinds import Built, Kind, registry
from etl.extract.kinds.generic import IDENTITY_KEY
from etl.extract.location import file_name, is_url
from etl.extract.parquet_stream import iter_parquet_raw, parquet_header
from etl.extract.raw import RawChunk
from etl.extract.text_file import inspect


@dataclass
class OpenSource:
    header: list[str]
    cols: ResolvedColumns
    kind: Kind
    raw: Iterator[RawChunk]


def open_source(source: SourceConfig, *, since: datetime | None = None, until: datetime | None = None,
                page_rows: int = 100_000, future_after: datetime | None = None) -> OpenSource:
    """Read the header, resolve the mapping (failing early on a missing column) and start the raw stream.

    `since`/`until` reach only a source that can filter where it is stored (`bigquery`: a WHERE in
    its SQL); files are read whole and the transform applies the window. `page_rows` is the size of
    one page fetched from a warehouse.
    """
    kinds = registry()
    if source.kind not in kinds:
        raise SourceError(str(source.path), None, None, f"unknown source kind {source.kind!r}")
    kind = kinds[source.kind]()
    specs: list[FieldSpec] = kind.specs(source)
    if source.identity_map is not None:
        check_map(source.identity_map)
        spec = source_key_spec(source.identity_map)
        if source.kind == "square":
            spec = FieldSpec(spec.field, (*spec.headers, "Customer ID"), True)
        specs.append(spec)
    if source.kind == "square" and is_url(source.path) and "items_path" in source.options:
        raise SourceError(str(source.path), None, None, "options.items_path needs a local transactions file")
    if source.kind == "bigquery":
        from etl.extract.kinds.bigquery import BigQueryReader

        reader = BigQueryReader(source)
        cols = resolve(reader.label, reader.header, specs)
        return OpenSource(reader.header, cols, kind, reader.iter_raw(cols, since=since, until=until, page_rows=page_rows,
                                                                  future_after=future_after))
    if source.kind == "parquet":
        header = parquet_header(source.path)
        raw = iter_parquet_raw(source.path)
    else:
        layout = inspect(source.path, source.encoding, source.delimiter, source.max_field_bytes)
        header = layout.header
        raw = iter_csv_raw(layout)
        try:
            cols = resolve(str(source.path), header, specs)
        except SourceError as exc:  # a wrong guess of encoding or delimiter looks like a missing column
            raise SourceError(exc.path, exc.row, exc.column, f"{exc.message}; {missing_columns_hint(header, specs)}"
                              f"read as {layout.encoding}, delimiter {layout.delimiter!r} "
                              f"(set the source's encoding/delimiter if wrong)") from None
        return OpenSource(header, cols, kind, raw)
    cols = resolve(str(source.path), header, specs)
    return OpenSource(header, cols, kind, raw)


def missing_columns_hint(header: list[str], specs: list[FieldSpec]) -> str:
    """Every required field the header lacks, with a did-you-mean, and the headers the file has.

    One message for all of them: a first-time user fixes the mapping in one go, not one run per column.
    Headers are the file's column names (never cell values).
    """
    present = {header_key(h) for h in header}
    parts = []
    for spec in specs:
        if spec.required and not any(header_key(h) in present for h in spec.headers):
            close = difflib.get_close_matches(spec.headers[0].casefold(), [h.casefold() for h in header], n=1, cutoff=0.5)
            guess = next((h for h in header if close and h.casefold() == close[0]), None)
            parts.append(f"{spec.field} (expected {spec.headers[0]!r}" + (f", did you mean {guess!r}?)" if guess else ")"))
    shown = ", ".join(repr(h) for h in header[:20]) + (", …" if len(header) > 20 else "")
    return f"missing: {', '.join(parts)}; map them in [sources.columns]; the file's headers: {shown}; "


def iter_chunks(source: SourceConfig, chunk_rows: int, since: datetime | None = None,
                until: datetime | None = None, future_after: datetime | None = None) -> Iterator[SourceChunk]:
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    opened = open_source(source, since=since, until=until, page_rows=chunk_rows, future_after=future_after)
    identity = load_identity_map(source.identity_map) if source.identity_map is not None else None
    for built in opened.kind.build(source, opened.raw, opened.cols, chunk_rows):
        yield finish(source, built, identity, opened.cols)


def finish(source: SourceConfig, built: Built, identity: pd.Series | None, cols: ResolvedColumns) -> SourceChunk:
    """What every kind shares: identity map, a default currency, then the fixed column order."""
    fields, names = dict(built.fields), dict(built.names)
    if identity is not None and IDENTITY_KEY in built.extra:
        fields["client_id"] = fill_client_ids(fields.get("client_id"), built.extra[IDENTITY_KEY], identity)
        via = f"{cols.headers[IDENTITY_KEY]} via identity map {file_name(source.identity_map.path)}"
        names["client_id"] = f"{names['client_id']} (else {via})" if "client_id" in names else via
    currency = source.options.get("currency")
    if currency:
        default = pd.Series(str(currency), index=range(len(built.rows)), dtype=TEXT)
        fields["currency"] = fields["currency"].fillna(default) if "currency" in fields else default
        names.setdefault("currency", "(config options.currency)")
    frame = assemble(built.rows, fields)
    return SourceChunk(
        source=source.name,
        path=str(source.path),
        frame=frame,
        columns={k: v for k, v in names.items() if k in frame.columns},
        lines=built.lines,
        skipped_blank=built.skipped_blank,
    )
