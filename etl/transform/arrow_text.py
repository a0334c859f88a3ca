"""The two conversions every vectorised transform function needs, in one place.

`astype("string")` (not "str") keeps NA as NA on pandas 2.x too, where "str" would turn None into
the text "None" and let it through as a value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def arrow_strings(values: pd.Series) -> pa.Array:
    """The values as one Arrow string array (nulls for NA), whatever the Series' dtype."""
    array = pa.array(values.astype("string"), type=pa.string(), from_pandas=True)
    # A column read in several blocks arrives chunked; callers index and dictionary-encode one array.
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def bool_numpy(mask: pa.Array) -> np.ndarray:
    """An Arrow boolean mask as numpy, null counted as False."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool, copy=True)
