"""`urbansense demo`: every alert reaches a receiver (qa3 F1), and a run on the folder of an earlier one
starts dry instead of showing that run's flood alerts as live (qa3 F2)."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from alerts.routing import Router
from alerts.runtime import AlertsRuntime
from alerts.store import AlertStore
from cli.app import app
from core.transition import AlertState, AlertTransition, Severity
from rules.loader import load_rules
from service.app import default_ingest_id
from service.config import load_config
from service.desk.auth import hash_password
from service.ingest_lock import IngestIdLock
from sim.daemons import Daemon
from sim.demo import DEMO_CONFIG, DEMO_RULES, clear_previous_run

S = 1_000_000_000
HASH = hash_password("demo-password")


def demo_config(tmp_path: Path, influx_url: str = "http://127.0.0.1:1", database: str = "urbansense") -> Path:
    path = tmp_path / "config.toml"
    (tmp_path / "rules.toml").write_text(DEMO_RULES, encoding="utf-8")
    path.write_text(DEMO_CONFIG.format(mqtt_port=1883, influx_url=influx_url, mosquitto_conf="m.conf", desk_port=0,
                                       demo_hash=HASH, receiver_url="http://127.0.0.1:9", database=database),
                    encoding="utf-8")
    return path


def test_every_alert_the_demo_can_raise_is_routed_to_one_of_its_loopback_receivers(tmp_path: Path) -> None:
    cfg = load_config(demo_config(tmp_path))
    router = Router(cfg.alerts.routes, cfg.alerts.default_receivers)
    rules = load_rules([cfg.path(f) for f in cfg.rules.files], include_presets=cfg.rules.presets)
    untold = [(r.id, str(level.severity)) for r in rules for level in r.levels
              if not router.receivers(route=level.route, rule_id=r.id, severity=str(level.severity), labels={})]
    assert untold == []  # none says "no receiver routed: nobody was told"
    receivers = cfg.alerts.receivers
    assert {receivers[n].type for n in router.receivers(route="emergency", rule_id="water.depth",
                                                        severity="critical", labels={})} == {"case_platform",
                                                                                              "webhook"}
    for r in receivers.values():
        assert httpx.URL(r.url.get_secret_value()).host == "127.0.0.1"  # the demo's own server, loopback only
    by_id = {r.id: r for r in rules}  # the demo's compressed storm gets trend rules on its own clock
    assert by_id["water.rising"].window_s == 120 and by_id["water.rising"].min_span_s == 20


def test_a_second_run_starts_dry(tmp_path: Path, influxd: Daemon, influx_db: str) -> None:
    cfg = load_config(demo_config(tmp_path, influxd.url, influx_db))
    now = 1_764_547_200 * S
    # the first run's storm left a 28.5 cm alert firing, its reading in InfluxDB and a batch in the spool
    runtime = AlertsRuntime(cfg.alerts, lambda _: None, db_path=cfg.alerts_database(), base_dir=cfg.base_dir)
    runtime.handle_many([AlertTransition(rule_id="water.depth", device_id="WL-003", from_state=AlertState.INACTIVE,
                                         to_state=AlertState.FIRING, severity=Severity.CRITICAL, time_ns=now,
                                         value=285.0, threshold=270.0, route="emergency", summary="", eta_s=None,
                                         labels=(("kind", "water_level"),))])
    runtime.close()
    httpx.post(f"{influxd.url}/query", params={"q": f'CREATE DATABASE "{influx_db}"'}).raise_for_status()
    httpx.post(f"{influxd.url}/write", params={"db": influx_db},
               content=f"water_level,device_id=WL-003 depth_mm=285 {now}").raise_for_status()
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "00000001.seg").write_bytes(b"water_level,device_id=WL-003 depth_mm=285\n")

    assert clear_previous_run(tmp_path, influxd.url, influx_db) is True
    store = AlertStore(cfg.alerts_database())
    try:
        assert store.list_alerts(states=("firing", "pending"), limit=100) == []  # nothing to restore
    finally:
        store.close()
    assert not (tmp_path / "spool").exists()
    shown = httpx.get(f"{influxd.url}/query", params={"q": "SHOW DATABASES"}).json()["results"][0]["series"][0]
    assert [influx_db] not in shown.get("values", [])  # nothing to warm up from
    assert (tmp_path / "config.toml").exists() and (tmp_path / "rules.toml").exists()
    assert clear_previous_run(tmp_path / "new", influxd.url, influx_db) is False  # a first run: nothing to say


def test_check_config_warns_when_alerts_would_reach_nobody(tmp_path: Path) -> None:
    bare = tmp_path / "bare.toml"
    bare.write_text('[alerts]\ndb_path = "alerts.sqlite"\n', encoding="utf-8")
    out = CliRunner().invoke(app, ["--config", str(bare), "check-config"], terminal_width=400)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "warning: alerts: no receiver takes route 'emergency' (water.depth, water.rising): such alerts are " \
           "recorded and shown on the desk, but nobody is told" in text
    demo = CliRunner().invoke(app, ["--config", str(demo_config(tmp_path)), "check-config"], terminal_width=400)
    assert demo.exit_code == 0 and "nobody is told" not in demo.output, demo.output


def test_a_demo_on_a_folder_where_one_runs_clears_nothing_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "alerts.sqlite").write_bytes(b"the running demo's alert store")
    running = IngestIdLock(tmp_path / "spool", default_ingest_id())  # as the running demo's service holds it
    try:
        out = CliRunner().invoke(app, ["demo", "--data", str(tmp_path), "--duration", "1"], terminal_width=400)
    finally:
        running.release()
    assert out.exit_code == 1, out.output
    text = " ".join(out.output.split())
    assert "is already running on this machine" in text and f"urbansense demo --data {tmp_path}" in text
    assert (tmp_path / "alerts.sqlite").read_bytes() == b"the running demo's alert store"
