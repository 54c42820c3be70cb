"""Dashboards that tell the truth, against a real influxd: every transport counts as heard, noise is LAeq."""

from __future__ import annotations

import dataclasses
import random
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from conftest import influx_query
from nbiotkit import nb_fleet, provision
from servicekit import make_config, running, wait_until

from cli.rules import replay
from collectors.lorawan import build_chirpstack_event
from core.device import Device
from core.reading import Reading
from core.transition import AlertState
from decoders import get_model
from grafana.dashboards import NOISE_LIMITS, WATER_CLOSE_MM, WATER_WARN_MM, build_dashboards
from grafana.influxql import Expansion, expand
from rules.loader import load_rules
from sim.daemons import Daemon
from sim.nbiot import NbiotSimulator, UdpPlayer
from sim.simulator import Publisher, Scenario
from storage.lineprotocol import encode_reading, join_lines

ALL = Expansion(range_="1h", interval="1m", variables={
    "district": ([".*"], False), "zone_class": ([".*"], False), "device": ([".*"], False),
    "online_window": (["15m"], False)})
KEY = "24e124713c210001"


def _panel(dashboard: str, title_part: str) -> dict:
    dash = build_dashboards("en")[f"urbansense-{dashboard}"]
    return next(p for p in dash["panels"] if title_part in p["title"])


def _rows(influxd: Daemon, db: str, query: str) -> list[dict]:
    out = []
    for series in influx_query(influxd, db, query):
        for values in series["values"]:
            out.append({**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))})
    return out


def test_nbiot_devices_without_rssi_are_heard_on_the_map_and_in_the_online_rate(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database, nbiot={"udp": True, "udp_port": 0})
    nb = [dataclasses.replace(d, latitude=39.9 + i / 100, longitude=116.4) for i, d in enumerate(nb_fleet(4))]
    lorawan = [Device("LW-CY-1", KEY, "milesight-em500-udl", "water_level", 39.95, 116.45, district="朝阳",
                      install={"mount_height_mm": 2000.0}),
               Device("LW-HD-1", "24e124713c210002", "milesight-em500-udl", "water_level", 39.96, 116.3,
                      district="海淀", install={"mount_height_mm": 2000.0})]
    devices = nb + lorawan
    provision(cfg.registry_database(), devices)
    sending = {"NB-000", "NB-001", "NB-002", "LW-CY-1"}          # NB-003 and LW-HD-1 stay silent
    info = get_model("milesight-em500-udl")
    payload, port = info.codec.encode({**info.sample(random.Random(1)), "distance_mm": 1900.0})
    with running(cfg) as svc:
        player = UdpPlayer("127.0.0.1", svc.collector("nbiot").udp.port)
        sim = NbiotSimulator(nb, Scenario(), seed=3)
        for d in nb:
            if d.id in sending:
                player.send(sim.frame(d, 0.0, int(time.time()) - 60).frame)
        pub = Publisher("127.0.0.1", mosquitto.port)
        pub.publish(*build_chirpstack_event(KEY, payload, port, 7, time.time_ns() - 30 * 10**9,
                                            [("a840410000000001", -97, 7.5)]))
        pub.close()
        wait_until(lambda: svc.pipeline.stats.readings >= 4, 30, "4 readings stored")
        player.close()
    assert not _rows(influxd, influx_db, 'SELECT "rssi_dbm" FROM "device_health" WHERE "device_id" =~ /^NB/')

    # what the data says: devices with any point in their kind's measurement in the last 15 minutes
    heard_in_data = {r["device_id"] for kind in ("water_level", "noise")
                     for r in _rows(influxd, influx_db, f'SELECT count(*) FROM "{kind}" WHERE time > now() - 15m '
                                                        'GROUP BY "device_id"')}
    assert heard_in_data == sending

    device_map = _panel("overview", "Devices by state")
    heard = {r["device_id"]: r["heard"]
             for r in _rows(influxd, influx_db, expand(device_map["targets"][1]["query"], ALL))}
    assert set(heard) == sending and set(heard.values()) == {-2}

    online = _panel("overview", "online per district")
    registered = {r["district"]: r["registered"]
                  for r in _rows(influxd, influx_db, expand(online["targets"][0]["query"], ALL))}
    online_n = {r["district"]: r["online"] for r in _rows(influxd, influx_db, expand(online["targets"][1]["query"],
                                                                                        ALL))}
    by_registry = {district: [d.id for d in devices if d.district == district] for district in ("朝阳", "海淀")}
    for district, ids in by_registry.items():
        assert registered[district] == len(ids)
        assert online_n.get(district, 0) == len(set(ids) & heard_in_data), district
    assert online_n["朝阳"] / registered["朝阳"] == 1.0 and online_n["海淀"] / registered["海淀"] == 1 / 3

    silent = _panel("device-health", "Silent devices")
    heard_health = {r["device_id"] for r in _rows(influxd, influx_db, expand(silent["targets"][1]["query"], ALL))
                    if r["heard"] is not None}
    assert heard_health == sending


