"""Who did it: the registry's audit trail is hash-chained, rows changed behind urbansense's back are
reported and not applied, and `/metrics` can require a bearer token. The registry tests run on a SQLite
file and on PostgreSQL (`database`): there, "behind its back" is `psql`."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from conftest import captured_log
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from typer.testing import CliRunner

from cli.app import app
from core.database import open_engine
from core.device import Device
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.httpserver import MetricsServer

runner = CliRunner()


def gauge(i: int) -> Device:
    return Device(f"WL-{i}", f"24e12471000002{i:02d}", "milesight-em500-udl", "water_level", 39.9, 116.4,
                  f"朝阳区 {i} 号", "朝阳", install={"mount_height_mm": 2000.0})


def verify(where: str) -> tuple[int, str]:
    r = runner.invoke(app, ["audit", "verify", "--registry", where])
    return r.exit_code, r.output


def behind_its_back(where: str, sql: str) -> None:
    """Change the registry's tables directly (what `sqlite3` or `psql` would do), not through urbansense."""
    engine = open_engine(where)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


@pytest.fixture
def errors():  # type: ignore[no-untyped-def]
    with captured_log("ERROR", "{message}") as lines:
        yield lines


def test_a_row_changed_with_sqlite_behind_the_service_is_reported_not_applied(database: str, errors) -> None:
    path = database
    with Registry(path) as reg:
        for i in (1, 2):
            reg.add(gauge(i), by="field team")
    view = RegistryView(path)  # what the running service holds and reloads
    assert view.by_id["WL-1"].district == "朝阳" and not view.tampered
    behind_its_back(path, "UPDATE devices SET district = '海淀', key = '24e1247100000299' WHERE id = 'WL-1'")
    assert view.refresh()
    assert "WL-1" in view.tampered and "WL-2" not in view.tampered
    assert view.by_id["WL-1"].district == "朝阳", "a change made behind urbansense's back must not be applied"
    assert "24e1247100000299" not in view.by_key and view.by_key["24e1247100000201"].id == "WL-1"
    assert any("WL-1" in e and "NOT applied" in e for e in errors)
    code, out = verify(path)
    assert code == 1 and "device WL-1" in out and "outside urbansense" in out
    # a change made through urbansense takes the row over, visibly in the audit, and is applied
    with Registry(path) as reg:
        reg.update("WL-1", district="东城", by="re-survey")
        assert reg.history("WL-1")[-1]["action"] == "update+adopt"
    assert view.refresh() and not view.tampered and view.by_id["WL-1"].district == "东城"
    assert verify(path)[0] == 0
    view.close()


def test_audit_verify_detects_a_deleted_or_edited_audit_row(database: str) -> None:
    path = database
    with Registry(path) as reg:
        for i in (1, 2, 3):
            reg.add(gauge(i))
        reg.update("WL-2", district="东城")
    code, out = verify(path)
    assert code == 0 and "4 audit rows chained" in out, out
    behind_its_back(path, "DELETE FROM audit WHERE seq = 2")
    code, out = verify(path)
    assert code == 1 and "audit seq 3" in out and "missing" in out, out
    behind_its_back(path, "UPDATE audit SET by = 'mayor' WHERE seq = 4")
    code, out = verify(path)
    assert "audit seq 4: row changed after it was written" in out, out
    r = runner.invoke(app, ["audit", "verify", "--registry", path, "--json"])
    doc = json.loads(r.output)
    assert doc["ok"] is False and len(doc["problems"]) >= 3


def test_the_os_user_is_the_actor_and_by_only_a_note(database: str) -> None:
    with Registry(database) as reg:
        reg.add(gauge(1), by="mayor")
        reg.update("WL-1", district="西城", user="desk:li.na")  # the desk console passes its logged-in user
        first, second = reg.history("WL-1")
    assert first["by"] == getpass.getuser() and first["note"] == "mayor"
    assert second["by"] == "desk:li.na" and second["note"] == ""


def test_an_old_registry_is_sealed_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema before tamper evidence, one device and its audit row
        db.executescript("""
            CREATE TABLE devices (id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
              kind TEXT NOT NULL, latitude REAL, longitude REAL, address TEXT NOT NULL DEFAULT '',
              district TEXT NOT NULL DEFAULT '', street TEXT NOT NULL DEFAULT '', zone_class TEXT NOT NULL DEFAULT '',
              site TEXT NOT NULL DEFAULT '', install TEXT NOT NULL DEFAULT '{}',
              expected_interval_s INTEGER NOT NULL DEFAULT 300, status TEXT NOT NULL DEFAULT 'active',
              created_at REAL NOT NULL, updated_at REAL NOT NULL);
            CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, at REAL NOT NULL,
              by TEXT NOT NULL, action TEXT NOT NULL, changes TEXT NOT NULL);
            INSERT INTO devices VALUES ('WL-9', '24e1247100000909', 'milesight-em500-udl', 'water_level', 39.9,
              116.4, '', '朝阳', '', '', '', '{}', 300, 'active', 0, 0);
            INSERT INTO audit(device_id, at, by, action, changes) VALUES ('WL-9', 0, 'tech', 'add', '{}');
        """)
    with Registry(path) as reg:
        assert reg.verify() == [] and reg.get("WL-9").district == "朝阳"


def test_metrics_can_require_a_bearer_token_while_health_stays_open() -> None:
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, ready=lambda: (True, "ok"), token="t0ken-9")
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        r = httpx.get(f"{base}/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer t0ken-9"}).status_code == 200
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200
    finally:
        server.stop()
