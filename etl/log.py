"""Structured log lines for cron and Airflow: one JSON object per line on stderr.

Nothing personal and no secret is ever passed here: callers log counts, names of columns and
detectors, file paths and run ids only.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

_quiet = False
_verbose = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def set_verbose(verbose: bool) -> None:
    global _verbose
    _verbose = verbose


def detail(event: str, **fields: Any) -> None:
    """A line only `-v` wants: one per chunk, say."""
    if _verbose:
        emit(event, **fields)


def emit(event: str, **fields: Any) -> None:
    if _quiet:
        return
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}
    sys.stderr.write(orjson.dumps(record, default=str).decode() + "\n")
    sys.stderr.flush()