def test_a_noise_panels_value_over_a_night_hour_equals_the_rules_laeq(influxd: Daemon, influx_db: str) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    hour = datetime(2026, 7, 20, 23, 0, tzinfo=zone)        # night in GB 3096 (22:00-06:00)
    start_ns = int(hour.timestamp()) * 10**9
    device = Device("ZS-1", "70b3d57ed0001234", "milesight-ws302", "noise", district="朝阳", zone_class="2",
                    expected_interval_s=300)
    levels = [40.0] * 11 + [65.0]                          # 55 quiet minutes, then 5 loud ones
    rows = [(start_ns + i * 300 * 10**9, {"laeq_db": v}) for i, v in enumerate(levels)]
    body = join_lines(encode_reading(Reading(device.id, "noise", t, f, device.tags())) for t, f in rows)
    httpx.post(f"{influxd.url}/write", params={"db": influx_db}, content=body).raise_for_status()

    rule = next(r for r in load_rules([], include_presets=True) if r.id == "noise.zone_limit")
    fired = [t for t in replay([rule], device, rows, tz="Asia/Shanghai") if t.to_state is AlertState.FIRING]
    assert len(fired) == 1 and fired[0].threshold == 50.0  # the zone-2 night limit
    rule_laeq = fired[0].value

    panel = _panel("noise", "Zone class 2 ")
    query = panel["targets"][0]["query"].replace(
        "$timeFilter", f"time >= {start_ns} AND time < {start_ns + 3600 * 10**9}")
    series = influx_query(influxd, influx_db, expand(query, Expansion(interval="1h", variables={
        "district": ([".*"], False), "zone_class": ([".*"], False), "device": ([".*"], False)})))
    assert [s["tags"]["device_id"] for s in series] == ["ZS-1"]
    (_when, panel_value), = series[0]["values"]
    assert abs(panel_value - rule_laeq) < 0.01, (panel_value, rule_laeq)
    assert panel_value > 50.0 > sum(levels) / len(levels)  # above the limit, where a dB mean would sit below it


def test_panel_limits_are_the_rule_presets() -> None:
    rules = {r.id: r for r in load_rules([], include_presets=True)}
    noise = rules["noise.zone_limit"].levels[0].threshold
    assert {z: (noise.resolve("day", z), noise.resolve("night", z)) for z in NOISE_LIMITS} == NOISE_LIMITS
    assert len(NOISE_LIMITS) == 6
    assert [lv.threshold.resolve("*", "*") for lv in rules["water.depth"].levels] == [WATER_WARN_MM, WATER_CLOSE_MM]
    steps = _panel("noise", "Zone class 4b ")["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps[1:]] == [NOISE_LIMITS["4b"][1], NOISE_LIMITS["4b"][0]]
    water = _panel("water-level", "Water depth")["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in water[1:]] == [WATER_WARN_MM, WATER_CLOSE_MM]
