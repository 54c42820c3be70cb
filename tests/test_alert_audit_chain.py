"""The operators' audit trail (desk logins, lockouts, acks, silences) is hash-chained like the registry's:
a line changed or deleted behind urbansense's back (`sqlite3`, `psql`) is reported by `urbansense audit
verify`, and the lines of a store written before the chain existed are sealed when it is migrated. On a
SQLite file and on PostgreSQL (`database`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from alerts.schema import COMPONENT, MIGRATIONS
from alerts.store import AlertStore
from cli.app import app
from core.database import migrate, open_engine

runner = CliRunner()


def verify(registry: str, alerts_db: str) -> tuple[int, str]:
    r = runner.invoke(app, ["audit", "verify", "--registry", registry, "--alerts-db", alerts_db])
    return r.exit_code, r.output


def behind_its_back(where: str, sql: str) -> None:
    engine = open_engine(where)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


def test_console_audit_lines_are_chained_and_tampering_is_reported(database: str, tmp_path: Path) -> None:
    registry = database if database.startswith("postgresql") else str(tmp_path / "registry.sqlite")
    store = AlertStore(database)
    try:
        store.add_audit(1_700_000_000_000_000_000, "wang", "login", detail="from 127.0.0.1")
        store.add_audit(1_700_000_001_000_000_000, "wang", "ack", "water.rising WL-1 (ab12)", "去现场\x00看看")
        store.add_audit(1_700_000_002_000_000_000, "wang", "silence", "noise.zone_limit N-3 (cd34)", "60 min: 施工")
        assert store.verify_audit() == (3, [])
    finally:
        store.close()
    code, out = verify(registry, database)
    assert code == 0 and "operators' audit trail intact: 3 rows chained" in out, out

    behind_its_back(database, "UPDATE alert_audit SET detail = '60 min: nothing' WHERE seq = 3")
    code, out = verify(registry, database)
    assert code == 1 and "alert audit seq 3: row changed after it was written" in out, out

    behind_its_back(database, "DELETE FROM alert_audit WHERE seq = 2")
    code, out = verify(registry, database)
    assert code == 1 and "alert audit seq 3: rows 2..2 are missing (deleted)" in out, out
    assert "alert audit seq 3: chain broken" in out


def test_lines_written_before_the_chain_are_sealed_by_the_migration(tmp_path: Path) -> None:
    db = tmp_path / "alerts.sqlite"
    engine = open_engine(db)
    migrate(engine, COMPONENT, MIGRATIONS[:2])  # the store of the release before
    with engine.begin() as conn:
        for i, action in enumerate(("login", "ack")):
            conn.execute(text('INSERT INTO alert_audit (time_ns, "user", action, target, detail) '
                              "VALUES (:t, 'li', :a, '', '')"), {"t": i, "a": action})
    engine.dispose()
    store = AlertStore(db)  # migrates to the chained schema
    try:
        assert store.verify_audit() == (2, [])
        store.add_audit(5, "li", "logout")
        assert store.verify_audit() == (3, [])
        assert [r["action"] for r in store.audit()] == ["logout", "ack", "login"]
    finally:
        store.close()
    behind_its_back(str(db), "UPDATE alert_audit SET \"user\" = 'zhao' WHERE seq = 1")
    code, out = verify(str(tmp_path / "registry.sqlite"), str(db))
    assert code == 1 and "alert audit seq 1: row changed" in out, out
