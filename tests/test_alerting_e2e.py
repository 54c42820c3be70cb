"""Rules and alerts end to end: real broker, real influxd, the real service, real HTTP receivers.

A rainstorm floods three gauges in one district. The emergency desk hears of it (with an ETA)
before the water reaches the 27 cm closure depth; the case platform gets exactly one case per
gauge (rising warning, 15 cm and 27 cm are one case), with its category code, closed when the
water is gone; a chat robot that answers 500 through the whole storm and the restart still gets
every message exactly once once it is back; and the service is restarted in the middle without
duplicating or losing a notification. A bin full for 10 minutes opens a case; a zone-2 noise level between the night
and day limits fires only at night.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import influx_query
from servicekit import make_config, running, wait_until

from alerts.testing import RecordingServer
from collectors.lorawan.chirpstack import build_chirpstack_event
from core.device import Device
from decoders import get_model
from provisioning.registry import Registry
from sim.daemons import Daemon
from sim.simulator import Publisher

MIN = 60_000_000_000
CST = ZoneInfo("Asia/Shanghai")
WATER = [Device(f"WL-CY-{i}", f"24e12471000000{i:02d}", "milesight-em500-udl", "water_level", 39.92 + i / 100,
                116.44, f"朝阳区 下穿桥 {i}", "朝阳", "建外街道", install={"mount_height_mm": 2000.0},
                expected_interval_s=3600) for i in (1, 2, 3)]
BIN = Device("BN-1", "24e1247100000010", "milesight-em310-udl", "bin_fill", 39.91, 116.45, "朝阳区 示范路 1 号",
             "朝阳", install={"bin_depth_mm": 2000.0}, expected_interval_s=3600)
NOISE = Device("NS-1", "24e1247100000020", "milesight-ws302", "noise", 39.90, 116.46, "朝阳区 示范路 2 号", "朝阳",
               zone_class="2", expected_interval_s=300)

RISE = [0, 0, 0, 20, 45, 70, 95, 120, 145, 170, 195, 220]         # minutes 0-11: 25 mm a minute
CROSS = [245, 270, 295, 320, 320, 300, 260]                          # minutes 12-18: over 270 mm
FALL = [200, 150, 110, 90, 70, 50, 30, 10] + [0] * 14                # minutes 19-40: below the 120 mm clear


class Fleet:
    """Publishes chosen values for chosen devices at chosen times, encoded by each model's codec."""

    def __init__(self, port: int) -> None:
        self.pub = Publisher("127.0.0.1", port)
        self.fcnt: Counter[str] = Counter()
        self.rng = random.Random(5)
        self.sent = 0

    def send(self, device: Device, time_ns: int, **values: float | bool) -> None:
        info = get_model(device.model)
        fields = {name: r.snap((r.lo + r.hi) / 2) for name, r in info.ranges.items()}
        fields.update({k: info.ranges[k].snap(v) if isinstance(v, float) else v for k, v in values.items()})
        if "battery_pct" in fields:
            fields["battery_pct"] = 90
        if "tilted" in fields:
            fields["tilted"] = False
        payload, port = info.codec.encode(fields)
        self.fcnt[device.id] += 1
        topic, event = build_chirpstack_event(device.key, payload, port, self.fcnt[device.id], time_ns,
                                              [("a840410000000001", -90.0, 6.5)], str(uuid.uuid4()))
        self.pub.publish(topic, event)
        self.sent += 1

    def water(self, minute0: int, depths: list[int], base_ns: int) -> None:
        for m, depth in enumerate(depths, start=minute0):
            for i, d in enumerate(WATER):
                self.send(d, base_ns + m * MIN + i * 1000, distance_mm=float(2000 - depth))
        assert self.pub.flush(30)


def accepted(srv: RecordingServer, rule: str | None = None) -> list[dict]:
    return [r.json for r in srv.accepted if rule is None or r.json.get("rule_id") == rule]


def flood_cases(srv: RecordingServer) -> list[dict]:
    return [b for b in accepted(srv) if b.get("rule_id", "").startswith("water.")]


