"""Shards: which worker owns which client, so N workers on one ledger never split a request identity.

Why a hash of client_id: every request carries one client, so a client never crosses shards and the
requests stay one-identity; blake2b (not Python's salted `hash()`) gives the same shard on every
machine and every run.
"""

from __future__ import annotations

import hashlib

from etl.errors import ConfigError


def shard_of(client_id: str, n: int) -> int:
    """The 1-based shard (1..n) that owns this client."""
    digest = hashlib.blake2b(client_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n + 1


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` → (K, N) with 1 ≤ K ≤ N; a one-line error otherwise."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError("--shard", "shard", f"expected K/N such as 2/4, got {text!r}") from None
    if not 1 <= k <= n:
        raise ConfigError("--shard", "shard", f"expected 1 ≤ K ≤ N in K/N, got {text!r}")
    return k, n
