"""Shard ownership: stable across processes, one client never split, every row owned exactly once."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from etl.accounting import Buckets
from etl.shard import AggregateError, Shard, aggregate, client_hash, client_shard, shard_numbers
from tests.support import cli_errors


def test_hash_is_the_documented_blake2b_prefix():
    import hashlib

    expected = int.from_bytes(hashlib.blake2b(b"1162820436.1749482504", digest_size=8).digest(), "big")
    assert client_hash("1162820436.1749482504") == expected


def test_ownership_is_the_same_in_another_process_with_another_hash_seed():
    ids = [f"{1000 + i}.{1_763_000_000 + i}" for i in range(200)]
    here = shard_numbers(pd.Series(ids), 7).tolist()
    assert here == [client_shard(i, 7) for i in ids]  # the ledgers' SQL function agrees with the transform
    code = ("import sys, pandas as pd; from etl.shard import shard_numbers; "
            "print(shard_numbers(pd.Series(sys.argv[1:]), 7).tolist())")
    other = subprocess.run([sys.executable, "-c", code, *ids], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=str(__import__("tests.support").support.REPO))
    assert other.stdout.strip() == str(here)


def test_every_row_is_owned_by_exactly_one_shard_and_a_client_is_never_split():
    ids = pd.Series([f"{i % 997}.{1_763_000_000 + i % 997}" for i in range(20_000)] + [None, None])
    for n in (2, 3, 4, 16):
        owners = np.stack([Shard(k, n).owns(ids) for k in range(1, n + 1)])
        assert (owners.sum(axis=0) == 1).all()
        frame = pd.DataFrame({"cid": ids, "shard": owners.argmax(axis=0)})
        assert frame.dropna().groupby("cid")["shard"].nunique().max() == 1
        assert owners[0, -2:].all(), "rows without a client id belong to shard 1"
        share = owners[:, :-2].sum(axis=1) / (len(ids) - 2)
        assert share.min() > 0.6 / n and share.max() < 1.4 / n, share


def test_parse_and_refuse():
    assert Shard.parse("2/4") == Shard(2, 4) and str(Shard.parse(" 3 / 8 ")) == "3/8"
    for bad in ("0/4", "5/4", "2", "a/b", "1/0", ""):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    assert Shard().owns(pd.Series(["x", None])).all()


def _summary(k: int, n: int, rows_in: int, **buckets: int) -> dict:
    """A shard's summary.json as a run writes it: every bucket, the rows of other shards in other_shard."""
    base = {"rows_in": rows_in, **dict.fromkeys(Buckets.NAMES, 0), "exit_code": 0}
    base.update(buckets)
    base["other_shard"] = rows_in - sum(base[b] for b in Buckets.NAMES if b != "other_shard")
    return {"shard": f"{k}/{n}", "run_id": f"r{k}", **base}


def test_aggregate_sums_shards_and_checks_the_night_is_complete():
    parts = [_summary(1, 3, 10, sent=3, rejected=1), _summary(2, 3, 10, sent=2, failed=1, exit_code=4),
             _summary(3, 3, 10, sent=2, deferred=1)]
    total = aggregate(reversed(parts))
    assert (total["rows_in"], total["sent"], total["failed"], total["exit_code"]) == (10, 7, 1, 4)
    assert total["balanced"] and total["run_ids"] == ["r1", "r2", "r3"]
    with pytest.raises(AggregateError, match="missing \\[2\\]"):
        aggregate([parts[0], parts[2]])
    with pytest.raises(AggregateError, match="repeated"):
        aggregate([parts[0], parts[0], parts[1]])
    with pytest.raises(AggregateError, match="owned 11 rows"):
        aggregate([parts[0], parts[1], _summary(3, 3, 10, sent=3, deferred=1)])
    broken = dict(parts[2], sent=5)
    with pytest.raises(AggregateError, match="does not balance"):
        aggregate([parts[0], parts[1], broken])


