"""Failpoints: named places where a crash trial stops the real process (tests/reliability).

Why: the windows that decide whether an output is written exactly once (between a file's rename and
the ledger's mark, a few microseconds) are too short for any poll to kill a process inside them.
With `MPETL_FAILPOINT=<name>` in its environment the process stops itself there (SIGSTOP), and the
trial kills it (SIGKILL, or SIGTERM then SIGCONT) at exactly that point. Unset — always, outside the
trials — `reached` is one environment lookup at a handful of places per run.
"""

from __future__ import annotations

import os
import signal

ENV = "MPETL_FAILPOINT"


def reached(name: str) -> None:
    """Stop this process here if a crash trial asked for `name`."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGSTOP)
