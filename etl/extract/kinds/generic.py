"""`csv` and `parquet`: no vendor knowledge, the mapping comes entirely from the config."""

from __future__ import annotations

from collections.abc import Iterator

from etl.config import SourceConfig
from etl.extract.canonical import field_text, mapped_fields
from etl.extract.fields import FieldSpec, ResolvedColumns, specs_for
from etl.extract.kinds import Built
from etl.extract.raw import RawChunk, rechunk

IDENTITY_KEY = "identity_key"


class Generic:
    def specs(self, source: SourceConfig) -> list[FieldSpec]:
        return specs_for(source, [])

    def build(self, source: SourceConfig, raw: Iterator[RawChunk], cols: ResolvedColumns, chunk_rows: int) -> Iterator[Built]:
        for chunk in rechunk(raw, chunk_rows):
            fields, names = mapped_fields(chunk, cols, source)
            yield Built(chunk.rows, fields, names, len(chunk), chunk.skipped_blank, identity_extra(chunk, cols))


def identity_extra(chunk: RawChunk, cols: ResolvedColumns) -> dict:
    return {IDENTITY_KEY: field_text(chunk, cols, IDENTITY_KEY)} if cols.has(IDENTITY_KEY) else {}
