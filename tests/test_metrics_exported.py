"""The counters the service keeps are the counters it exports, and `urbansense_mqtt_connected` follows the broker."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from servicekit import make_config, running, wait_until

from provisioning.registry import Registry
from sim.daemons import Daemon
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet


def _metrics(svc) -> dict[str, float]:  # type: ignore[no-untyped-def]
    text = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics").text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_mqtt_connected_and_kept_counters_are_exported(tmp_path: Path, mosquitto: Daemon, influxd: Daemon,
                                                       influx_db: str, database: str) -> None:
    devices = demo_fleet({"noise": 3})
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database)
    with Registry(cfg.registry_database()) as reg:
        for d in devices:
            reg.add(d, by="test")
    with running(cfg) as svc:
        sim = FleetSimulator(devices, Scenario("calm"))
        pub = Publisher("127.0.0.1", mosquitto.port)
        ups = [u for r in range(3) for u in sim.round(float(r), time.time_ns() - (3 - r) * 10**9)]
        for u in ups:
            pub.publish(u.topic, u.event)
        pub.close()
        wait_until(lambda: svc.pipeline.stats.readings >= len(ups), 30, "the readings")
        wait_until(lambda: _metrics(svc).get("urbansense_batches_written_total", 0) >= 1, 10, "a written batch")
        m = _metrics(svc)
        assert m["urbansense_mqtt_connected"] == 1.0
        assert m["urbansense_mqtt_messages_received_total"] == len(ups)
        assert m["urbansense_mqtt_messages_acked_total"] == len(ups)
        assert m["urbansense_mqtt_connects_total"] == 1.0
        assert m["urbansense_points_spooled_total"] == 0.0 and m["urbansense_write_failures_total"] == 0.0
        assert m["urbansense_notifications_delivered_total"] == 0.0
        mosquitto.stop()
        wait_until(lambda: _metrics(svc)["urbansense_mqtt_connected"] == 0.0, 15, "the gauge to drop")
