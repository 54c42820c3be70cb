"""`urbansense db copy-from-sqlite` (QA F5): a single machine's SQLite files — registry with its audit chain,
dead letters, alert store with an open alert, its silence and the operators' audit — go into the shared
PostgreSQL database in one command with progress and a summary; run again it copies nothing twice (only
what is new), and a database holding a different registry is refused. PostgreSQL is the target, so no
SQLite variant."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from alerts.config import AlertsConfig
from alerts.matchers import Matcher
from alerts.runtime import AlertsRuntime
from alerts.store import AlertStore
from cli.app import app
from core.device import Device
from core.transition import AlertState, AlertTransition, Severity
from provisioning.registry import Registry
from storage.deadletter import DeadLetter, DeadLetterStore

T0 = 1_790_000_000_000_000_000


def gauge(i: int) -> Device:
    return Device(f"WL-{i}", f"24e12471000002{i:02d}", "milesight-em500-udl", "water_level", 39.9, 116.4,
                  f"朝阳区 {i} 号", "朝阳", install={"mount_height_mm": 2000.0})


def letter(i: int) -> DeadLetter:
    return DeadLetter(T0 + i, "lorawan", "application/1/device/x/event/up", bytes([i % 256, 0, 255]),
                      "bad_json", f"line {i}", device_key="24e1247100000299")


def copy(cfg: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["--config", str(cfg), "db", "copy-from-sqlite", *args])
    assert result.exit_code == code, result.output
    return result.output


def test_a_machine_s_sqlite_files_move_into_postgresql_once(tmp_path: Path, pg_dsn: str) -> None:
    reg_file, dl_file, alerts_file = tmp_path / "registry.sqlite", tmp_path / "dl.sqlite", tmp_path / "alerts.sqlite"
    with Registry(reg_file) as reg:
        reg.add(gauge(1), by="field team")
        reg.add(gauge(2), by="field team")
        reg.update("WL-2", by="field team", street="建国路")
    with DeadLetterStore(dl_file) as dl:
        dl.add_many(letter(i) for i in range(2500))
    alerts = AlertsRuntime(AlertsConfig(), lambda _id: None, db_path=alerts_file, clock=lambda: T0)
    alerts.handle(AlertTransition("water.depth", "WL-1", AlertState.PENDING, AlertState.FIRING, Severity.CRITICAL,
                                  T0, 320.0, 270.0, "emergency", "水深 32 cm"))
    alerts.manager.silence([Matcher("district", "=", "朝阳")], T0, T0 + 3600 * 10**9, "泵车已到位", "wang")
    alerts.store.add_audit(T0, "wang", "login", detail="from 127.0.0.1")
    alerts.store.close()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[database]\nurl = "{pg_dsn}"\n[registry]\npath = "{reg_file}"\n'
                   f'[pipeline]\ndead_letter_path = "{dl_file}"\n[alerts]\ndb_path = "{alerts_file}"\n',
                   encoding="utf-8")

    out = copy(cfg)
    assert "registry: 2 devices and 3 audit rows copied; audit chain verified" in out
    assert "dead letters: 1,000 of 2,500" in out and "dead letters: 2,500 of 2,500 (0 already there)" in out
    assert "alerts: alerts: 1 rows" in out and "alerts: silences: 1 rows" in out
    assert "registry: copied" in out and "dead letters: copied" in out and "alerts: copied" in out
    assert pg_dsn.split(":")[2].split("@")[0] not in out  # the password never shows

    with Registry(pg_dsn) as reg:
        assert reg.count() == 2 and reg.verify() == [] and reg.get("WL-2").street == "建国路"
    with DeadLetterStore(pg_dsn) as dl:
        assert sum(dl.count_by_reason().values()) == 2500
        assert dl.list(limit=1)[0].device_key == "24e1247100000299"
    store = AlertStore(pg_dsn)
    try:
        (firing,) = store.firing()
        assert (firing.rule_id, firing.device_id, firing.value) == ("water.depth", "WL-1", 320.0)
        assert store.verify_audit() == (1, [])
        assert [s.comment for s in store.silences()] == ["泵车已到位"]
        # the copied ids are behind PostgreSQL's sequences: new rows do not collide with them
        assert store.add_silence([Matcher("district", "=", "朝阳")], T0, T0 + 1, "next", "li", T0) == 2
        store.add_audit(T0 + 1, "li", "login")
        assert store.verify_audit() == (2, [])
    finally:
        store.close()

    # run again (say after a cut-short run, or with one new dead letter): nothing is copied twice
    with DeadLetterStore(dl_file) as dl:
        dl.add(letter(2500))
    out = copy(cfg)
    assert "registry: already there" in out and "alerts: already there" in out
    assert "dead letters: 2,501 of 2,501 (2,500 already there)" in out and "dead letters 1, already there 2,500" in out
    with DeadLetterStore(pg_dsn) as dl:
        assert sum(dl.count_by_reason().values()) == 2501

    # another machine's registry is not merged into this one
    other = tmp_path / "other.sqlite"
    with Registry(other) as reg:
        reg.add(gauge(3), by="another team")
    out = copy(cfg, "--registry", str(other), code=1)
    assert "registry: the target registry is not empty" in out and "nothing copied" in out


def test_without_a_database_url_it_says_what_to_set(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("", encoding="utf-8")
    assert "set [database] url" in copy(cfg, code=2)
