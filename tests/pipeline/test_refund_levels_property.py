"""Property (issue 21): night after night of a growing cumulative refund, through the real pipeline,
ledger and local endpoint, each night's delta is sent once, and the order nets to what was kept."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.collector import CollectorServer, read_store
from etl.config import load_config
from etl.load import open_ledger
from etl.pipeline import RunOptions, run_pipeline
from tests.pipeline.test_money_nights import HEADER, MID, SECRET, _order
from tests.support import dump_toml

START = dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.UTC)


def _export(path, refunded: Decimal) -> None:
    import csv

    status = "refunded" if refunded >= 96 else "partially_refunded"
    rows = _order("#1003", status, "2026-11-20 11:00:00 -0500", ("80.00", "8.00", "8.00", "96.00", "", "0.00"),
                  [(1, "Lamp", "80.00", "LAMP", "0.00")], cookie=103, refunded=f"{refunded:.2f}")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 9_600), min_size=2, max_size=3, unique=True).map(sorted))
def test_each_nights_refund_delta_is_sent_once_and_the_order_nets_to_what_was_kept(tmp_path, monkeypatch, levels):
    monkeypatch.setenv("MP_API_SECRET", SECRET)
    root = tmp_path / uuid.uuid4().hex
    root.mkdir()
    nights = [START + dt.timedelta(hours=6 * i) for i in range(len(levels) + 1)]
    with CollectorServer(root / "store", measurement_id=MID, api_secret=SECRET, now=nights[-1], timezone="UTC") as server:
        # The last level twice: the night after, nothing is resent.
        for i, minor in enumerate([*levels, levels[-1]]):
            _export(root / "orders.csv", Decimal(minor) / 100)
            config = root / "config.toml"
            config.write_text(dump_toml({
                "property": {"measurement_id": MID, "timezone": "UTC"},
                "destination": {"endpoint": server.url},
                "ledger": {"path": str(root / "ledger.sqlite")},
                "sources": [{"name": "shop", "kind": "shopify", "path": str(root / "orders.csv"),
                             "timezone": "America/New_York", "consent_default": "omit", "options": {"refunds": True}}]}))
            now = nights[min(i, len(nights) - 1)]
            result = run_pipeline(load_config(config), RunOptions(out_dir=root / f"out{i}",
                                                                  clock=lambda now=now: int(now.timestamp()) * 1_000_000))
            assert result.exit_code == 0 and result.summary["balanced"]
    refunds = [row for row in read_store(root / "store").to_dict("records") if row["event_name"] == "refund"]
    assert len(refunds) == len(levels)  # one event per level, none resent
    with open_ledger(root / "ledger.sqlite", read_only=True) as ledger:
        history = ledger.order_history("shop", ["#1003"])
    sent = history[history["event_name"] == "refund"]
    assert len(sent) == len(levels)
    # Each level's value is its share (refunded × 80 / 96) less the earlier levels'; together they are
    # the last level's share, and a full refund nets the order to exactly 0.
    total = sum(Decimal(v) for v in sent["value"])
    last = Decimal(levels[-1]) / 100
    expected = Decimal(80) if last >= 96 else last * 80 / 96
    assert abs(total - expected) <= Decimal("0.01")
    if last >= 96:
        assert total == 80
