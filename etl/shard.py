"""Shards: split one night's events across N workers by a stable hash of the client id.

Why the client id: MP requests carry one identity (client_id, user_id, consent), so all events of a
client must go through the same worker to stay packed into the same requests, and so that one
client's events are never sent by two machines at once. Why blake2b and not `hash()`: Python salts
`hash()` per process, and every worker (on any machine, any Python) must agree on who owns a row.

The hash is the first 8 bytes of blake2b(client_id, UTF-8), read big-endian as an unsigned 64-bit
integer; shard K of N (K = 1..N) owns the client ids whose hash ≡ K − 1 (mod N). A row without a
usable client id is owned by shard 1, so exactly one shard reports its rejection.

A sharded run reads every row (each worker reads the whole input), keeps its own, and counts the
others in the `other_shard` bucket, so each shard's summary still balances (`etl.accounting.Buckets`:
`rows_in = sent + filtered + rejected + … + outside_window + other_shard`). `aggregate` folds the N
shard summaries of one night into one run-level summary and checks that every row was owned by
exactly one shard.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from etl.accounting import AccountingError, Buckets, Money, money_from_summary, money_to_dict, sent_label

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
MAX_SHARDS = 1024


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
    """The shard summaries given do not make one complete night (missing, repeated, unbalanced or not
    summaries at all): the message names the summary and the key."""


def aggregate(summaries: Iterable[Mapping[str, Any]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """One run-level summary from the N shard summaries of one night (each shard's summary.json).

    `names` say where each summary came from (its file), for messages. Checks, refusing
    (AggregateError) otherwise: every summary holds the buckets as whole numbers, every shard 1..N is
    present exactly once, each summary balances on its own, every shard read the same rows (rows_in,
    and outside_window: the window is applied before the shard), and the rows the shards owned add up
    to the rows in the window (no row owned twice or by nobody). Buckets are summed; the exit code is
    the worst one.
    """
    items = list(summaries)
    if not items:
        raise AggregateError("no shard summaries given")
    where = list(names) if names is not None else [f"summary {i + 1}" for i in range(len(items))]
    try:
        read = [_read_shard(s, w) for s, w in zip(items, where, strict=True)]
    except AccountingError as exc:
        raise AggregateError(str(exc)) from None
    specs = [spec for spec, _, _ in read]
    counts = {spec.count for spec in specs}
    if len(counts) != 1:
        raise AggregateError(f"summaries come from different shard counts: {sorted(counts)}")
    count = counts.pop()
    seen = sorted(spec.index for spec in specs)
    missing = sorted(set(range(1, count + 1)) - set(seen))
    repeated = sorted({i for i in seen if seen.count(i) > 1})
    if missing or repeated:
        raise AggregateError(f"shards missing {missing or '-'}, repeated {repeated or '-'} (of {count})")
    for spec, b, _ in read:
        if not b.balanced():
            raise AggregateError(f"shard {spec} does not balance: {b.equation()}")
    for key in ("rows_in", "outside_window"):
        values = {getattr(b, key) for _, b, _ in read}
        if len(values) != 1:
            raise AggregateError(f"shards read different inputs: {key} {sorted(values)}")
    modes = {str(s.get("mode", "send")) for s in items}
    if len(modes) != 1:
        raise AggregateError(f"summaries come from different modes: {sorted(modes)} (a dry run sends nothing)")
    mode = modes.pop()
    first = read[0][1]
    total_in, outside = first.rows_in, first.outside_window
    owned = sum(b.rows_in - b.other_shard - b.outside_window for _, b, _ in read)
    if owned != total_in - outside:
        raise AggregateError(f"the shards owned {owned} rows between them, the window holds {total_in - outside}")
    night = Buckets(rows_in=total_in, outside_window=outside)
    for _, b, _ in read:
        night += replace(b, rows_in=0, outside_window=0, other_shard=0)
    order = sorted(range(len(items)), key=lambda i: specs[i].index)
    summed = {k: sum(extra[k] for _, _, extra in read) for k in _SUMMED}
    money = _night_money(items, where, specs)
    return {
        "shards": count,
        "mode": mode,
        **night.labelled(mode),
        "balanced": night.balanced(),
        "equation": night.equation(sent_label(mode)),
        **summed,
        "money": money_to_dict(money),
        "money_equations": [m.equation(code) for code, m in sorted(money.items())],
        "run_ids": [items[i].get("run_id") for i in order],
        "per_shard": [{"shard": str(specs[i]), "run_id": items[i].get("run_id"), **read[i][1].labelled(mode),
                       "exit_code": read[i][2]["exit_code"]} for i in order],
        "exit_code": max(extra["exit_code"] for _, _, extra in read),
    }


def _night_money(items: list[Mapping[str, Any]], where: list[str], specs: list[Shard]) -> dict[str, Money]:
    """The night's money per currency, folded like the rows: each shard's own buckets summed, its
    `other_shard` left out (another shard holds those rows), `outside_window` counted once (every
    shard reads the same window). Refuses a shard whose money does not balance, or shards whose
    windows held different money. Summaries written before money was tallied hold none."""
    try:
        read = [money_from_summary(item.get("money", {}), where=f"{w}: money") for item, w in zip(items, where, strict=True)]
    except AccountingError as exc:
        raise AggregateError(str(exc)) from None
    night: dict[str, Money] = {}
    outside: dict[str, set] = {}
    for spec, money in zip(specs, read, strict=True):
        for code, m in money.items():
            if not m.balanced():
                raise AggregateError(f"shard {spec} does not balance: {m.equation(code)}")
            outside.setdefault(code, set()).add(m.value_outside_window)
            own = replace(m, value_in=m.value_in - m.value_other_shard - m.value_outside_window,
                          value_other_shard=Decimal(0), value_outside_window=Decimal(0))
            night[code] = night[code] + own if code in night else own
    for code, values in outside.items():
        seen = values | ({Decimal(0)} if any(code not in money for money in read) else set())
        if len(seen) != 1:
            raise AggregateError(f"shards read different inputs: {code} value_outside_window {sorted(map(str, seen))}")
        window = seen.pop()
        night[code] = replace(night[code], value_in=night[code].value_in + window, value_outside_window=window)
    return night


#: Counts summed over the shards besides the buckets (each shard's own; absent in older summaries: 0).
_SUMMED = ("possible_duplicates", "sent_for_earlier_runs", "recovered_in_flight", "no_session")


def _read_shard(summary: Mapping[str, Any], where: str) -> tuple[Shard, Buckets, dict[str, int]]:
    """One shard summary, checked: its spec, its buckets, and the other counts the night sums."""
    buckets = Buckets.from_summary(summary, where=where)  # also refuses what is not a JSON object
    shard = summary.get("shard") or "1/1"
    if not isinstance(shard, str):
        raise AggregateError(f"{where}: key 'shard' must be text such as \"2/4\"")
    try:
        spec = Shard.parse(shard)
    except ValueError as exc:
        raise AggregateError(f"{where}: key 'shard': {exc}") from None
    extra = {}
    for key in (*_SUMMED, "exit_code"):
        value = summary.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise AggregateError(f"{where}: key {key!r} must be a whole number")
        extra[key] = value
    return spec, buckets, extra
