"""Suite-wide fixtures: `run_mpetl` (the CLI as a user runs it), a real PostgreSQL server (started once per
session) and a fresh database per test."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.pgserver import PgServer, create_database
from tests.support import LedgerBackend, MpetlRunner

# No example may fail for taking long: hypothesis' default 200 ms deadline is a timed assertion, and one
# example took 353 ms on a loaded 2-core machine. Speed is measured in bench/, not asserted here.
settings.register_profile("mpetl", deadline=None)
settings.load_profile("mpetl")

PG_FIXTURES = {"pg_admin_url", "pg_url"}
PG_PARAMS = ("ledger_url", "ledger_backend")  # their "postgresql" case asks for the server at run time


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that starts PostgreSQL `pg`, from the fixtures it uses: `make test-fast`
    (-m "not (pg or airflow or browser or slow)") must pass on a machine without PostgreSQL, and a
    hand-kept marker would be forgotten on the next test."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if PG_FIXTURES & set(getattr(item, "fixturenames", ())) or any(params.get(p) == "postgresql" for p in PG_PARAMS):
            item.add_marker(pytest.mark.pg)


@pytest.fixture
def run_mpetl() -> MpetlRunner:
    """`run_mpetl("run", "--config", …, clock=SAMPLES_NOW)` → CompletedProcess (returncode, stdout, stderr).

    In process unless `process=True` (a terminal, signals, kill -9); `clock` pins the wall clock (the
    night being simulated: an event's age is the wall clock's, never --now's); `env` adds variables
    (None removes one, e.g. {"MP_API_SECRET": None}). `run_mpetl.popen(…)` starts one to kill.
    """
    return MpetlRunner()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session: MPETL_TEST_PG_URL, or one started here and stopped after."""
    given = os.environ.get("MPETL_TEST_PG_URL")
    if given:
        yield given
        return
    server = PgServer().start()
    try:
        yield server.url()
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_admin_url: str) -> str:
    """The URL of a fresh, empty database on the session's server (one per test)."""
    return create_database(pg_admin_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The ledger a test runs on, once per backend: a SQLite file, then a fresh PostgreSQL database.

    The server starts only when a PostgreSQL case runs (`-k sqlite` never starts it).
    """
    if request.param == "sqlite":
        return str(tmp_path / "state" / "ledger.sqlite")
    return create_database(request.getfixturevalue("pg_admin_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test once per ledger backend: configs written by `samples_config` (and the reliability
    harness) point at a SQLite file, then at a fresh PostgreSQL database. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("ledger_backend")`."""
    if request.param == "postgresql":
        LedgerBackend.admin_url = request.getfixturevalue("pg_admin_url")
    try:
        yield request.param
    finally:
        LedgerBackend.admin_url = None
        LedgerBackend._urls.clear()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
