"""core.database: engines for SQLite files and PostgreSQL, and the versioned migration runner, on both."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, Table, Text, text
from sqlalchemy.exc import DBAPIError

from core.database import (
    DatabaseError,
    Migration,
    MigrationError,
    applied_versions,
    current_version,
    describe_url,
    execute,
    is_postgres,
    migrate,
    open_engine,
    pending,
    read_connection,
)


def _create_things(conn: Connection) -> None:
    Table("things", MetaData(), Column("id", Integer, primary_key=True),
          Column("name", Text, nullable=False)).create(conn)


def _add_colour(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE things ADD COLUMN colour TEXT NOT NULL DEFAULT 'red'"))


STEPS = [Migration(1, "things", _create_things), Migration(2, "things get a colour", _add_colour)]


def test_migrate_applies_each_step_once_and_records_it(database: str) -> None:
    engine = open_engine(database)
    try:
        assert [m.version for m in pending(engine, "things", STEPS)] == [1, 2]
        assert [m.version for m in migrate(engine, "things", STEPS[:1])] == [1]
        assert current_version(engine, "things") == 1
        assert [m.version for m in migrate(engine, "things", STEPS)] == [2]
        assert migrate(engine, "things", STEPS) == []  # again: nothing to do
        assert pending(engine, "things", STEPS) == []
        assert applied_versions(engine, "things") == [1, 2]
        assert current_version(engine, "other") == 0  # components are counted apart
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO things (name) VALUES ('bin')"))
        with read_connection(engine) as conn:
            assert conn.execute(text("SELECT name, colour FROM things")).all() == [("bin", "red")]
    finally:
        engine.dispose()


def test_a_failing_step_leaves_the_schema_at_the_last_good_version(database: str) -> None:
    def broken(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE half (id INTEGER)"))
        raise RuntimeError("boom")

    engine = open_engine(database)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            migrate(engine, "things", [*STEPS, Migration(3, "broken", broken)])
        assert current_version(engine, "things") == 2
        with read_connection(engine) as conn:  # the step's own DDL went with its transaction
            assert not engine.dialect.has_table(conn, "half")
    finally:
        engine.dispose()


def test_a_database_newer_than_the_code_is_refused(database: str) -> None:
    engine = open_engine(database)
    try:
        migrate(engine, "things", STEPS)
        with pytest.raises(MigrationError, match="newer than this urbansense knows"):
            migrate(engine, "things", STEPS[:1])
        with pytest.raises(MigrationError, match="newer"):
            pending(engine, "things", STEPS[:1])
    finally:
        engine.dispose()


def test_versions_must_count_from_one_without_gaps(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="without gaps"):
        pending(open_engine(tmp_path / "x.sqlite"), "things", [STEPS[1]])


def test_processes_starting_at_once_apply_each_step_once(database: str) -> None:
    """Four instances migrating the same database concurrently: every step runs exactly once."""
    runs: list[int] = []

    def counted(m: Migration) -> Migration:
        def apply(conn: Connection) -> None:
            runs.append(m.version)
            m.apply(conn)
        return Migration(m.version, m.description, apply)

    steps = [counted(m) for m in STEPS]
    engines = [open_engine(database) for _ in range(4)]
    errors: list[BaseException] = []

    def run(e: Engine) -> None:
        try:
            migrate(e, "things", steps)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    assert errors == []
    assert sorted(runs) == [1, 2]


def test_sqlite_engine_is_durable_and_waits_for_the_write_lock(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/a/b.sqlite")  # parents are created
    try:
        assert not is_postgres(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_reader_does_not_wait_for_an_open_write_transaction(tmp_path: Path) -> None:
    """The WAL reader trick: committed rows stay readable while a writer holds its lock."""
    engine = open_engine(tmp_path / "r.sqlite")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (v INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with engine.begin() as writer:
            writer.execute(text("INSERT INTO t VALUES (2)"))
            with read_connection(engine) as reader:
                assert reader.execute(text("SELECT v FROM t")).scalars().all() == [1]
    finally:
        engine.dispose()


def test_postgres_engine_uses_psycopg_with_liveness_checks(pg_dsn: str) -> None:
    engine = open_engine(pg_dsn)
    try:
        assert is_postgres(engine)
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW application_name").scalar() == "urbansense"
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


def test_urls_are_described_without_their_password_and_bad_ones_refused() -> None:
    assert describe_url("postgresql://city:s3cret@db.local:5432/urban") == \
        "PostgreSQL postgresql://city:***@db.local:5432/urban"
    assert "s3cret" not in repr(open_engine("postgres://city:s3cret@127.0.0.1:1/urban").url)
    assert describe_url("var/alerts.sqlite") == "SQLite var/alerts.sqlite"
    with pytest.raises(DatabaseError, match="unsupported database URL scheme 'mysql'"):
        open_engine("mysql://u:p@h/db")
    with pytest.raises(DatabaseError, match="sqlite:///"):
        open_engine("sqlite://x.db")


def test_execute_runs_portable_sql_with_named_parameters_on_both(database: str) -> None:
    engine = open_engine(database)
    try:
        migrate(engine, "things", STEPS)
        with engine.begin() as conn:
            added = execute(conn, "INSERT INTO things (name, colour) VALUES (:n, :c) RETURNING id",
                            {"n": "50% full", "c": "blue"})
            assert added.rowcount == 1 and isinstance(added.scalar(), int)
            execute(conn, "INSERT INTO things (name) VALUES (:n)", {"n": "a:b"})
        with read_connection(engine) as conn:
            rows = execute(conn, "SELECT name, colour FROM things WHERE name LIKE :p OR colour = 'red'"
                                 " ORDER BY id", {"p": "%full"}).rows
            assert rows == [{"name": "50% full", "colour": "blue"}, {"name": "a:b", "colour": "red"}]
            assert execute(conn, "SELECT COUNT(*) AS n FROM things").scalar() == 2
            with pytest.raises(DBAPIError, match=r"no such table|does not exist") as err:
                execute(conn, "SELECT * FROM no_such_table WHERE x = :x", {"x": "secret-value"})
            assert "secret-value" not in str(err.value)  # parameters are never shown
    finally:
        engine.dispose()
