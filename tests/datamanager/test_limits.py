"""Google's per-project limits on our side: no minute holds more than N requests; the day's quota is shared."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from etl.load.datamanager import DailyQuota, MinuteLimiter


def test_no_window_ever_holds_more_than_the_limit():
    limiter = MinuteLimiter(3, window_s=0.4)
    stamps: list[float] = []

    async def go() -> None:
        async def one() -> None:
            await limiter.acquire()
            stamps.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(8)))

    started = time.monotonic()
    asyncio.run(go())
    stamps.sort()
    assert len(stamps) == 8
    assert all(b - a >= 0.4 - 0.01 for a, b in zip(stamps, stamps[3:], strict=False))  # any 4 span a window
    assert time.monotonic() - started >= 0.8 - 0.02  # 8 requests at 3 a window need two full windows of waiting


def _micros(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1_000_000)


def test_the_daily_quota_is_shared_by_runs_and_starts_again_on_the_next_pacific_day(tmp_path):
    now = {"t": _micros("2026-11-21T06:00:00+00:00")}  # 22:00 on the 20th in Los Angeles
    path = tmp_path / "quota.json"
    first = DailyQuota(path, 3, wall_micros=lambda: now["t"])
    assert [first.take(), first.take()] == [True, True]
    second = DailyQuota(path, 3, wall_micros=lambda: now["t"])  # the next run, same quota day
    assert second.remaining() == 1 and second.take() is True and second.take() is False
    assert second.used() == 3 and (first.taken, second.taken) == (2, 1)
    now["t"] = _micros("2026-11-21T07:59:00+00:00")  # 23:59 in Los Angeles: still the 20th
    assert second.remaining() == 0
    now["t"] = _micros("2026-11-21T08:00:00+00:00")  # midnight Pacific: a new day
    assert second.remaining() == 3
