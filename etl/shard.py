"""Shards: split one night's events across N workers by a stable hash of the client id.

Why the client id: MP requests carry one identity (client_id, user_id, consent), so all events of a
client must go through the same worker to stay packed into the same requests, and so that one
client's events are never sent by two machines at once. Why blake2b and not `hash()`: Python salts
`hash()` per process, and every worker (on any machine, any Python) must agree on who owns a row.

The hash is the first 8 bytes of blake2b(client_id, UTF-8), read big-endian as an unsigned 64-bit
integer; shard K of N (K = 1..N) owns the client ids whose hash ≡ K − 1 (mod N). A row without a
usable client id is owned by shard 1, so exactly one shard reports its rejection.

A sharded run reads every row (each worker reads the whole input), keeps its own, and counts the
others in the `other_shard` bucket, so each shard's summary still balances:
`rows_in = sent + rejected + duplicate + deferred + expired + rejected_at_send + failed + other_shard`. `aggregate` folds the N
shard summaries of one night into one run-level summary and checks that every row was owned by
exactly one shard.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
MAX_SHARDS = 1024
BUCKETS = ("sent", "rejected", "duplicate", "deferred", "expired", "rejected_at_send", "failed")


def client_hash(client_id: str) -> int:
    """The stable 64-bit hash of one client id (the same on every machine and Python version)."""
    return int.from_bytes(hashlib.blake2b(client_id.encode("utf-8"), digest_size=8).digest(), "big")


def client_hashes(client_ids: pd.Series) -> np.ndarray:
    """`client_hash` of each value as uint64 (0 where NA); each distinct id is hashed once."""
    codes, uniques = pd.factorize(client_ids, use_na_sentinel=True)
    table = np.fromiter((client_hash(str(u)) for u in uniques), dtype=np.uint64, count=len(uniques))
    out = np.zeros(len(codes), dtype=np.uint64)
    present = codes >= 0
    out[present] = table[codes[present]]
    return out


def client_shard(client_id: str, count: int) -> int:
    """The shard number (1..count) that owns one client (the ledgers' SQL functions call this)."""
    return client_hash(client_id) % count + 1


def shard_numbers(client_ids: pd.Series, count: int) -> np.ndarray:
    """`client_shard` of each row, vectorised; rows without a client id belong to shard 1."""
    shards = (client_hashes(client_ids) % np.uint64(count)).astype(np.int64) + 1
    shards[pd.isna(client_ids).to_numpy(dtype=bool)] = 1
    return shards


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based, as typed on the command line: `--shard 2/4`)."""

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be 1..{MAX_SHARDS}, got {self.count}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard number must be 1..{self.count}, got {self.index}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'K/N' → Shard(K, N); ValueError with a one-line reason otherwise."""
        match = _SPEC.fullmatch(text or "")
        if not match:
            shown = text if len(text or "") <= 30 else text[:27] + "…"
            raise ValueError(f"expected K/N such as 2/4, got {shown!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def whole(self) -> bool:
        """True for 1/1: the unsharded run (no filtering at all)."""
        return self.count == 1

    def owns(self, client_ids: pd.Series) -> np.ndarray:
        """Boolean mask of the rows this shard owns."""
        if self.whole:
            return np.ones(len(client_ids), dtype=bool)
        return shard_numbers(client_ids, self.count) == self.index

    def owns_hash(self, hashes: np.ndarray) -> np.ndarray:
        """The same test on stored `client_hash` values (what a ledger keeps per event)."""
        if self.whole:
            return np.ones(len(hashes), dtype=bool)
        return (np.asarray(hashes, dtype=np.uint64) % np.uint64(self.count)).astype(np.int64) + 1 == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Shard()


class AggregateError(ValueError):
    """The shard summaries given do not make one complete night (missing, repeated or unbalanced)."""


def aggregate(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One run-level summary from the N shard summaries of one night (each shard's summary.json).

    Checks, refusing (AggregateError) otherwise: every shard 1..N is present exactly once, each
    summary balances on its own, every shard read the same rows, and the rows the shards owned add up
    to rows_in (no row owned twice or by nobody). Buckets are summed; the exit code is the worst one.
    """
    items = list(summaries)
    if not items:
        raise AggregateError("no shard summaries given")
    specs = [Shard.parse(str(s.get("shard") or "1/1")) for s in items]
    counts = {spec.count for spec in specs}
    if len(counts) != 1:
        raise AggregateError(f"summaries come from different shard counts: {sorted(counts)}")
    count = counts.pop()
    seen = sorted(spec.index for spec in specs)
    missing = sorted(set(range(1, count + 1)) - set(seen))
    repeated = sorted({i for i in seen if seen.count(i) > 1})
    if missing or repeated:
        raise AggregateError(f"shards missing {missing or '-'}, repeated {repeated or '-'} (of {count})")
    rows_in = {int(s["rows_in"]) for s in items}
    if len(rows_in) != 1:
        raise AggregateError(f"shards read different inputs: rows_in {sorted(rows_in)}")
    total_in = rows_in.pop()
    for spec, s in zip(specs, items, strict=True):
        parts = sum(int(s.get(k, 0)) for k in BUCKETS) + int(s.get("other_shard", 0))
        if parts != int(s["rows_in"]):
            raise AggregateError(f"shard {spec} does not balance: rows_in {s['rows_in']} != {parts}")
    totals = {k: sum(int(s.get(k, 0)) for s in items) for k in BUCKETS}
    owned = total_in * count - sum(int(s.get("other_shard", 0)) for s in items)
    if owned != total_in:
        raise AggregateError(f"the shards owned {owned} rows between them, the input has {total_in}")
    order = sorted(range(len(items)), key=lambda i: specs[i].index)
    summed = ("possible_duplicates", "sent_for_earlier_runs", "recovered_in_flight", "no_session", "outside_window")
    return {
        "shards": count,
        "rows_in": total_in,
        **totals,
        "balanced": total_in == sum(totals.values()),
        **{k: sum(int(s.get(k, 0)) for s in items) for k in summed},
        "run_ids": [items[i].get("run_id") for i in order],
        "per_shard": [{"shard": str(specs[i]), "run_id": items[i].get("run_id"),
                       **{k: items[i].get(k, 0) for k in (*BUCKETS, "rows_in")}, "other_shard": items[i].get("other_shard", 0),
                       "exit_code": items[i].get("exit_code", 0)} for i in order],
        "exit_code": max(int(s.get("exit_code", 0)) for s in items),
    }
