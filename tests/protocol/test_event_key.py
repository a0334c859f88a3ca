"""A ledger key's tail: every transaction id reads back as itself, and none can pass for a row digest."""

from __future__ import annotations

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from etl.protocol.event_key import DIGEST_PREFIX, digest_tail, tails_for, unescaped

# What the transform lets through as an id: no control characters (events.py rejects them), ≤ 100 chars.
IDS = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=100)


@given(st.lists(st.one_of(IDS, st.from_regex(r"row:[0-9a-f]{16}", fullmatch=True)), min_size=1, max_size=30))
def test_every_id_round_trips_and_never_equals_a_digest(ids):
    tails = tails_for(pd.Series(ids, dtype="string"))
    assert unescaped(tails).tolist() == ids
    assert not tails.str.startswith(DIGEST_PREFIX).any()  # only a digest's tail starts with "row:"
    digests = {digest_tail(f"{i:016x}") for i in range(3)} | {digest_tail(i[4:]) for i in ids if i.startswith("row:")}
    assert not digests & set(tails)  # a real id's tail is never a digest's, whatever its prefix


def test_ordinary_ids_keep_the_spelling_earlier_ledgers_wrote():
    tails = tails_for(pd.Series(["ORD-1", "row:0123456789abcdef", None], dtype="string"))
    assert tails.tolist()[:2] == ["ORD-1", "\x1frow:0123456789abcdef"] and tails.isna().tolist()[2]
    assert digest_tail("00ff00ff00ff00ff").startswith(DIGEST_PREFIX)