def keys(srv: RecordingServer) -> list[str]:
    return [r.headers["idempotency-key"] for r in srv.accepted]


@pytest.fixture
def receivers():
    with RecordingServer() as cases, RecordingServer() as desk, RecordingServer() as robot:
        yield cases, desk, robot


def test_rainstorm_bins_and_noise_become_the_right_notifications_exactly_once(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, receivers, database: str) -> None:
    """…with the alert state in a SQLite file, then in the [database] PostgreSQL."""
    cases, desk, robot = receivers
    robot.fail_for(3600.0, 500)  # down until the storm is over (the outbox holds its messages over the restart)
    cfg = make_config(
        tmp_path, mosquitto, influxd, influx_db,
        rules={"tick_interval_s": 0.5},
        database=database,
        alerts={
            "db_path": str(tmp_path / "alerts.sqlite"),
            "receivers": {
                "cases": {"type": "case_platform", "url": cases.url, "edition": "cjt214",
                          "district_codes": {"朝阳": "110105"}},
                "desk": {"type": "webhook", "url": desk.url + "/flood"},
                "robot": {"type": "wecom", "url": robot.url + "/cgi-bin/webhook/send", "key": "k"},
            },
            "routes": [{"route": "emergency", "receivers": ["desk", "robot", "cases"]},
                       {"route": "case", "receivers": ["cases"]}],
            "outbox": {"base_delay_s": 0.2, "max_delay_s": 2.0, "poll_interval_s": 0.2, "jitter": 0.0},
        })
    with Registry(cfg.registry_database()) as reg:
        for d in (*WATER, BIN, NOISE):
            reg.add(d, by="test")
    base = time.time_ns() - 60 * MIN
    fleet = Fleet(mosquitto.port)

    with running(cfg):
        fleet.water(0, RISE, base)
        # the desk hears that the water is rising, with an ETA, while every gauge is still below 270 mm
        wait_until(lambda: len({b["device_id"] for b in accepted(desk, "water.rising")}) == 3, 30,
                   "rising-water notifications for the 3 gauges")
        for body in accepted(desk, "water.rising"):
            assert body["status"] == "firing" and body["eta_s"] is not None and 0 < body["eta_s"] <= 900
            assert body["value"] == body["eta_s"]  # an ETA rule's value is the predicted seconds to 270 mm
            assert body["unit"] == "s" and body["measure"]["unit"] == "分钟"  # …said in its own unit
            facts = {f["key"]: f for f in body["measure"]["facts"]}
            assert facts["current"]["unit"] == "mm" and facts["current"]["value"] < 270
            assert facts["rate"]["unit"] == "cm/h" and facts["rate"]["value"] > 0
            assert "预计达到 270 mm（27.0 cm）" in body["description"] and "北京时间" in body["description"]
        wait_until(lambda: len(accepted(cases, "water.depth")) == 3, 30, "the 3 flood cases updated at 15 cm")

        # bins: over 80 % for the 10 minutes the preset asks, one reading every 2 minutes
        for m in range(0, 16, 2):
            fleet.send(BIN, base + m * MIN, distance_mm=300.0)             # (2000-300)/2000 = 85 %
        # noise at 55 dB(A): under zone 2's day limit (60), over its night limit (50)
        yesterday = (dt.datetime.now(CST) - dt.timedelta(days=1)).date()
        day = dt.datetime.combine(yesterday, dt.time(12, 0), CST)
        for k in range(25):
            fleet.send(NOISE, int((day + dt.timedelta(minutes=5 * k)).timestamp() * 1e9), laeq_db=55.0, lmax_db=58.0)
        assert fleet.pub.flush(30)
        time.sleep(2)
        assert not accepted(cases, "noise.zone_limit"), "55 dB(A) by day must not fire in zone 2"
        night = dt.datetime.combine(yesterday, dt.time(22, 0), CST)
        for k in range(24):
            fleet.send(NOISE, int((night + dt.timedelta(minutes=5 * k)).timestamp() * 1e9), laeq_db=55.0,
                       lmax_db=58.0)
        assert fleet.pub.flush(30)

    # a restart in the middle of the storm
    with running(cfg):
        fleet.water(12, CROSS, base)
        fleet.water(19, FALL, base)
        wait_until(lambda: sum(1 for b in flood_cases(cases) if b["action"] == "close") == 3, 60,
                   "the 3 cases closed")
        assert not accepted(robot), "the robot is still down"
        robot.fail_for(0.0)  # the robot is back
        wait_until(lambda: len(accepted(robot)) >= len(accepted(desk)) > 0, 90,
                   "the robot to receive everything after its outage")
        time.sleep(1.5)  # anything extra (a duplicate) would arrive now

    fleet.pub.close()
    # exactly one case per flooded gauge, whichever rule spoke: opened by the rising-water warning,
    # updated at 15 cm, escalated at 27 cm, closed once the water fell; each with its category code
    assert sum(1 for b in flood_cases(cases) if b["action"] == "open") == 3
    for d in WATER:
        mine = [b for b in flood_cases(cases) if b["device_id"] == d.id]
        actions = [b["action"] for b in mine]
        assert actions.count("open") == 1 and actions.count("close") == 1, (d.id, actions)
        assert actions[0] == "open" and actions[-1] == "close", (d.id, actions)
        assert mine[0]["rule_id"] == "water.rising"
        assert len({b["case_key"] for b in mine}) == 1 and len({b["case_id"] for b in mine[1:]}) == 1
        assert any(b["action"] == "update" and b["severity"] == "critical" and b["rule_id"] == "water.depth"
                   for b in mine), (d.id, actions)
        for b in mine:
            assert b["category"]["name"] == "道路积水" and b["location"]["district"] == "朝阳"
            assert (b["category"]["code"], b["category"]["full_code"]) == ("0406", "1101050406")
        # the emergency desk: rising water (with ETA) and the closure depth, both later resolved
        mine = [b for b in accepted(desk) if b["device_id"] == d.id]
        rising = [b for b in mine if b["rule_id"] == "water.rising"]
        critical = [b for b in mine if b["rule_id"] == "water.depth" and b["status"] == "firing"]
        assert rising and critical and rising[0]["time"] < critical[0]["time"]
        assert critical[0]["severity"] == "critical" and critical[0]["value"] >= 270
        assert {b["rule_id"] for b in mine if b["status"] == "resolved"} == {"water.rising", "water.depth"}
    # every notification exactly once at every receiver, across the outage and the restart
    for srv in (cases, desk, robot):
        assert len(keys(srv)) == len(set(keys(srv))), Counter(keys(srv)).most_common(3)
    assert sorted(keys(robot)) == sorted(keys(desk))
    assert any(r.status == 500 for r in robot.requests), "the robot's outage was not exercised"
    robot_text = robot.accepted[0].json
    assert robot_text["msgtype"] == "markdown" and "WL-CY" in robot_text["markdown"]["content"]

    # the bin case opened only once the 10 minutes had passed
    bins = accepted(cases, "bin.full")
    assert [b["action"] for b in bins] == ["open"]
    observed_ms = round(dt.datetime.fromisoformat(bins[0]["observed_at"]).timestamp() * 1e3)
    assert observed_ms >= (base + 10 * MIN) // 1_000_000  # the case carries the time to the millisecond
    # noise: one case, at night
    noise = [b for b in accepted(cases, "noise.zone_limit") if b["action"] == "open"]
    assert len(noise) == 1
    hour = dt.datetime.fromisoformat(noise[0]["observed_at"]).astimezone(CST).hour
    assert hour >= 22 or hour < 6
    # every transition is also in InfluxDB for Grafana's annotations
    assert (tmp_path / "alerts.sqlite").exists() == ("://" not in database)  # the state went where configured
    series = influx_query(influxd, influx_db, 'SELECT count("fingerprint") FROM "alerts" GROUP BY "rule_id"')
    by_rule = {s["tags"]["rule_id"]: s["values"][0][1] for s in series}
    assert by_rule.get("water.depth", 0) >= 3 * 3 and by_rule.get("noise.zone_limit", 0) >= 1
