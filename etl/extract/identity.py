"""Identity maps: where a source has no cookie (in-store sales), a reference → client id table.

Why strict: an id must never be invented or guessed. A key that maps to two different client ids
is ambiguous and fills nothing; a record left without identity keeps `client_id` NA so the
transform rejects it with a reason.
"""

from __future__ import annotations

import pandas as pd

from etl.config import IdentityMapConfig
from etl.errors import SourceError
from etl.extract.canonical import TEXT, as_text
from etl.extract.csv_stream import iter_csv_raw
from etl.extract.fields import FieldSpec, resolve
from etl.extract.location import check_file
from etl.extract.text_file import inspect


def load_identity_map(config: IdentityMapConfig) -> pd.Series:
    """Key → client id (text), unambiguous keys only."""
    layout = inspect(config.path, None, None)
    cols = resolve(str(config.path), layout.header, [FieldSpec("key", (config.key,), True), FieldSpec("client_id", (config.client_id,), True)])
    parts = []
    for raw in iter_csv_raw(layout):
        if len(raw):
            parts.append(pd.DataFrame({
                "key": as_text(raw.column(cols.positions["key"])),
                "client_id": as_text(raw.column(cols.positions["client_id"])),
            }))
    if not parts:
        return pd.Series(dtype=TEXT)
    table = pd.concat(parts, ignore_index=True).dropna().drop_duplicates()
    unique = table[~table["key"].duplicated(keep=False)]
    return pd.Series(unique["client_id"].to_numpy(), index=unique["key"].to_numpy(), dtype=TEXT)


def source_key_spec(config: IdentityMapConfig) -> FieldSpec:
    """The source column joined to the map: `source_key`, else the map's own key name."""
    return FieldSpec("identity_key", (config.source_key or config.key,), True)


def fill_client_ids(client_id: pd.Series | None, keys: pd.Series, mapping: pd.Series) -> pd.Series:
    """Fill missing client ids from the map; a record's own cookie always wins."""
    found = keys.map(mapping).astype(TEXT)
    if client_id is None:
        return found
    return client_id.fillna(found)


def check_map(config: IdentityMapConfig) -> None:
    try:
        check_file(config.path)
    except SourceError as exc:
        raise SourceError(str(config.path), None, None, f"identity map {exc.message}") from None
