"""Google's per-project request limits, honoured on our side: 300 requests a minute, 100,000 a day.

From the limits page (developers.google.com/data-manager/api/devguides/limits): "Requests that exceed
the limits are rejected with the error RESOURCE_EXHAUSTED and HTTP status 429", and "take control of
your app … by throttling QPS from the client side". So:

- `MinuteLimiter`: no 60-second window ever holds more than `per_minute` requests (a sliding window,
  stricter than a calendar minute), shared by every request slot of the run. Every attempt counts,
  retries included: Google counts requests, not events.
- `DailyQuota`: requests counted per quota day in a small JSON file, shared by this machine's runs
  (an exclusive flock around each read-modify-write), so the next night does not start on a spent
  quota. The day is America/Los_Angeles: Google Cloud's daily quotas reset at midnight Pacific time
  (the Data Manager page does not say; for a European night job this never assumes a fresh day early).
  The sender is given `remaining()` as its request budget before it starts, so what does not fit is
  never marked in flight: it stays `planned` for the next run (the summary says `daily_quota`).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import fcntl
import os
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import orjson

QUOTA_ZONE = zoneinfo.ZoneInfo("America/Los_Angeles")
WINDOW_S = 60.0


class MinuteLimiter:
    """`await acquire()` before each attempt; sleeps until the oldest of the last N is a minute old."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._window = window_s  # Google's minute; tests shrink it
        self._sent: collections.deque[float] = collections.deque()
        self._lock: asyncio.Lock | None = None
        self.waited_s = 0.0

    async def acquire(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self._window:
                    self._sent.popleft()
                if len(self._sent) < self.per_minute:
                    self._sent.append(now)
                    return
                wait = self._window - (now - self._sent[0])
                self.waited_s += wait
                await asyncio.sleep(wait)


def quota_day(wall_micros: int) -> str:
    return dt.datetime.fromtimestamp(wall_micros / 1e6, QUOTA_ZONE).strftime("%Y-%m-%d")


class DailyQuota:
    """Requests used today by this machine, against `limit`; `take()` counts one (False: none left)."""

    def __init__(self, path: Path, limit: int, *, wall_micros: Callable[[], int]) -> None:
        self.path = Path(path)
        self.limit = limit
        self._wall = wall_micros
        self.taken = 0  # by this run

    def _update(self, change: int) -> int:
        """Add `change` to today's count under the file lock; return the count after it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 4096)
            try:
                state = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                state = {}  # a torn file: count from zero rather than refuse to send at all
            today = quota_day(self._wall())
            used = int(state.get("used", 0)) if state.get("day") == today else 0
            used += change
            data = orjson.dumps({"day": today, "used": used, "limit": self.limit})
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)
            return used
        finally:
            os.close(fd)  # closing releases the flock

    def used(self) -> int:
        return self._update(0)

    def remaining(self) -> int:
        return max(0, self.limit - self.used())

    def take(self) -> bool:
        """Count one request if the day's quota allows it."""
        if self._update(1) > self.limit:
            self._update(-1)
            return False
        self.taken += 1
        return True
