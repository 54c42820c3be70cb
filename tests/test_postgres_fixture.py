"""The PostgreSQL fixture gives each test its own empty database behind a password."""

from __future__ import annotations

import subprocess

from sim.daemons import PG_BIN_DIRS, PostgresDaemon


def _psql(dsn: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([f"{PG_BIN_DIRS[0]}/psql", dsn, "-qAtc", sql], capture_output=True, text=True)


def test_each_test_gets_an_empty_database_and_a_wrong_password_is_refused(postgres: PostgresDaemon,
                                                                          pg_dsn: str) -> None:
    assert _psql(pg_dsn, "CREATE TABLE t (x int); INSERT INTO t VALUES (1); SELECT count(*) FROM t").stdout == "1\n"
    wrong = pg_dsn.replace(postgres.password, "wrong")
    refused = _psql(wrong, "SELECT 1")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
