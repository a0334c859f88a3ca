"""A real PostgreSQL server for tests: Debian's binaries, a temp data dir, 127.0.0.1 on a free port.

Why a real server and not a fake: the PostgreSQL ledger's promises (row locks with SKIP LOCKED,
advisory locks, transactions surviving kill -9 of a client) are the server's behaviour. PostgreSQL
refuses to run as root, so as root the server runs as the `postgres` system user (runuser) from a
temp folder that user owns; as any other user it runs as that user.

`MPETL_TEST_PG_URL` (a postgresql:// URL of a server whose user may CREATE DATABASE) skips starting
one, for machines that already run PostgreSQL. Missing binaries are an error with the fix, never a
skip: CI installs `postgresql` (.ci/run).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

INSTALL_HINT = "install Debian's PostgreSQL: apt-get install -y postgresql (or set MPETL_TEST_PG_URL)"


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<v>/bin holding initdb (or MPETL_PG_BINDIR)."""
    override = os.environ.get("MPETL_PG_BINDIR")
    candidates = [override] if override else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for path in reversed(candidates):
        if path and (Path(path) / "initdb").exists():
            return Path(path)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(f"PostgreSQL server binaries not found: {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """One throwaway cluster. `start()`, `new_database()` per test, `stop()` (removes everything)."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mpetl-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "pg.log"
        self._as_root = os.geteuid() == 0
        self.user = "postgres" if self._as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> PgServer:
        self.sockets.mkdir()
        self.log.touch()
        if self._as_root:
            entry = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets, self.log):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        init = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-sync")
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-500:]}")
        return self.resume()

    def resume(self) -> PgServer:
        """Start the server on its data folder (again, after `pause`), same port."""
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200 -c shared_buffers=32MB")
        up = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")
        if up.returncode:
            raise RuntimeError(f"pg_ctl start failed: {up.stderr.strip()[-300:]} {self.log.read_text()[-500:]}")
        self.started = True
        return self

    def pause(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data: `fast` ends every session (as a restart would), `immediate`
        kills the server outright (as a crash would; it recovers from its WAL when resumed)."""
        down = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        if down.returncode:
            raise RuntimeError(f"pg_ctl stop failed: {down.stderr.strip()[-300:]}")
        self.started = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        return create_database(self.url())

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(admin_url: str) -> str:
    """CREATE DATABASE with a fresh name on the server of `admin_url`; the new database's URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"
