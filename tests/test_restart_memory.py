"""Restarts that remember: alerts firing before a kill -9 resolve after the restart, and their cases close.

Gauges report every 20 minutes, so after the restart no stored reading is recent enough for
the rules' warm-up ("0 stored readings"): only the alert store knows the alerts fire.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from servicekit import wait_until, write_run_config
from test_alerting_e2e import MIN, Fleet, accepted

from alerts.testing import RecordingServer
from core.device import Device
from core.reading import Reading
from core.transition import AlertState, Severity
from rules.engine import Engine
from rules.loader import load_rules
from rules.machine import RestoredAlert
from sim.daemons import Daemon, DaemonError, free_port, wait_http_ok

CLI = str(Path(sys.executable).parent / "urbansense")
GAUGES = [Device(f"WL-R-{i}", f"24e12471000001{i:02d}", "milesight-em500-udl", "water_level", 39.92 + i / 100,
                 116.44, f"朝阳区 下穿桥 R{i}", "朝阳", "建外街道", install={"mount_height_mm": 2000.0},
                 expected_interval_s=1200) for i in range(1, 6)]


def _config(tmp: Path, mosquitto: Daemon, influxd: Daemon, db: str, metrics_port: int, cases_url: str) -> Path:
    """The config, with the five gauges registered."""
    return write_run_config(
        tmp, mosquitto, influxd, db, metrics_port, client_id="restart-memory", devices=GAUGES,
        registry={"path": str(tmp / "registry.sqlite"), "reload_interval_s": 0.5},
        pipeline={"dead_letter_path": str(tmp / "deadletter.sqlite")}, spool={"path": str(tmp / "spool")},
        rules={"tick_interval_s": 0.5},
        alerts={"db_path": str(tmp / "alerts.sqlite"), "default_receivers": ["cases"]},
        **{"alerts.receivers.cases": {"type": "case_platform", "url": cases_url},
           "alerts.outbox": {"base_delay_s": 0.2, "poll_interval_s": 0.2, "jitter": 0.0}})


def _start(cfg: Path, log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([CLI, "--config", str(cfg), "run"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http_ok(f"http://127.0.0.1:{metrics_port}/readyz", 60, proc=proc, log=log)
    except DaemonError:
        proc.kill()
        raise
    return proc


def test_kill_9_with_5_flood_alerts_firing_then_water_falls_resolves_all_and_closes_5_cases(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    metrics_port = free_port()
    log = tmp_path / "service.log"
    with RecordingServer() as cases:
        cfg = _config(tmp_path, mosquitto, influxd, influx_db, metrics_port, cases.url)
        base = time.time_ns() - 60 * MIN
        fleet = Fleet(mosquitto.port)
        proc = _start(cfg, log, metrics_port)
        try:
            for i, d in enumerate(GAUGES):  # 200 mm: waterlogged, a case for each gauge
                fleet.send(d, base + i * 1000, distance_mm=1800.0)
            assert fleet.pub.flush(30)
            wait_until(lambda: len({b["device_id"] for b in accepted(cases, "water.depth")
                                    if b["action"] == "open"}) == 5, 60, "5 cases opened")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)

        proc = _start(cfg, log, metrics_port)
        try:
            for minute in (20, 40):  # the water falls; 20-minute reports, keep_firing_for 10 min passes
                for i, d in enumerate(GAUGES):
                    fleet.send(d, base + minute * MIN + i * 1000, distance_mm=1970.0)
            assert fleet.pub.flush(30)
            wait_until(lambda: len({b["device_id"] for b in accepted(cases, "water.depth")
                                    if b["action"] == "close"}) == 5, 60, "5 cases closed")
            time.sleep(1.0)  # a duplicate would arrive now
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        fleet.pub.close()
    text = log.read_text()
    assert "5 firing or pending alerts restored" in text
    # the outbox delivers at least once: an open sent just before the kill -9 is sent again after it, with the
    # same Idempotency-Key, which the platform uses to take it once; by key, one open and one close per gauge
    once = {r.headers["idempotency-key"]: r.json for r in cases.accepted if r.json.get("rule_id") == "water.depth"}
    for d in GAUGES:
        actions = [b["action"] for b in once.values() if b["device_id"] == d.id]
        assert actions == ["open", "close"], (d.id, actions)


def _water_engine() -> Engine:
    engine = Engine([r for r in load_rules([]) if r.id == "water.depth"])
    engine.set_devices([Device(id="w1", key="k", model="acme-radar", kind="water_level", district="haidian",
                               expected_interval_s=1200)])
    return engine


def test_history_after_the_last_stored_transition_resolves_a_restored_alert() -> None:
    t0 = 1_720_000_000 * 1_000_000_000
    tags = (("device_id", "w1"),)
    engine = _water_engine()
    fired = RestoredAlert("water.depth", "w1", AlertState.FIRING, Severity.WARNING, t0, t0)
    assert engine.restore([fired]) == 1
    # history: the reading that fired it (already in the store), then the water fell before the kill
    history = [Reading("w1", "water_level", t0 + m * MIN, {"depth_mm": d}, tags)
               for m, d in ((0, 200.0), (5, 40.0), (16, 30.0))]
    moved = engine.warm_up(history)
    assert [(t.rule_id, t.to_state) for t in moved] == [("water.depth", AlertState.RESOLVED)]
    # a fresh engine with the same restore but no history keeps firing until a low reading
    engine = _water_engine()
    engine.restore([fired])
    assert engine.warm_up([]) == []
    assert engine.state_of("water.depth", "w1").state is AlertState.FIRING
