"""After an outage the service replays hours of queued uplinks: that must not call the fleet silent."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from conftest import influx_query
from servicekit import make_config, running, wait_until

from provisioning.registry import Registry
from sim.daemons import Daemon
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet

MIN = 60_000_000_000


def silent_firings(influxd: Daemon, db: str) -> set[str]:
    series = influx_query(influxd, db, """SELECT "fingerprint" FROM "alerts" WHERE "rule_id" = 'device.silent'
                                          AND "to_state" = 'firing' GROUP BY "device_id\"""")
    return {s["tags"]["device_id"] for s in series}


def test_replaying_a_backlog_raises_no_silent_alerts_and_silence_is_still_seen_afterwards(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, rules={"tick_interval_s": 0.2})
    fleet = [replace(d, expected_interval_s=60) for d in demo_fleet({"water_level": 40, "dust": 1})]
    quiet = fleet[-1]                       # stopped reporting 20 minutes ago: really silent
    with Registry(cfg.registry_database()) as reg:
        for d in fleet:
            reg.add(d, by="test")
    with running(cfg):
        pass                                # the service's persistent session now exists
    sim = FleetSimulator(fleet, Scenario("calm"), seed=2)
    now = time.time_ns()
    backlog = []
    for minute in range(120, 0, -1):        # two hours queued while the service was down, oldest first
        for u in sim.round(0.0, now - minute * MIN):
            if u.device.id != quiet.id or minute > 20:
                backlog.append(u)
    pub = Publisher("127.0.0.1", mosquitto.port)
    for u in backlog:
        pub.publish(u.topic, u.event)
    assert pub.flush(60)
    pub.close()

    with running(cfg) as svc:
        wait_until(lambda: svc.pipeline.stats.readings >= len(backlog), 120, "the backlog to be replayed")
        wait_until(lambda: quiet.id in silent_firings(influxd, influx_db), 20,
                   "the really silent device to be reported once the backlog was replayed")
        time.sleep(1.0)                     # several more ticks
    assert silent_firings(influxd, influx_db) == {quiet.id}
