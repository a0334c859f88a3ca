"""tests/cli: every `run_mpetl` call runs on the night of NOW (the wall clock pinned there) with the CLI
tests' API secret, unless the call says otherwise."""

from __future__ import annotations

import pytest

from tests.cli.common import NOW, SECRET
from tests.support import MpetlRunner


@pytest.fixture
def run_mpetl(run_mpetl: MpetlRunner) -> MpetlRunner:
    return run_mpetl.using(env={"MP_API_SECRET": SECRET}, clock=NOW)
