"""Shards for the ledger backends: scalar helpers over etl/shard.py (the one definition of ownership).

Why a hash of client_id: every request carries one client, so a client never crosses shards and the
requests stay one-identity; blake2b (not Python's salted `hash()`) gives the same shard on every
machine and every run. `etl/shard.py` documents the hash; this module only adapts it for SQL
functions (SQLite's `create_function`) and the `K/N` spelling with a config-style error.
"""

from __future__ import annotations

from etl.errors import ConfigError
from etl.shard import Shard, client_hash


def shard_of(client_id: str, n: int) -> int:
    """The 1-based shard (1..n) that owns this client."""
    return client_hash(client_id) % n + 1


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` → (K, N) with 1 ≤ K ≤ N; a one-line error otherwise."""
    try:
        shard = Shard.parse(text)
    except ValueError as exc:
        raise ConfigError("--shard", "shard", str(exc)) from None
    return shard.index, shard.count
