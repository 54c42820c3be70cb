"""The device commands against real servers: `show`/`list`/`calibrate` read InfluxDB, `watch` follows the broker,
and the running service picks up registry changes without a restart."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import influx_query
from servicekit import make_config, running, wait_until
from typer.testing import CliRunner

from cli.app import app
from collectors.lorawan import build_chirpstack_event
from core.reading import Reading
from decoders import get_model
from sim.daemons import Daemon
from sim.simulator import Publisher
from storage.deadletter import DeadLetterStore
from storage.lineprotocol import encode_reading

runner = CliRunner()
KEY = "24e124713c210001"
TAGS = (("device_id", "WL-1"), ("district", "朝阳"), ("model", "milesight-em500-udl"))


def config_file(tmp: Path, *, influx: tuple[str, str] | None = None, mqtt_port: int | None = None,
                database: str = "") -> Path:
    """A config file; `database` (the fixture's value) puts the registry in that PostgreSQL when it is a URL."""
    lines = [f'[registry]\npath = "{tmp / "r.sqlite"}"\n']
    if "://" in database:
        lines.append(f'[database]\nurl = "{database}"\n')
    if influx:
        lines.append(f'[influxdb]\nurl = "{influx[0]}"\ndatabase = "{influx[1]}"\n')
    if mqtt_port:
        lines.append(f"[mqtt]\nport = {mqtt_port}\n")
    path = tmp / "config.toml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def dev(cfg: Path, *args: str):
    return runner.invoke(app, ["--config", str(cfg), "device", *args])


def add_water_sensor(cfg: Path, device_id: str = "WL-1", key: str = KEY) -> None:
    r = dev(cfg, "add", device_id, "--deveui", key, "--model", "milesight-em500-udl", "--mount-height-mm", "2000",
            "--district", "朝阳")
    assert r.exit_code == 0, r.output


def write_uplinks(influxd: Daemon, db: str, base_ns: int) -> None:
    """Three stored uplinks of WL-1, a minute apart; frames 12 and 13 were lost before the last."""
    body = b""
    for n, (fcnt, gap, distance) in enumerate(((10, 0, 1900.0), (11, 0, 1850.0), (14, 2, 1700.0))):
        health = {"battery_pct": 88.0 - n, "rssi_dbm": -90.0 - n, "snr_db": 7.5 - n, "fcnt": fcnt, "fcnt_gap": gap}
        body += encode_reading(Reading("WL-1", "water_level", base_ns + n * 60_000_000_000,
                                       {"distance_mm": distance, "depth_mm": 2000.0 - distance}, TAGS, health))
    httpx.post(f"{influxd.url}/write", params={"db": db}, content=body).raise_for_status()


def test_show_reports_last_seen_values_battery_radio_and_lost_frames(tmp_path: Path, influxd: Daemon,
                                                                     influx_db: str) -> None:
    cfg = config_file(tmp_path, influx=(influxd.url, influx_db))
    add_water_sensor(cfg)
    base = time.time_ns() - 10 * 60_000_000_000
    write_uplinks(influxd, influx_db, base)

    live = json.loads(dev(cfg, "show", "WL-1", "--json").output)["live"]
    assert live["last_seen_ns"] == base + 120_000_000_000
    assert live["last_values"] == {"distance_mm": 1700.0, "depth_mm": 300.0}
    assert live["battery_pct"] == 86.0
    assert [(u["rssi_dbm"], u["snr_db"], u["fcnt"]) for u in live["recent"]] == [
        (-92.0, 5.5, 14), (-91.0, 6.5, 11), (-90.0, 7.5, 10)]
    assert (live["uplinks_in_window"], live["missing_frames_in_window"]) == (3, 2)

    text = " ".join(dev(cfg, "show", "WL-1").output.split())
    assert "last seen" in text and "ago" in text
    assert "depth_mm=300" in text and "86 %" in text and "RSSI -92 dBm" in text
    assert "3 received, 2 missing" in text


def test_show_without_influxdb_still_shows_the_registry_row(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, influx=("http://127.0.0.1:9", "nowhere"))
    add_water_sensor(cfg)
    r = dev(cfg, "show", "WL-1")
    assert r.exit_code == 0 and "24e124713c210001" in r.stdout
    assert "live facts unavailable: cannot read InfluxDB" in r.stderr


def test_list_silent_for_more_than_n_minutes(tmp_path: Path, influxd: Daemon, influx_db: str,
        database: str) -> None:
    cfg = config_file(tmp_path, influx=(influxd.url, influx_db), database=database)
    add_water_sensor(cfg)
    add_water_sensor(cfg, "WL-2", "24e124713c210002")
    add_water_sensor(cfg, "WL-3", "24e124713c210003")
    write_uplinks(influxd, influx_db, time.time_ns() - 4 * 60_000_000_000)  # WL-1 last seen 2 min ago
    old = Reading("WL-3", "water_level", time.time_ns() - 3600_000_000_000, {"distance_mm": 1900.0},
                  (("device_id", "WL-3"),))
    httpx.post(f"{influxd.url}/write", params={"db": influx_db}, content=encode_reading(old)).raise_for_status()

    silent = [json.loads(x) for x in dev(cfg, "list", "--silent-min", "30", "--json").output.splitlines()]
    assert [d["id"] for d in silent] == ["WL-2", "WL-3"]
    assert silent[0]["last_seen_ns"] is None and silent[1]["last_seen_ns"] == old.time_ns
    r = dev(cfg, "list", "--silent-min", "90")
    assert "WL-2" in r.output and "WL-3" not in r.output and "1 devices" in r.output


def test_calibrate_from_the_last_reported_distance(tmp_path: Path, influxd: Daemon, influx_db: str,
        database: str) -> None:
    cfg = config_file(tmp_path, influx=(influxd.url, influx_db), database=database)
    add_water_sensor(cfg)
    write_uplinks(influxd, influx_db, time.time_ns() - 10 * 60_000_000_000)
    r = dev(cfg, "calibrate", "WL-1", "--from-last", "--by", "zhang.wei")
    assert r.exit_code == 0, r.output
    assert json.loads(dev(cfg, "show", "WL-1", "--json", "--no-live").output)["install"] == {"mount_height_mm": 1700.0}
    last = json.loads(dev(cfg, "history", "WL-1", "--json").output.splitlines()[-1])
    assert last["action"] == "calibrate" and last["changes"]["source"].startswith("last reported distance at")


def test_watch_prints_the_devices_uplink_published_to_the_broker(tmp_path: Path, mosquitto: Daemon) -> None:
    cfg = config_file(tmp_path, mqtt_port=mosquitto.port)
    add_water_sensor(cfg)
    info = get_model("milesight-em500-udl")
    payload, port = info.codec.encode({**info.sample(random.Random(3)), "distance_mm": 1500.0})
    expected = info.codec.decode(payload, port).fields
    command = [str(Path(sys.executable).parent / "urbansense"), "--config", str(cfg), "device", "watch", "WL-1",
               "--count", "1", "--timeout", "30"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("watching WL-1"), first + proc.stderr.read() if proc.stderr else ""
        pub = Publisher("127.0.0.1", mosquitto.port)
        now = time.time_ns()
        other = build_chirpstack_event("24e124713c2100ff", payload, port, 1, now, [("a840410000000001", -80, 9.0)])
        mine = build_chirpstack_event(KEY, payload, port, 42, now, [("a840410000000001", -97, 7.5),
                                                                    ("a840410000000002", -110, -3.0)])
        pub.publish(*other)
        pub.publish(*mine)
        pub.close()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "fcnt 42" in lines[0] and "RSSI -97 dBm" in lines[0] and "SNR 7.5 dB" in lines[0]
    assert "gateways 2" in lines[0] and "depth_mm=500" in lines[0]
    assert f"distance_mm={expected['distance_mm']:g}" in lines[0]


def test_running_service_stores_a_new_devices_uplink_and_dead_letters_a_retired_ones(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database)
    reg = ["--registry", str(cfg.registry_database())]
    info = get_model("milesight-em500-udl")
    payload, port = info.codec.encode({**info.sample(random.Random(5)), "distance_mm": 1500.0})
    fcnt = iter(range(1000))
    stored = "SELECT count(depth_mm) FROM water_level WHERE device_id = 'NEW-1'"

    def publish_one(pub: Publisher) -> None:
        pub.publish(*build_chirpstack_event(KEY, payload, port, next(fcnt), time.time_ns(),
                                            [("a840410000000001", -97, 7.5)]))

    def count() -> int:
        series = influx_query(influxd, influx_db, stored)
        return series[0]["values"][0][1] if series else 0

    with running(cfg):
        pub = Publisher("127.0.0.1", mosquitto.port)
        r = runner.invoke(app, ["device", "add", "NEW-1", "--deveui", KEY, "--model", "milesight-em500-udl",
                                "--mount-height-mm", "2000", *reg])
        assert r.exit_code == 0, r.output
        deadline = time.monotonic() + 10
        while count() == 0 and time.monotonic() < deadline:
            publish_one(pub)
            time.sleep(0.3)
        assert count() > 0, "the new device's uplinks were not stored within 10 s"

        assert runner.invoke(app, ["device", "retire", "NEW-1", *reg]).exit_code == 0

        def retired_dead_lettered() -> bool:
            publish_one(pub)
            with DeadLetterStore(cfg.dead_letter_database()) as store:
                return store.count_by_reason().get("retired_device", 0) > 0
        wait_until(retired_dead_lettered, 10, "a retired device's uplink in the dead-letter store")
        pub.close()
    with DeadLetterStore(cfg.dead_letter_database()) as store:
        assert store.list(reason="retired_device")[0].device_key == KEY
