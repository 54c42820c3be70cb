"""Shared fixtures: real Mosquitto, influxd and PostgreSQL on free loopback ports, data in temp folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
from hypothesis import settings
from loguru import logger

from sim.daemons import PG_BIN_DIRS, Daemon, PostgresDaemon, start_influxd, start_mosquitto, start_postgres

# A test sees no terminal size of its own: pytest-xdist's workers start with COLUMNS=80 (a serial run has
# none), and the CLI's consoles, made at import, would keep it and draw every table 80 wide whatever width a
# test then asks for. Tests that care pass COLUMNS to the command they run.
for _var in ("COLUMNS", "LINES"):
    os.environ.pop(_var, None)

# No per-example deadline: a loaded 2-core CI machine makes timing flaky, and speed is measured by
# benchmarks, not tests. Under CI the examples are derandomized, so a run is reproducible.
settings.register_profile("urbansense", deadline=None, derandomize=bool(os.environ.get("CI")))
settings.load_profile("urbansense")


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One influxd for the session; tests use their own database names (see `influx_db`)."""
    d = start_influxd(tmp_path_factory.mktemp("influxd"))
    yield d
    d.stop()


@pytest.fixture
def influx_db(influxd: Daemon, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for one test, named after it."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    httpx.post(f"{influxd.url}/query", params={"q": f'DROP DATABASE "{name}"'}).raise_for_status()
    httpx.post(f"{influxd.url}/query", params={"q": f'CREATE DATABASE "{name}"'}).raise_for_status()
    return name


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Daemon]:
    """A broker of the test's own, so persistent sessions never leak between tests."""
    d = start_mosquitto(tmp_path)
    yield d
    d.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresDaemon]:
    """One PostgreSQL cluster for the session (initdb + postgres on a free loopback port, fsync off)."""
    d = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield d
    d.stop()
    shutil.rmtree(d.data_dir.parent, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres: PostgresDaemon, request: pytest.FixtureRequest) -> str:
    """A fresh, empty PostgreSQL database for one test, named after it: its libpq URL (with password)."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:55]
    psql = next(f"{d}/psql" for d in PG_BIN_DIRS)
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run([psql, postgres.dsn("postgres"), "-qAtc", sql], check=True, capture_output=True)
    return postgres.dsn(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store keeps its shared state, once per backend: a SQLite file path (the embedded default),
    then a PostgreSQL URL whose connections see only a fresh schema named after the test (search_path in
    libpq's `options`; a schema costs milliseconds where a database costs a second). Pass it to
    `core.database.open_engine` or a store. Tests that need a database of their own use `pg_dsn`."""
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite")
    postgres: PostgresDaemon = request.getfixturevalue("postgres")
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:55]
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:  # per test: a restart elsewhere cannot break it
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.execute(f'CREATE SCHEMA "{name}"')
    return postgres.dsn() + "?options=" + quote(f"-csearch_path={name}")


def influx_query(influxd: Daemon, db: str, q: str) -> list[dict]:
    """Run InfluxQL; return the series of the first statement (empty list when none)."""
    r = httpx.get(f"{influxd.url}/query", params={"db": db, "q": q, "epoch": "ns"}, timeout=30)
    r.raise_for_status()
    result = r.json()["results"][0]
    if "error" in result:
        raise AssertionError(f"InfluxQL error for {q!r}: {result['error']}")
    return result.get("series", [])


@contextmanager
def captured_log(level: str = "INFO", fmt: str = "{level} {message}") -> Iterator[list[str]]:
    """The lines logged at `level` or above while inside, each formatted by `fmt` (loguru's format)."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level=level, format=fmt)
    try:
        yield lines
    finally:
        logger.remove(sink)


DAEMON_FIXTURES = frozenset({"influxd", "influx_db", "mosquitto", "own_broker", "own_influxd", "postgres", "pg_dsn"})
"""Fixtures that start a real Mosquitto or influxd; a test that needs one is an integration test."""


HEAVY_MODULES = frozenset({"test_failover", "test_leadership", "test_faults_ingest", "test_faults_disk",
                           "test_nbiot_service", "test_spine_e2e"})
"""Modules whose tests drive a service at hundreds of uplinks a second, or count seconds to a takeover:
under `pytest -n` (pyproject's addopts) they share one worker (`xdist_group`), so no two of them compete
for the CPU at once; the other worker runs the rest of the suite beside them."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts a daemon `integration`, so `pytest -m "not integration"` needs none;
    put the heavy modules' tests in one xdist group."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rpartition(".")[2] in HEAVY_MODULES:
            item.add_marker(pytest.mark.xdist_group("heavy"))
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database") == "postgresql"
        if on_postgres or DAEMON_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
