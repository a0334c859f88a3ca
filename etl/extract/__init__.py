"""Extract: read source exports as they come from the vendor and hand canonical text to the transform.

Public surface (docs/ARCHITECTURE.md, "extract → transform"):

- `SourceChunk` — one batch of canonical records, with `row` numbers into the file;
- `iter_source_chunks(source, *, chunk_rows=100_000, since=None, until=None)` — stream a source with
  bounded memory (a file, a URL on an object store, or a BigQuery table or query);
- `preview_source(source, n=5)` — the header found, the mapping used and the first records.

The extract never judges a cell (the transform rejects bad rows, with reasons); it raises
`etl.errors.SourceError` only for what makes a whole file unreadable, naming file, row and column
and never a value.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import Any

import pandas as pd

from etl.config import SourceConfig
from etl.extract.chunk import SourceChunk
from etl.extract.sources import finish, iter_chunks, open_source

__all__ = ["SourceChunk", "iter_source_chunks", "preview_source"]


def iter_source_chunks(
    source: SourceConfig,
    *,
    chunk_rows: int = 100_000,
    since: datetime | None = None,
    until: datetime | None = None,
    future_after: datetime | None = None,
) -> Iterator[SourceChunk]:
    """Yield the source's records in chunks of at most `chunk_rows` records (a Shopify chunk is cut
    between orders, so it may hold slightly more source lines).

    The incremental window (`--since/--until`) is applied by the transform, which knows the zone
    rules that turn a vendor's local time into an instant, and counts what it leaves out
    (`outside_window`). A file is read whole. A `bigquery` source also pushes the window into its
    SQL, so rows surely outside it are never read (nor counted anywhere): only rows it reads reach
    `rows_in` and `outside_window` (`etl.extract.bigquery_sql` says which bounds are exact). Rows
    later than `future_after` (the wall clock plus the clock-skew tolerance) are read whatever
    `until` says: the transform rejects them, so a row dated in the future is never skipped unseen.

    A `SourceError` can surface after some chunks were yielded (a broken row deep in the file): the
    caller must treat the source as failed as a whole.
    """
    yield from iter_chunks(source, chunk_rows, since, until, future_after)


def preview_source(source: SourceConfig, n: int = 5) -> dict[str, Any]:
    """What `mpetl sources` prints: columns found in the file, the mapping used, the first `n` records.

    The head is the raw canonical text (it may hold personal data an export carries); the CLI is
    expected to scrub it the way the transform does before printing.
    """
    opened = open_source(source, page_rows=max(n, 1))
    head = pd.DataFrame()
    columns: dict[str, str] = {}
    identity = None
    if source.identity_map is not None:
        from etl.extract.identity import load_identity_map

        identity = load_identity_map(source.identity_map)
    for built in islice(opened.kind.build(source, opened.raw, opened.cols, max(n, 1)), 1):
        chunk = finish(source, built, identity, opened.cols)
        head, columns = chunk.frame.head(n).reset_index(drop=True), chunk.columns
    return {
        "source": source.name,
        "kind": source.kind,
        "path": str(source.path),
        "columns_found": list(opened.header),
        "mapping": columns or dict(opened.cols.headers),
        "head": head,
    }
