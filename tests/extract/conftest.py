"""Helpers for the extract tests: small source configs and reading a whole source into one frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etl.config import SourceConfig
from etl.extract import SourceChunk, iter_source_chunks

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def source(path: Path, kind: str = "csv", **kw) -> SourceConfig:
    return SourceConfig(name=kw.pop("name", "test"), kind=kind, path=path, **kw)


def read_all(src: SourceConfig, chunk_rows: int = 100_000) -> tuple[pd.DataFrame, list[SourceChunk]]:
    chunks = list(iter_source_chunks(src, chunk_rows=chunk_rows))
    frames = [c.frame for c in chunks if len(c.frame)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame, chunks


@pytest.fixture
def write(tmp_path: Path):
    def _write(name: str, data: bytes | str, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
        return path

    return _write
