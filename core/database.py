"""The shared-state engines: SQLite files (the embedded default) or one PostgreSQL database, and
versioned schema migrations for each component that keeps state in them.

`open_engine(url_or_path)` gives a SQLAlchemy 2 Core `Engine`:
- a plain path, `:memory:` or `sqlite:///path` → SQLite in WAL mode with synchronous=FULL (a
  committed transaction survives a kill -9 or a power cut), a busy timeout and foreign keys; every
  transaction begins `BEGIN IMMEDIATE` (takes the write lock at once, so a read-then-write never
  fails with "database is locked" halfway) unless the connection asks for
  `execution_options(sqlite_begin="DEFERRED")`, as `read_connection` does for reads of committed
  rows that must never wait for a writer's fsync;
- `postgresql://…` (or `postgres://`, `postgresql+psycopg://`) → psycopg 3 with `pool_pre_ping`
  (a connection broken by a server restart is replaced, not handed out) and TCP keepalives (a dead
  peer is noticed in seconds, not hours).

Migrations: each component (`alerts`, `registry`, `deadletters`, …) lists `Migration(version,
description, apply)`; `migrate(engine, component, migrations)` applies those above the recorded
version, each in its own transaction together with its row in `schema_versions` (component,
version, description, applied_ns), serialised between processes (SQLite's write lock; PostgreSQL
`pg_advisory_xact_lock`). A database newer than the code is refused (`MigrationError`). A store opening
its schema calls `migrate_or_refuse`: migrate, or (the CLI, `migrate_on_start = false`) refuse one that is behind.
"""

from __future__ import annotations

import functools
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from core.secrets import redact_url

__all__ = [
    "BUSY_TIMEOUT_S", "DatabaseError", "Migration", "MigrationError", "Rows", "applied_versions", "bare_at_problem",
    "current_version", "describe_url", "execute", "is_postgres", "is_postgres_url", "migrate", "migrate_or_refuse",
    "open_engine",
    "pending", "read_connection", "schema_versions",
]

BUSY_TIMEOUT_S = 10.0
"""How long a SQLite writer waits for another process's write lock before "database is locked"."""

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


class DatabaseError(Exception):
    """A database URL that cannot be used (unknown scheme, missing path)."""


class MigrationError(DatabaseError):
    """The schema cannot be brought to the code's version (newer than the code, or behind and not allowed)."""


