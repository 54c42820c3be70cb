"""End to end on a real Mosquitto and a real influxd: uplinks in, exactly the right points out."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import influx_query
from servicekit import make_config, recent_ns, running, wait_until

from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.lorawan.tts import build_tts_uplink
from core.device import Device
from provisioning.registry import Registry
from service.config import load_config
from sim.daemons import Daemon, start_influxd
from sim.simulator import FleetSimulator, Publisher, Scenario, SimUplink, demo_fleet
from storage.deadletter import DeadLetterStore

KINDS = ("noise", "dust", "bin_fill", "parking", "water_level")


def stored_points(influxd: Daemon, db: str) -> dict[tuple[str, int], dict]:
    """Every stored reading keyed by (device_id, time_ns), across the five kind measurements."""
    out: dict[tuple[str, int], dict] = {}
    for kind in KINDS:
        for series in influx_query(influxd, db, f'SELECT * FROM "{kind}"'):
            cols = series["columns"]
            for row in series["values"]:
                rec = {c: v for c, v in zip(cols, row, strict=True) if v is not None}
                key = (rec["device_id"], rec["time"])
                assert key not in out, f"two points for {key}"
                out[key] = {**rec, "_kind": kind}
    return out


def provision(path: Path, devices: list[Device]) -> None:
    with Registry(path) as reg:
        for d in devices:
            reg.add(d, by="test")


def test_10000_uplinks_become_exactly_10000_points_and_replay_adds_none(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    """SQLite only: its PostgreSQL variant took 37 s and shows nothing more (the registry is only read)."""
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db)
    devices = demo_fleet({k: 20 for k in KINDS})
    assert len(devices) == 100
    provision(cfg.registry_database(), devices)
    sim = FleetSimulator(devices, Scenario("rainstorm", ("朝阳",), ramp_s=100), seed=7)
    t0 = recent_ns()
    uplinks: list[SimUplink] = []
    for r in range(100):
        uplinks.extend(sim.round(float(r), t0 + r * 1_000_000_000))
    assert len(uplinks) == 10_000

    with running(cfg) as svc:
        pub = Publisher("127.0.0.1", mosquitto.port)
        for u in uplinks:
            pub.publish(u.topic, u.event)
        assert pub.flush(60)
        wait_until(lambda: svc.pipeline.stats.readings >= 10_000, 120, "10,000 readings written")
        points = stored_points(influxd, influx_db)
        assert len(points) == 10_000
        for u in uplinks:
            rec = points[(u.device.id, u.time_ns)]
            assert rec["_kind"] == u.device.kind
            for name, value in u.expected.items():
                assert rec[name] == value, f"{u.device.id} {name}: stored {rec[name]!r}, sent {value!r}"
            assert rec["model"] == u.device.model and rec["district"] == u.device.district
        # derivations were applied: a flooded water gauge reports depth = mount height - distance
        flooded = [u for u in uplinks if u.device.kind == "water_level" and u.expected.get("depth_mm", 0) > 100]
        assert flooded, "the rainstorm raised no water"
        for u in flooded:
            if "distance_mm" in u.expected:
                assert u.expected["depth_mm"] == pytest.approx(2000.0 - u.expected["distance_mm"])

        # the same uplinks again: redelivery overwrites, never duplicates
        for u in uplinks:
            pub.publish(u.topic, u.event)
        assert pub.flush(60)
        pub.close()
        wait_until(lambda: svc.pipeline.stats.readings >= 20_000, 120, "the replay to be written")
        again = stored_points(influxd, influx_db)
        assert again == points
        health = influx_query(influxd, influx_db, 'SELECT count("rssi_dbm") FROM "device_health"')
        assert health[0]["values"][0][1] == 10_000


def test_bad_input_is_counted_and_dead_lettered_and_good_data_around_it_is_stored(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database)
    weird = 'a,b=c d"e\nf\\g'
    devices = demo_fleet({"water_level": 3, "noise": 2})
    devices[0] = replace(devices[0], district=weird)
    provision(cfg.registry_database(), devices)
    sim = FleetSimulator(devices, Scenario("calm"), seed=3)
    t0 = recent_ns()
    good = [u for r in range(20) for u in sim.round(float(r), t0 + r * 1_000_000_000)]

    tr_topic, tr_event = build_chirpstack_event(devices[1].key, b"\x01", 85, 1, t0 + 5, [("a" * 16, -80.0, 5.0)],
                                                "00000000-0000-0000-0000-000000000001")
    unknown_topic, unknown_event = build_chirpstack_event("ffffffffffffff01", b"\x01\x75\x5c", 85, 1, t0 + 6,
                                                          [("a" * 16, -80.0, 5.0)],
                                                          "00000000-0000-0000-0000-000000000002")
    bad_b64 = orjson.loads(good[0].event)
    bad_b64["data"] = "!!!not base64!!!"
    bad = [
        (good[0].topic, b'{"deviceInfo": {"devEui": '),            # malformed JSON
        (good[0].topic, orjson.dumps(bad_b64)),                    # bad base64
        (unknown_topic, unknown_event),                            # unknown DevEUI
        (tr_topic, tr_event),                                      # truncated payload
    ]
    with running(cfg) as svc:
        pub = Publisher("127.0.0.1", mosquitto.port)
        for i, u in enumerate(good):
            pub.publish(u.topic, u.event)
            if i % 20 == 5 and bad:
                pub.publish(*bad.pop())
        assert not bad
        assert pub.flush(30)
        pub.close()
        wait_until(lambda: svc.pipeline.stats.received >= len(good) + 4, 60, "every message to be processed")
        wait_until(lambda: svc.pipeline.stats.readings >= len(good), 60, "the good readings")
        stats = svc.pipeline.stats
        assert svc.collector("lorawan").consumer.connected
        metrics = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics").text
        for reason in ("bad_json", "bad_base64", "unknown_device", "decode_error"):
            assert stats.rejected.get(reason) == 1, (reason, stats.rejected)
            assert f'urbansense_uplinks_rejected_total{{reason="{reason}"}} 1.0' in metrics
    points = stored_points(influxd, influx_db)
    assert len(points) == len(good)
    assert {(u.device.id, u.time_ns) for u in good} == set(points)
    weird_rows = [p for p in points.values() if p["device_id"] == devices[0].id]
    assert weird_rows and all(p["district"] == weird.replace("\n", " ") or p["district"] == weird
                              for p in weird_rows)
    store = DeadLetterStore(cfg.dead_letter_database())
    letters = store.list(limit=100)
    assert sorted(d.reason for d in letters) == ["bad_base64", "bad_json", "decode_error", "unknown_device"]
    assert any(d.payload == b'{"deviceInfo": {"devEui": ' for d in letters)


def test_the_things_stack_uplinks_are_stored(tmp_path: Path, mosquitto: Daemon, influxd: Daemon,
                                             influx_db: str, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database, lorawan={"tts": True})
    devices = demo_fleet({"noise": 1})
    provision(cfg.registry_database(), devices)
    sim = FleetSimulator(devices, Scenario("calm"))
    fields = sim.fields_for(devices[0], 0.0)
    payload, port = sim.model(devices[0]).codec.encode(fields)
    t = recent_ns() + 123_456_789
    topic, body = build_tts_uplink(devices[0].key, payload, port, 42, t, [("gw-1", -70.0, 7.5)])
    with running(cfg) as svc:
        pub = Publisher("127.0.0.1", mosquitto.port)
        pub.publish(topic, body)
        pub.close()
        wait_until(lambda: svc.pipeline.stats.readings >= 1, 30, "the TTS uplink")
    points = stored_points(influxd, influx_db)
    assert list(points) == [(devices[0].id, t)]
    # the service publishes each device's coordinates for Grafana's map
    info = influx_query(influxd, influx_db, 'SELECT last("latitude") FROM "device_info" GROUP BY "device_id"')
    assert [(s["tags"]["device_id"], s["values"][0][1]) for s in info] == [(devices[0].id, devices[0].latitude)]
    assert base64.b64encode(payload)  # the payload was real codec output


def test_run_command_stops_cleanly_on_sigterm(tmp_path: Path, mosquitto: Daemon, influxd: Daemon,
                                              influx_db: str, database: str) -> None:
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text(f"""
[database]
url = "{database if "://" in database else ""}"
[mqtt]
port = {mosquitto.port}
[influxdb]
url = "{influxd.url}"
database = "{influx_db}"
[registry]
path = "registry.sqlite"
[pipeline]
dead_letter_path = "dl.sqlite"
[metrics]
port = 0
""")
    devices = demo_fleet({"dust": 2})
    provision(load_config(cfg_file, environ={}).registry_database(), devices)
    exe = Path(sys.executable).parent / "urbansense"
    proc = subprocess.Popen([str(exe), "--config", str(cfg_file), "run"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        sim = FleetSimulator(devices, Scenario("calm"))
        ups = [u for r in range(5) for u in sim.round(float(r), time.time_ns() + r)]
        pub = Publisher("127.0.0.1", mosquitto.port)
        # a new broker keeps nothing for a client that never subscribed: publish once the service has
        # (its start-up takes seconds on a loaded machine)
        wait_until(lambda: any("mqtt: subscribed" in ln for ln in lines) or proc.poll() is not None, 60,
                   "`urbansense run` to subscribe")
        for u in ups:
            pub.publish(u.topic, u.event)
        pub.close()
        wait_until(lambda: len(stored_points(influxd, influx_db)) == len(ups), 30, "points from `urbansense run`")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
    assert proc.returncode == 0, "".join(lines)


def test_wrong_config_key_stops_start_up_with_a_message(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text("[influxdb]\nbatch = 10\n")
    exe = Path(sys.executable).parent / "urbansense"
    r = subprocess.run([str(exe), "--config", str(cfg_file), "run"], capture_output=True, text=True, timeout=60,
                       env={**os.environ})
    assert r.returncode == 2
    assert "influxdb.batch: unknown key" in r.stderr + r.stdout


@pytest.mark.integration
def test_demo_runs_and_stores_all_five_kinds(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "urbansense"
    proc = subprocess.Popen([str(exe), "demo", "--duration", "20", "--data", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "COLUMNS": "200"})
    assert proc.stdout is not None
    head = []
    for line in proc.stdout:  # the demo prints the desk console's address and this run's password
        head.append(line)
        found = re.search(r"console: (http://127\.0\.0\.1:\d+/) +user demo, this run's password (\S+)", line)
        if found:
            break
    assert found, "".join(head)
    desk, password = found.groups()
    with httpx.Client(base_url=desk, follow_redirects=False, timeout=10) as http:
        assert http.get("/api/state").status_code == 401
        assert http.post("/login", data={"user": "demo", "password": password}).status_code == 303
        assert http.get("/api/state").json()["user"] == "demo"
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    influx = start_influxd(tmp_path / "demo")  # the demo's own data, reopened after it stopped
    try:
        for kind in KINDS:
            series = influx_query(influx, "urbansense", f'SELECT count(*) FROM "{kind}"')
            assert series and max(v for v in series[0]["values"][0][1:] if v) > 0, kind
    finally:
        influx.stop()
