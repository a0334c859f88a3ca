"""Shards for the ledger backends: scalar helpers over etl/shard.py (the one definition of ownership).

Why a hash of client_id: every request carries one client, so a client never crosses shards and the
requests stay one-identity; blake2b (not Python's salted `hash()`) gives the same shard on every
machine and every run. `etl/shard.py` documents the hash; this module only adapts it for SQL
functions (SQLite's `create_function`).
"""

from __future__ import annotations

from etl.shard import client_hash


def shard_of(client_id: str, n: int) -> int:
    """The 1-based shard (1..n) that owns this client."""
    return client_hash(client_id) % n + 1

