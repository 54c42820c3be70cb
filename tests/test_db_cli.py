"""`urbansense db status|migrate` on the configured shared state (a SQLite file or [database] PostgreSQL),
and the service's start against a schema that is behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.errors import AlertsError
from alerts.runtime import AlertsRuntime
from alerts.schema import COMPONENT, MIGRATIONS
from cli.app import app
from core.database import DatabaseError, describe_url, migrate, open_engine
from provisioning.schema import COMPONENT as REGISTRY
from provisioning.schema import MIGRATIONS as REGISTRY_MIGRATIONS
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
    assert "alerts:" in out and "version 1 of 4, 3 migration(s) pending" in out and MIGRATIONS[1].description in out
    done = db(cfg, "migrate")
    assert f"alerts: applied 2: {MIGRATIONS[1].description}" in done
    assert f"alerts: applied 3: {MIGRATIONS[2].description}" in done
    assert f"alerts: applied 4: {MIGRATIONS[3].description}" in done
    assert "alerts: up to date" in db(cfg, "migrate")
    rows = {r["component"]: r for r in map(json.loads, db(cfg, "status", "--json").splitlines())}
    row = rows["alerts"]
    assert (row["component"], row["version"], row["latest"], row["pending"]) == ("alerts", 4, 4, [])
    assert [(rows[c]["version"], rows[c]["pending"]) for c in ("registry", "deadletters")] == [(2, []), (1, [])]
    if "://" in database:  # the password never shows
        password = database.split(":")[2].split("@")[0]
        assert password not in out and password not in row["where"] and "***" in row["where"]


def test_status_of_a_file_not_created_yet_creates_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, str(tmp_path / "later.sqlite"))
    assert "not created yet" in db(cfg, "status")
    assert not (tmp_path / "later.sqlite").exists()


def test_an_unreachable_database_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "postgresql://city:s3cret-pw@127.0.0.1:1/urban")
    out = db(cfg, "status", code=1)  # qa2 F2: a server unreachable is a failure (1), not a usage error (2)
    assert "database unreachable" in out and "s3cret-pw" not in out


def test_a_refusing_database_exits_1_from_every_command_that_opens_it(tmp_path: Path, pg_dsn: str) -> None:
    """qa2 F2: a wrong password (the server refuses) exits 1, as README "Exit codes" says of a server
    unreachable, from `db`, `device` and `deadletter` alike; 2 stays for usage errors."""
    wrong = pg_dsn.replace("://urbansense:", "://urbansense:not-the-password-x", 1)
    assert wrong != pg_dsn
    cfg = write_config(tmp_path, wrong)
    for args in (["db", "status"], ["db", "migrate"], ["device", "list"], ["deadletter", "list"]):
        result = CliRunner().invoke(app, ["--config", str(cfg), *args])
        assert result.exit_code == 1, (args, result.output)
        assert "not-the-password-x" not in result.output and "password authentication failed" in result.output


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


def test_cli_commands_never_migrate_a_store_that_is_behind_only_db_migrate_does(tmp_path: Path, database: str) -> None:
    """qa2 F3: `device list` silently upgraded an older registry (and, on a shared PostgreSQL, the schema under an
    older urbansense still running elsewhere). CLI commands refuse a store that is behind, naming `urbansense db
    migrate`, and leave it as it was; a store not made yet is still created (a first `device add`)."""
    engine = open_engine(database)
    migrate(engine, REGISTRY, REGISTRY_MIGRATIONS[:1])  # a registry an older urbansense left at version 1
    engine.dispose()
    cfg = tmp_path / "config.toml"
    where = f'[database]\nurl = "{database}"\n' if "://" in database else f'[registry]\npath = "{database}"\n'
    cfg.write_text(where, encoding="utf-8")
    for args in (["device", "list"], ["device", "show", "WL-1"], ["audit", "verify"]):
        result = CliRunner().invoke(app, ["--config", str(cfg), *args])
        assert result.exit_code == 1, (args, result.output)
        assert "registry schema is 1 version(s) behind" in result.output and "urbansense db migrate" in result.output
    rows = {r["component"]: r for r in map(json.loads, db(cfg, "status", "--json", code=1).splitlines())}
    assert rows["registry"]["version"] == 1  # untouched
    assert "registry: applied 2" in db(cfg, "migrate")
    assert CliRunner().invoke(app, ["--config", str(cfg), "device", "list"]).exit_code == 0

    fresh = tmp_path / "new" / "registry.sqlite"  # not made yet: a first `device add` makes it
    result = CliRunner().invoke(app, ["device", "add", "WL-1", "--key", "24e124713c210001", "--model",
                                      "milesight-em500-udl", "--mount-height-mm", "2000", "--registry", str(fresh)])
    assert result.exit_code == 0, result.output


def test_a_password_with_a_bare_at_sign_is_refused_with_the_fix_and_never_shown(tmp_path: Path) -> None:
    """QA F1: libpq reads 'postgresql://city:se@cret@db/x' as host 'cret@db' and prints it in its error;
    such a URL is refused before any connection, in the config and on the command line, with the fix."""
    url = "postgresql://city:se@cret-9@127.0.0.1:1/urban"
    with pytest.raises(ConfigError, match="%40") as err:
        parse_config({"database": {"url": url}})
    assert "cret-9" not in str(err.value)
    with pytest.raises(DatabaseError, match="percent-encode") as bad:
        open_engine(url)
    assert "cret-9" not in str(bad.value) and "cret-9" not in describe_url(url)
    r = CliRunner().invoke(app, ["audit", "verify", "--registry", url])
    assert r.exit_code == 2 and "%40" in r.output and "cret-9" not in r.output
    encoded = "postgresql://city:se%40cret-9@127.0.0.1:1/urban"
    assert parse_config({"database": {"url": encoded}}).registry_database() == encoded


def test_a_command_without_its_own_handler_says_the_store_is_behind_in_one_line(tmp_path: Path) -> None:
    """qa2 F3, continued: `simulate` (like `report`, `rules check`) met a registry that is behind with a traceback;
    the command's entry point turns it into one line naming `urbansense db migrate`, exit 1."""
    registry = tmp_path / "registry.sqlite"
    engine = open_engine(str(registry))
    migrate(engine, REGISTRY, REGISTRY_MIGRATIONS[:1])
    engine.dispose()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[registry]\npath = "{registry}"\n', encoding="utf-8")
    out = subprocess.run([str(Path(sys.executable).parent / "urbansense"), "--config", str(cfg), "simulate",
                          "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("error: the registry schema is 1 version(s) behind") and "urbansense db migrate" \
        in out.stderr and "Traceback" not in out.stderr, out.stderr
