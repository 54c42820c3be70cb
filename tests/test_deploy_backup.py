"""docs/deploy.md's backup and restore commands, run on real servers: what is backed up comes back.

PostgreSQL (`pg_dump --format=custom`, `pg_restore --clean --if-exists`) on the `postgres` fixture;
InfluxDB 1.x (`influxd backup -portable`, `influxd restore -portable`) on the `influxd` fixture, over
its RPC address (`bind-address`, loopback).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import influx_query
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.database import open_engine
from sim.daemons import PG_BIN_DIRS, Daemon

DOC = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
PG_DUMP = ["pg_dump", "--format=custom"]
PG_RESTORE = ["pg_restore", "--clean", "--if-exists"]
INFLUX_BACKUP = ["influxd", "backup", "-portable", "-db", "urbansense", "-host"]
INFLUX_RESTORE = ["influxd", "restore", "-portable", "-db", "urbansense", "-host"]


def documented(command: list[str]) -> None:
    assert " ".join(command) in DOC, f"docs/deploy.md no longer shows `{' '.join(command)} …`"


def pg_tool(name: str) -> str:
    return next(f"{d}/{name}" for d in PG_BIN_DIRS if Path(f"{d}/{name}").exists())


def psql(dsn: str, sql: str) -> str:
    return subprocess.run([pg_tool("psql"), dsn, "-qAtc", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_postgres_dump_and_restore_as_documented(tmp_path: Path, pg_dsn: str) -> None:
    documented(PG_DUMP)
    documented(PG_RESTORE)
    psql(pg_dsn, "CREATE TABLE cases (id serial PRIMARY KEY, device text NOT NULL, address text NOT NULL)")
    psql(pg_dsn, "INSERT INTO cases (device, address) SELECT 'WL-' || g, '朝阳区 示范路 ' || g || ' 号' "
                 "FROM generate_series(1, 500) g")
    before = psql(pg_dsn, "SELECT md5(string_agg(id || device || address, ',' ORDER BY id)) FROM cases")
    dump = tmp_path / "urbansense.dump"
    subprocess.run([pg_tool("pg_dump"), *PG_DUMP[1:], f"--file={dump}", pg_dsn], check=True, capture_output=True,
                   timeout=120)
    psql(pg_dsn, "DELETE FROM cases WHERE id > 100")   # the loss the backup is for
    subprocess.run([pg_tool("pg_restore"), *PG_RESTORE[1:], f"--dbname={pg_dsn}", str(dump)], check=True,
                   capture_output=True, timeout=120)
    assert psql(pg_dsn, "SELECT md5(string_agg(id || device || address, ',' ORDER BY id)) FROM cases") == before
    assert psql(pg_dsn, "SELECT count(*) FROM cases") == "500"


def test_influxdb_backup_and_restore_as_documented(tmp_path: Path, influxd: Daemon) -> None:
    documented(INFLUX_BACKUP)
    documented(INFLUX_RESTORE)
    rpc = re.search(r'^bind-address = "([^"]+)"', influxd.config_path.read_text(), re.M)
    assert rpc is not None
    http = httpx.Client(base_url=influxd.url, timeout=30)
    http.post("/query", params={"q": 'DROP DATABASE "urbansense"'}).raise_for_status()
    http.post("/query", params={"q": 'CREATE DATABASE "urbansense"'}).raise_for_status()
    t0 = 1_784_592_000 * 10**9
    lines = "\n".join(f'water_level,device_id=WL-{i % 20},district=朝阳 depth_mm={i % 300}.0 {t0 + i * 10**9}'
                      for i in range(2000))
    http.post("/write", params={"db": "urbansense"}, content=lines.encode()).raise_for_status()
    query = 'SELECT count("depth_mm"), sum("depth_mm") FROM "water_level"'
    before = influx_query(influxd, "urbansense", query)
    assert before and before[0]["values"][0][1] == 2000
    backup = tmp_path / "influx-backup"
    subprocess.run([*INFLUX_BACKUP, rpc.group(1), str(backup)], check=True, capture_output=True, timeout=120)
    http.post("/query", params={"q": 'DROP DATABASE "urbansense"'}).raise_for_status()  # the disk that was lost
    r = subprocess.run([*INFLUX_RESTORE, rpc.group(1), str(backup)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert influx_query(influxd, "urbansense", query) == before
    http.post("/query", params={"q": 'DROP DATABASE "urbansense"'}).raise_for_status()


def test_the_database_password_comes_from_pgpassword_not_the_url(pg_dsn: str, monkeypatch) -> None:
    """docs/deploy.md, "Secrets": `[database] url` carries no password; libpq reads PGPASSWORD."""
    assert "PGPASSWORD" in DOC
    m = re.match(r"postgresql://([^:]+):([^@]+)@(.+)$", pg_dsn)
    assert m is not None
    user, password, rest = m.groups()
    bare = f"postgresql://{user}@{rest}"
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(OperationalError), open_engine(bare).connect() as conn:
        conn.execute(text("SELECT 1"))
    monkeypatch.setenv("PGPASSWORD", password)
    engine = open_engine(bare)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == user
    engine.dispose()
