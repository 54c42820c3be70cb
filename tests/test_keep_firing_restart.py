"""The `keep_firing_for` clock survives a restart: a firing flood alert whose water fell below the clear level
before the service stopped resolves `keep_firing_for` after that fall — not after the next low reading, nor
never when the gauge has gone quiet — even when no history is replayed (warm-up off, or InfluxDB down at
start). The clock is kept in the alert store beside the alert (SQLite file and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from core.device import Device
from core.reading import Reading
from core.transition import AlertState
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.alerting import RulesAndAlerts
from service.config import parse_config

MIN = 60 * 1_000_000_000
T0 = 1_790_000_000 * 1_000_000_000
GAUGE = Device("WL-1", "24e1247100000201", "milesight-em500-udl", "water_level", 39.9, 116.4, "朝阳区 1 号", "朝阳",
               install={"mount_height_mm": 2000.0})
TAGS = (("device_id", "WL-1"),)


def depth(minute: int, mm: float) -> Reading:
    return Reading("WL-1", "water_level", T0 + minute * MIN, {"depth_mm": mm}, TAGS)


def service_rules(database: str, tmp_path: Path) -> RulesAndAlerts:
    where = ({"database": {"url": database}} if "://" in database else
             {"alerts": {"db_path": database}, "registry": {"path": str(tmp_path / "registry.sqlite")}})
    cfg = parse_config({**where, "rules": {"warm_up": False}}, environ={})
    with Registry(cfg.registry_database()) as reg:
        if not reg.count():
            reg.add(GAUGE, by="test")
    return RulesAndAlerts(cfg, RegistryView(cfg.registry_database()))


def water_depth_states(ra: RulesAndAlerts, transitions: list) -> list[AlertState]:
    return [t.to_state for t in transitions if t.rule_id == "water.depth"]


def test_a_running_keep_firing_for_clock_is_restored_after_a_restart(database: str, tmp_path: Path) -> None:
    ra = service_rules(database, tmp_path)
    for r in (depth(0, 200.0), depth(5, 40.0)):  # floods, then the water falls below the 120 mm clear level
        ra.on_reading(r)
    ra.flush()
    assert ra.engine.state_of("water.depth", "WL-1").clear_since_ns == T0 + 5 * MIN
    ra.alerts.close()  # the service stops (or dies) at minute 7, the clock 2 of its 10 minutes in

    ra = service_rules(database, tmp_path)
    try:
        assert ra.restore() == 1
        assert ra.engine.state_of("water.depth", "WL-1").clear_since_ns == T0 + 5 * MIN
        assert water_depth_states(ra, ra.engine.tick(T0 + 14 * MIN)) == []
        (resolved,) = [t for t in ra.engine.tick(T0 + 16 * MIN) if t.rule_id == "water.depth"]
        assert (resolved.to_state, resolved.time_ns) == (AlertState.RESOLVED, T0 + 15 * MIN)
        ra.flush()
        assert ra.alerts.store.clearing() == {}  # resolved: the clock is gone with it
    finally:
        ra.alerts.close()


def test_a_clock_that_stopped_before_the_restart_is_not_put_back(database: str, tmp_path: Path) -> None:
    ra = service_rules(database, tmp_path)
    for r in (depth(0, 200.0), depth(5, 40.0), depth(6, 180.0)):  # fell, then rose again: the clock stopped
        ra.on_reading(r)
    ra.flush()
    ra.alerts.close()
    ra = service_rules(database, tmp_path)
    try:
        ra.restore()
        assert ra.engine.state_of("water.depth", "WL-1").clear_since_ns is None
        assert water_depth_states(ra, ra.engine.tick(T0 + 60 * MIN)) == []  # still firing: the water is up
    finally:
        ra.alerts.close()
