"""`urbansense db status|migrate` on the configured shared state (a SQLite file or [database] PostgreSQL),
and the service's start against a schema that is behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.errors import AlertsError
from alerts.runtime import AlertsRuntime
from alerts.schema import COMPONENT, MIGRATIONS
from cli.app import app
from core.database import migrate, open_engine
from service.config import ConfigError, load_config, parse_config


def write_config(tmp_path: Path, database: str, extra: str = "") -> Path:
    cfg = tmp_path / "config.toml"
    shared = f'url = "{database}"\n' if "://" in database else ""
    cfg.write_text(f"[database]\n{shared}{extra}[alerts]\ndb_path = {json.dumps(database)}\n", encoding="utf-8")
    return cfg


def db(cfg: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["--config", str(cfg), "db", *args])
    assert result.exit_code == code, result.output
    return result.output


def test_status_and_migrate_bring_the_alert_store_up_to_date(tmp_path: Path, database: str) -> None:
    cfg = write_config(tmp_path, database)
    engine = open_engine(database)
    migrate(engine, COMPONENT, MIGRATIONS[:1])  # a store left at version 1 by an older urbansense
    engine.dispose()
    out = db(cfg, "status", code=1)
    assert "alerts:" in out and "version 1 of 2, 1 migration(s) pending" in out and MIGRATIONS[1].description in out
    assert f"alerts: applied 2: {MIGRATIONS[1].description}" in db(cfg, "migrate")
    assert "alerts: up to date" in db(cfg, "migrate")
    [row] = [json.loads(line) for line in db(cfg, "status", "--json").splitlines()]
    assert (row["component"], row["version"], row["latest"], row["pending"]) == ("alerts", 2, 2, [])
    if "://" in database:  # the password never shows
        password = database.split(":")[2].split("@")[0]
        assert password not in out and password not in row["where"] and "***" in row["where"]


def test_status_of_a_file_not_created_yet_creates_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, str(tmp_path / "later.sqlite"))
    assert "not created yet" in db(cfg, "status")
    assert not (tmp_path / "later.sqlite").exists()


def test_an_unreachable_database_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "postgresql://city:s3cret-pw@127.0.0.1:1/urban")
    out = db(cfg, "status", code=2)
    assert "database unreachable" in out and "s3cret-pw" not in out


def test_a_start_with_migrations_off_refuses_a_store_that_is_behind(tmp_path: Path, database: str) -> None:
    cfg = load_config(write_config(tmp_path, database, "migrate_on_start = false\n"), environ={})
    engine = open_engine(database)
    migrate(engine, COMPONENT, MIGRATIONS[:1])
    engine.dispose()
    with pytest.raises(AlertsError, match="urbansense db migrate"):
        AlertsRuntime(cfg.alerts, {}.get, db_path=cfg.alerts_database(),
                      migrate_schema=cfg.database.migrate_on_start)


def test_the_database_url_is_postgresql_and_stays_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database.url.*postgresql://") as err:
        parse_config({"database": {"url": "mysql://root:hunter2@db/x"}})
    assert "hunter2" not in str(err.value)
    cfg = parse_config({}, environ={"URBANSENSE_DATABASE_URL": "postgresql://u:pw-from-env@db:5432/city"})
    assert cfg.alerts_database() == "postgresql://u:pw-from-env@db:5432/city"
    assert "pw-from-env" not in str(cfg.model_dump(mode="json"))
    assert parse_config({}).alerts_database() == Path("var/alerts.sqlite")  # the embedded default
