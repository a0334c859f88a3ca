"""Sharded runs of the real CLI: the shards' requests are exactly the unsharded run's, split by client;
each shard's summary balances with `other_shard`; `mpetl aggregate` folds them into the night."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from tests.reliability.harness import (
    SECRET,
    assert_no_traceback,
    config_for,
    generic_source,
    requested_events,
    run_args,
    write_orders,
)
from tests.support import SAMPLES_NOW


@pytest.fixture
def run_mpetl(run_mpetl):
    """In process (dry runs: nothing to kill), on the samples' night, with the harness's secret."""
    return run_mpetl.using(env={"MP_API_SECRET": SECRET}, clock=SAMPLES_NOW)


def _clients(requests_ndjson) -> set[str]:
    return {orjson.loads(line)["client_id"] for line in requests_ndjson.read_bytes().splitlines()}


def test_shards_split_the_unsharded_run_by_client_and_each_balances(run_mpetl, tmp_path):
    tids = write_orders(tmp_path / "orders.csv", prefix="D", clients=40, per_client=3)
    with (tmp_path / "orders.csv").open("a") as handle:  # one row without a usable client id: shard 1 rejects it
        handle.write("not-a-cookie,1795000000,2026-11-20 10:00:00,D-BAD,10.00,EUR\n")
    config = config_for(tmp_path, [generic_source(tmp_path / "orders.csv")])
    whole = run_mpetl(*run_args(config, tmp_path / "whole", "--dry-run"))
    assert whole.returncode == 0, whole.stderr
    expected = requested_events(tmp_path / "whole" / "requests.ndjson")
    assert sum(expected.values()) == len(tids)

    got: Counter = Counter()
    clients: list[set[str]] = []
    summaries = []
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}"
        shard = run_mpetl(*run_args(config, out, "--dry-run", "--shard", f"{k}/3"))
        assert_no_traceback(shard.stdout, shard.stderr)
        assert shard.returncode == 0, shard.stderr
        got += requested_events(out / "requests.ndjson")
        clients.append(_clients(out / "requests.ndjson"))
        s = orjson.loads((out / "summary.json").read_bytes())
        summaries.append(s)
        assert s["shard"] == f"{k}/3" and s["rows_in"] == len(tids) + 1
        assert "sent" not in s  # dry runs: they would send
        assert s["rows_in"] == s["would_send"] + s["rejected"] + s["duplicate"] + s["deferred"] + s["failed"] + s["other_shard"]
    assert got == expected, "the shards together build exactly the unsharded run's events, each once"
    assert not (clients[0] & clients[1]) and not (clients[1] & clients[2]) and not (clients[0] & clients[2])
    assert all(clients), "40 clients over 3 shards: every shard gets some"
    assert [s["rejected"] for s in summaries] == [1, 0, 0]

    night = run_mpetl(*["aggregate", *(str(tmp_path / f"shard{k}") for k in (1, 2, 3))])
    assert night.returncode == 0, night.stderr
    total = orjson.loads(night.stdout)
    assert (total["rows_in"], total["rejected"], total["shards"]) == (len(tids) + 1, 1, 3)


def test_a_bad_shard_spec_is_a_one_line_error(run_mpetl, tmp_path):
    config = config_for(tmp_path, [generic_source(tmp_path / "orders.csv")])
    for spec in ("0/3", "4/3", "two"):
        bad = run_mpetl(*run_args(config, tmp_path / "out", "--shard", spec))
        assert bad.returncode == 2 and "--shard" in bad.stderr and "Traceback" not in bad.stderr
