"""Collects why rows are not sent, rule by rule, without a per-row loop: rejected or filtered.

Each rule contributes one boolean mask and one reason; a row's reasons are only gathered into a list
for the rows that were rejected (the rare case), so the common path stays vectorised.

Two kinds: `add` rejects (bad data, to fix: it goes to rejects.ndjson with every reason), `filter`
leaves out a row that is fine but not a conversion to send (a stage that is not won, a
`[sources.filter]` value, a denied consent). A filtered row is counted once, under its first filter
reason, and is never a reject, whatever else is wrong with it: it would not be sent anyway.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd

from etl.accounting import Buckets


class RejectReasons:
    def __init__(self, n_rows: int) -> None:
        self._n = n_rows
        self._rules: list[tuple[np.ndarray, dict[str, str]]] = []
        self._filters: list[tuple[np.ndarray, dict[str, str]]] = []

    def add(self, mask: pd.Series | np.ndarray, field_path: str, description: str, code: str) -> None:
        """Reject the rows in `mask` with a reason in the debug endpoint's shape (never a cell value)."""
        self._append(self._rules, mask, field_path, description, code)

    def filter(self, mask: pd.Series | np.ndarray, field_path: str, description: str, code: str) -> None:
        """Leave the rows in `mask` out as not conversions (filtered, not rejected)."""
        self._append(self._filters, mask, field_path, description, code)

    @staticmethod
    def _append(rules: list, mask: pd.Series | np.ndarray, field_path: str, description: str, code: str) -> None:
        arr = np.asarray(mask, dtype=bool)
        if arr.any():
            rules.append((arr, {"fieldPath": field_path, "description": description, "validationCode": code}))

    @staticmethod
    def _any(rules: list, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        for mask, _ in rules:
            out |= mask
        return out

    @property
    def filtered(self) -> np.ndarray:
        return self._any(self._filters, self._n)

    @property
    def rejected(self) -> np.ndarray:
        return self._any(self._rules, self._n) & ~self.filtered

    @property
    def not_sent(self) -> np.ndarray:
        """Rejected or filtered: the send mask is its complement."""
        return self._any(self._rules, self._n) | self.filtered

    def counted(self, buckets: Buckets) -> Buckets:
        """`buckets` with this chunk's filtered and rejected rows."""
        return replace(buckets, filtered=int(self.filtered.sum()), rejected=int(self.rejected.sum()))

    def count_by_code(self) -> dict[str, int]:
        """Reject reasons by code over the rejected rows (a row with two reasons counts under both)."""
        counts: dict[str, int] = {}
        for (code, _), rows in self.count_by_reason().items():
            counts[code] = counts.get(code, 0) + rows
        return counts

    def count_by_reason(self) -> Counter[tuple[str, str]]:
        """Reject reasons by (code, description) over the rejected rows (a row with two reasons counts under
        both): what the summary's `reject_reasons` and the reports' "top reject reasons" list."""
        filtered = self.filtered if self._filters else None
        counts: Counter[tuple[str, str]] = Counter()
        for mask, reason in self._rules:
            rows = int(mask.sum()) if filtered is None else int((mask & ~filtered).sum())
            if rows:
                counts[(reason["validationCode"], reason["description"])] += rows
        return counts

    def filtered_by_reason(self) -> Counter[tuple[str, str]]:
        """Filtered rows by (code, description) of their first filter reason: sums to the filtered rows."""
        counts: Counter[tuple[str, str]] = Counter()
        taken = np.zeros(self._n, dtype=bool)
        for mask, reason in self._filters:
            first = mask & ~taken
            taken |= mask
            if first.any():
                counts[(reason["validationCode"], reason["description"])] += int(first.sum())
        return counts

    def filtered_frame(self, source: str, rows: pd.Series) -> pd.DataFrame:
        """One row per filtered input row: `source`, `row`, `code`, `reason` (its first filter reason)."""
        if not self._filters:
            return pd.DataFrame({"source": pd.Series(dtype=object), "row": pd.Series(dtype="int64"),
                                 "code": pd.Series(dtype=object), "reason": pd.Series(dtype=object)})
        codes = np.full(self._n, None, dtype=object)
        descriptions = np.full(self._n, None, dtype=object)
        for mask, reason in reversed(self._filters):  # the first reason is written last, and wins
            codes[mask], descriptions[mask] = reason["validationCode"], reason["description"]
        idx = np.flatnonzero(self.filtered)
        return pd.DataFrame({"source": pd.Series([source] * len(idx), dtype=object),
                             "row": rows.to_numpy()[idx].astype("int64"), "code": codes[idx], "reason": descriptions[idx]})

    def to_frame(self, source: str, rows: pd.Series) -> pd.DataFrame:
        """One row per rejected input row: `source`, `row`, `reasons` (list, in rule order); filtered
        rows are not rejects and are not in it."""
        filtered = self.filtered if self._filters else None
        parts = []
        for order, (mask, reason) in enumerate(self._rules):
            idx = np.flatnonzero(mask if filtered is None else mask & ~filtered)
            if len(idx):
                parts.append(pd.DataFrame({"pos": idx, "order": order, "reason": [reason] * len(idx)}))
        if not parts:
            return pd.DataFrame({"source": pd.Series(dtype=object), "row": pd.Series(dtype="int64"), "reasons": []})
        row_values = rows.to_numpy()
        long = pd.concat(parts, ignore_index=True).sort_values(["pos", "order"], kind="stable")
        grouped = long.groupby("pos", sort=True)["reason"].agg(list)
        return pd.DataFrame(
            {"source": source, "row": row_values[grouped.index.to_numpy()].astype("int64"), "reasons": grouped.to_numpy()}
        )
