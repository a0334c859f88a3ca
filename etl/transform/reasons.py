"""Collects why rows are rejected, rule by rule, without a per-row loop.

Each rule contributes one boolean mask and one reason; a row's reasons are only gathered into a list
for the rows that were rejected (the rare case), so the common path stays vectorised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class RejectReasons:
    def __init__(self, n_rows: int) -> None:
        self._n = n_rows
        self._rules: list[tuple[np.ndarray, dict[str, str]]] = []

    def add(self, mask: pd.Series | np.ndarray, field_path: str, description: str, code: str) -> None:
        """Reject the rows in `mask` with a reason in the debug endpoint's shape (never a cell value)."""
        arr = np.asarray(mask, dtype=bool)
        if arr.any():
            self._rules.append((arr, {"fieldPath": field_path, "description": description, "validationCode": code}))

    @property
    def rejected(self) -> np.ndarray:
        out = np.zeros(self._n, dtype=bool)
        for mask, _ in self._rules:
            out |= mask
        return out

    def count_by_code(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for mask, reason in self._rules:
            counts[reason["validationCode"]] = counts.get(reason["validationCode"], 0) + int(mask.sum())
        return counts

    def to_frame(self, source: str, rows: pd.Series) -> pd.DataFrame:
        """One row per rejected input row: `source`, `row`, `reasons` (list, in rule order)."""
        if not self._rules:
            return pd.DataFrame({"source": pd.Series(dtype=object), "row": pd.Series(dtype="int64"), "reasons": []})
        row_values = rows.to_numpy()
        parts = []
        for order, (mask, reason) in enumerate(self._rules):
            idx = np.flatnonzero(mask)
            parts.append(pd.DataFrame({"pos": idx, "order": order, "reason": [reason] * len(idx)}))
        long = pd.concat(parts, ignore_index=True).sort_values(["pos", "order"], kind="stable")
        grouped = long.groupby("pos", sort=True)["reason"].agg(list)
        return pd.DataFrame(
            {"source": source, "row": row_values[grouped.index.to_numpy()].astype("int64"), "reasons": grouped.to_numpy()}
        )
