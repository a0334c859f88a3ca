"""The test PostgreSQL server is real: a fresh database per test, reachable over TCP on 127.0.0.1."""

from __future__ import annotations

import psycopg


def test_each_test_gets_a_fresh_empty_database(pg_url, pg_admin_url):
    assert "127.0.0.1" in pg_url
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
        version = con.execute("SHOW server_version_num").fetchone()[0]
        assert int(version) >= 130000
        con.execute("CREATE TABLE t(x int)")
    with psycopg.connect(pg_admin_url) as con:
        names = {r[0] for r in con.execute("SELECT datname FROM pg_database")}
    assert pg_url.rsplit("/", 1)[1] in names