def test_aggregate_command_reads_shard_folders_and_refuses_an_incomplete_night(run_mpetl, tmp_path):
    import orjson

    parts = [_summary(1, 2, 6, sent=2, rejected=1), _summary(2, 2, 6, sent=3)]
    folders = []
    for k, s in enumerate(parts, 1):
        folder = tmp_path / f"shard{k}"
        folder.mkdir()
        (folder / "summary.json").write_bytes(orjson.dumps(s))
        folders.append(str(folder))
    ok = run_mpetl("aggregate", *folders, "--out", str(tmp_path / "night.json"))
    assert ok.returncode == 0, ok.stderr
    night = orjson.loads((tmp_path / "night.json").read_bytes())
    assert (night["rows_in"], night["sent"], night["rejected"], night["shards"]) == (6, 5, 1, 2)
    short = run_mpetl("aggregate", folders[0])
    assert short.returncode == 2 and short.stdout == ""
    assert cli_errors(short.stderr) == ["shards missing [2], repeated - (of 2)"]


def test_ledger_url_in_the_config_is_checked_and_never_holds_a_password(tmp_path):
    from etl.config import load_config
    from etl.errors import ConfigError
    from tests.support import samples_config

    good = load_config(samples_config(tmp_path, endpoint="local", ledger={"url": "postgresql://mpetl@db:5432/mpetl"}))
    assert good.ledger_location == "postgresql://mpetl@db:5432/mpetl"
    for bad, why in (("mysql://db/x", "PostgreSQL URL"), ("postgresql://mpetl:s3cret@db/x", "password"),
                     ("postgresql://db/x?password=s3cret", "password")):
        with pytest.raises(ConfigError, match=why) as caught:
            load_config(samples_config(tmp_path, endpoint="local", ledger={"url": bad}))
        assert "s3cret" not in str(caught.value)


def test_aggregate_counts_rows_outside_the_window_once_not_once_per_shard():
    # Each shard reads the whole input, so each sees the same 4 rows of another night.
    parts = [_summary(1, 2, 10, sent=3, outside_window=4), _summary(2, 2, 10, sent=2, rejected=1, outside_window=4)]
    night = aggregate(parts)
    assert (night["rows_in"], night["sent"], night["rejected"], night["outside_window"], night["other_shard"]) == \
           (10, 5, 1, 4, 0)
    assert night["balanced"] and night["equation"].startswith("rows_in 10 == sent 5 + filtered 0 + rejected 1 + ")
    with pytest.raises(AggregateError, match="shards read different inputs: outside_window"):
        aggregate([parts[0], _summary(2, 2, 10, sent=6, outside_window=0)])


def test_aggregate_on_a_malformed_summary_is_one_line_naming_the_file_and_key(tmp_path):
    import orjson
    from click.testing import CliRunner

    from etl.cli import main

    good = _summary(2, 2, 6, sent=3)
    cases = {
        "not JSON": (b'{"rows_in": 6,', "not a summary.json (not JSON"),
        "a list": (b"[1, 2]", "expected a JSON object, got a list"),
        "a key missing": (orjson.dumps({k: v for k, v in _summary(1, 2, 6, sent=2).items() if k != "rejected"}),
                          "key 'rejected' is missing"),
        "a count as text": (orjson.dumps({**_summary(1, 2, 6, sent=2), "sent": "2"}),
                            "key 'sent' must be a whole number, got text"),
        "a count as true/false": (orjson.dumps({**_summary(1, 2, 6, sent=2), "failed": True}),
                                  "key 'failed' must be a whole number, got true/false"),
        "a negative count": (orjson.dumps({**_summary(1, 2, 6, sent=2), "duplicate": -1}),
                             "key 'duplicate' must not be negative"),
        "a shard as a number": (orjson.dumps({**_summary(1, 2, 6, sent=2), "shard": 1}), "key 'shard' must be text"),
        "an exit code as text": (orjson.dumps({**_summary(1, 2, 6, sent=2), "exit_code": "0"}),
                                 "key 'exit_code' must be a whole number"),
    }
    for case, (content, expected) in cases.items():
        bad, other = tmp_path / case / "s1", tmp_path / case / "s2"
        bad.mkdir(parents=True)
        other.mkdir()
        (bad / "summary.json").write_bytes(content)
        (other / "summary.json").write_bytes(orjson.dumps(good))
        result = CliRunner().invoke(main, ["aggregate", str(bad), str(other)])
        assert result.exit_code == 2, (case, result.output)
        assert cli_errors(result.output)[0].startswith(f"{bad / 'summary.json'}: {expected}"), (case, result.output)
        assert result.output.count("\n") == 1 and "Traceback" not in result.output, case