def _sqlite_path(url_or_path: str | Path) -> str | None:
    """The file (or ":memory:") of a SQLite target; None for a server URL."""
    if isinstance(url_or_path, Path):
        return str(url_or_path)
    s = url_or_path.strip()
    if s.startswith("sqlite:"):
        if not s.startswith("sqlite:///"):
            raise DatabaseError(f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, not {s!r}")
        return s[len("sqlite:///"):] or ":memory:"
    if "://" in s:
        return None
    if not s:
        raise DatabaseError("no database given (an empty path)")
    return s


def is_postgres_url(url_or_path: str | Path) -> bool:
    """True for a postgresql:// (postgres://, postgresql+psycopg://) URL."""
    return isinstance(url_or_path, str) and url_or_path.strip().split("://", 1)[0].lower() in POSTGRES_SCHEMES


def bare_at_problem(url: str) -> str | None:
    """Why a URL cannot be used when its user or password holds a bare '@' (libpq would take the text after it
    for the host and print it in its error), else None."""
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    if "@" in netloc.rpartition("@")[0]:
        return ("the database URL's user or password holds a bare '@': percent-encode it as %40 "
                "(postgresql://city:p%40ss@db.example:5432/urbansense)")
    return None


def describe_url(url_or_path: str | Path) -> str:
    """What to show of a target in logs and `db status`: the path, or the URL with its password (and
    everything before the host's '@') masked."""
    path = _sqlite_path(url_or_path) if not is_postgres_url(url_or_path) else None
    if path is not None:
        return f"SQLite {path}"
    return "PostgreSQL " + redact_url(str(url_or_path).strip())


def holds_nothing(url_or_path: str | Path, table: str) -> bool:
    """True when a component's store is not made yet: a SQLite file not made (or empty), or a database without
    `table` (the component's main table). Making the schema there changes nothing anyone uses, so a command that
    never migrates (the CLI) may still create it. Raises the driver's error when PostgreSQL cannot be reached."""
    if not is_postgres_url(url_or_path):
        path = Path(str(url_or_path).removeprefix("sqlite:///"))
        if not path.exists() or path.stat().st_size == 0:
            return True
    engine = open_engine(url_or_path)
    try:
        return not inspect(engine).has_table(table)
    finally:
        engine.dispose()


def open_engine(url_or_path: str | Path, *, pool_size: int = 5, keepalive_s: int = 5) -> Engine:
    """An engine for a SQLite file (path or sqlite:/// URL, parents created) or a PostgreSQL URL.

    Raises `DatabaseError` for any other scheme. No connection is made until first use.
    """
    path = _sqlite_path(url_or_path)
    if path is not None:
        return _sqlite_engine(path)
    url = str(url_or_path).strip()
    scheme, rest = url.split("://", 1)
    if scheme.lower() not in POSTGRES_SCHEMES:
        raise DatabaseError(f"unsupported database URL scheme {scheme!r}: use postgresql://user:password@host:5432/db"
                            " or a SQLite file path")
    if problem := bare_at_problem(url):
        raise DatabaseError(problem)
    return create_engine(
        "postgresql+psycopg://" + rest, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
        pool_recycle=3600, hide_parameters=True,
        connect_args={"connect_timeout": 10, "application_name": "urbansense", "keepalives": 1,
                      "keepalives_idle": keepalive_s, "keepalives_interval": 2,
                      "keepalives_count": 3})


def _sqlite_engine(path: str) -> Engine:
    memory = path == ":memory:"
    if not memory:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        "sqlite+pysqlite:///" + path, hide_parameters=True,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
        **({"poolclass": StaticPool} if memory else {"pool_size": 8, "max_overflow": 8}))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below), pysqlite's own is too late
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def is_postgres(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reading committed rows: on SQLite its transactions begin DEFERRED (a WAL reader
    never waits for a writer's commit); on PostgreSQL a plain pooled connection. Rolled back on exit."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execution_options(sqlite_begin="DEFERRED")
        yield conn


# statements on the hot path

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


@functools.lru_cache(maxsize=2048)
def _pyformat(sql: str) -> str:
    """`:name` → psycopg's `%(name)s` (literal `%` doubled), once per statement text."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


@dataclass(slots=True)
class Rows:
    """What `execute` returns: the rows as dicts (column → value) and the driver's rowcount."""

    rows: list[dict[str, Any]]
    rowcount: int

    def first(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row (None when there is none)."""
        return next(iter(self.rows[0].values())) if self.rows else None


def _nul_free(value: Any) -> Any:
    """A text parameter with U+0000 written as the four characters `\\x00`, on both engines alike:
    PostgreSQL text cannot hold it, and what carries one (a receiver's error text, a case id in its
    reply, an operator's comment) must still be stored, not refused with the transaction around it."""
    return value.replace("\x00", "\\x00") if isinstance(value, str) and "\x00" in value else value


def execute(conn: Connection, sql: str, params: Mapping[str, Any] | None = None) -> Rows:
    """Run one portable SQL statement with `:name` parameters on `conn`'s driver connection, inside
    whatever transaction `conn` holds (none: the driver's own, as for a single read).

    Why not `conn.execute(text(sql))`: SQLAlchemy's statement machinery costs 0.5–1 ms a statement
    on this project's 2-core machines against ~30–60 µs for the driver itself, and an alert transition
    is half a dozen statements. Engines, pools, transactions, savepoints and DDL stay SQLAlchemy's.
    Rules for `sql`: one statement, no `:` inside string literals (pass values as parameters). A str
    parameter holding U+0000 is bound with it written as `\\x00` (`_nul_free`).
    Driver errors are raised as SQLAlchemy's `DBAPIError` subclasses (`OperationalError`, …),
    parameters hidden.
    """
    raw = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    args = {k: _nul_free(v) for k, v in params.items()} if params else None
    if postgres and args is not None:
        sql = _pyformat(sql)
    assert raw is not None
    cur = raw.cursor()
    try:
        if args is None:
            cur.execute(sql)
        else:
            cur.execute(sql, args)
        rows: list[dict[str, Any]] = []
        if cur.description:
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        return Rows(rows, cur.rowcount)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error, hide_parameters=True,
                                  dialect=conn.dialect) from exc
    finally:
        cur.close()


# migrations

_META = MetaData()
schema_versions = Table(
    "schema_versions", _META,
    Column("component", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("applied_ns", BigInteger, nullable=False),
    PrimaryKeyConstraint("component", "version"),
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a component's schema: `apply(conn)` runs inside the transaction that records it.

    Versions count 1, 2, 3 … per component; a migration, once released, never changes (add another).
    """

    version: int
    description: str
    apply: Callable[[Connection], None]


def _check(migrations: Sequence[Migration]) -> list[Migration]:
    ordered = sorted(migrations, key=lambda m: m.version)
    if [m.version for m in ordered] != list(range(1, len(ordered) + 1)):
        raise MigrationError(f"migration versions must be 1..n without gaps, got {[m.version for m in ordered]}")
    return ordered


def applied_versions(conn: Connection | Engine, component: str) -> list[int]:
    """The versions recorded for `component` (empty for a fresh database)."""
    if isinstance(conn, Engine):
        with read_connection(conn) as c:
            return applied_versions(c, component)
    if not conn.dialect.has_table(conn, "schema_versions"):
        return []
    rows = conn.execute(select(schema_versions.c.version).where(schema_versions.c.component == component)
                        .order_by(schema_versions.c.version))
    return [int(r[0]) for r in rows]


def current_version(conn: Connection | Engine, component: str) -> int:
    """The highest applied version of `component` (0 for none)."""
    return max(applied_versions(conn, component), default=0)


def pending(engine: Engine, component: str, migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations of `component` not yet applied; `MigrationError` when the database is newer than the code."""
    ordered = _check(migrations)
    version = current_version(engine, component)
    if version > len(ordered):
        raise MigrationError(f"the {component} schema is at version {version}, newer than this urbansense knows "
                             f"({len(ordered)}); upgrade urbansense")
    return ordered[version:]


def migrate(engine: Engine, component: str, migrations: Sequence[Migration], *,
            on_apply: Callable[[Migration], None] | None = None) -> list[Migration]:
    """Apply the pending migrations of `component`, each in its own transaction; returns those applied.

    Safe when several processes start at once: each step holds the database's write lock (SQLite)
    or an advisory transaction lock per component (PostgreSQL), and re-reads the version under it.
    """
    ordered = _check(migrations)
    applied: list[Migration] = []
    with engine.begin() as conn:
        _lock(conn, "schema_versions")
        schema_versions.create(conn, checkfirst=True)
    while True:
        with engine.begin() as conn:
            _lock(conn, component)
            version = current_version(conn, component)
            if version > len(ordered):
                raise MigrationError(f"the {component} schema is at version {version}, newer than this urbansense "
                                     f"knows ({len(ordered)}); upgrade urbansense")
            if version == len(ordered):
                return applied
            step = ordered[version]
            step.apply(conn)
            conn.execute(schema_versions.insert().values(component=component, version=step.version,
                                                         description=step.description, applied_ns=time.time_ns()))
        applied.append(step)
        if on_apply is not None:
            on_apply(step)


def migrate_or_refuse(engine: Engine, component: str, migrations: Sequence[Migration], *, migrate_schema: bool,
                      what: str | None = None) -> list[Migration]:
    """What every store does on opening: apply the pending migrations (`migrate_schema`), else refuse a schema
    that is behind with a `MigrationError` naming `urbansense db migrate` (the CLI never migrates, nor does a
    start with `[database] migrate_on_start = false`). `what` names the schema in that error (default:
    `component`). Returns the migrations applied."""
    if migrate_schema:
        return migrate(engine, component, migrations)
    if todo := pending(engine, component, migrations):
        raise MigrationError(f"the {what or component} schema is {len(todo)} version(s) behind this urbansense; "
                             "run `urbansense db migrate` (the CLI never migrates; `urbansense run` does "
                             "when [database] migrate_on_start = true)")
    return []


def _lock(conn: Connection, component: str) -> None:
    """Serialise migrations of one component between processes (SQLite: BEGIN IMMEDIATE already does)."""
    if is_postgres(conn):
        key = zlib.crc32(f"urbansense-migrate:{component}".encode())  # one lock per component, held to commit
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")
    else:
        conn.exec_driver_sql("SELECT 1")  # the BEGIN IMMEDIATE of this transaction is emitted by now
