"""Modbus into the real service: water gauges played by pymodbus's own server, polled over loopback TCP."""

from __future__ import annotations

import asyncio
import threading
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from conftest import influx_query
from nbiotkit import provision, stored
from pymodbus import FramerType
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer
from servicekit import make_config, running, wait_until

from collectors.modbus.address import parse_key
from core.device import Device
from decoders import get_model
from decoders.engines.modbus import Register, RegisterMapCodec, to_payload, to_registers
from grafana.dashboards import build_dashboards
from grafana.influxql import Expansion, expand
from sim.daemons import Daemon, free_port

RADAR = get_model("generic-mb-radar")


class GaugeServer:
    """A pymodbus TCP server in its own thread and loop, serving one radar gauge's holding registers."""

    def __init__(self, port: int, fields: dict, framer: FramerType = FramerType.SOCKET) -> None:
        payload, start = RADAR.codec.encode(fields)
        block = ModbusSequentialDataBlock(start + 1, to_registers(payload) + [0] * 8)  # pymodbus: 1-based
        self.context = ModbusServerContext(devices={1: ModbusDeviceContext(hr=block)}, single=False)
        self.port, self.framer = port, framer
        self.loop = asyncio.new_event_loop()
        self.server: ModbusTcpServer | None = None
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)

            async def go() -> None:
                self.server = ModbusTcpServer(self.context, framer=self.framer, address=("127.0.0.1", self.port))
                await self.server.listen()
                started.set()
                await self.server.serving

            self.loop.run_until_complete(go())

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert started.wait(10), "pymodbus server did not start"

    def stop(self) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.thread.join(10)


def test_register_map_word_and_byte_order() -> None:
    codec = RegisterMapCodec("x-y", "water_level", (
        Register("a", 10, "f32", word_order="little"), Register("b", 12, "u32"),
        Register("c", 14, "i16", byte_order="little", scale=0.1, decimals=1)))
    # 1.5 as float32 is 0x3FC00000: CDAB puts the low word first
    payload = to_payload([0x0000, 0x3FC0, 0x0001, 0x0002, 0x85FF])
    assert codec.decode(payload, 10).fields == {"a": 1.5, "b": 65538.0, "c": -12.3}
    assert codec.encode({"a": 1.5, "b": 65538, "c": -12.3}) == (payload, 10)
    assert parse_key("gw-3.example:502/7").unit == 7 and parse_key("866123450000007") is None


def _gauge(dev_id: str, port: int) -> Device:
    return Device(id=dev_id, key=f"127.0.0.1:{port}/1", model="generic-mb-radar", kind="water_level",
                  district="东城", install={"mount_height_mm": 3000.0}, expected_interval_s=1)


def test_gauges_are_polled_and_a_dead_one_is_marked_unreachable_without_delaying_the_others(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    pa, pb, pc = free_port(), free_port(), free_port()
    a = GaugeServer(pa, {"distance_mm": 2650.0, "temperature_c": 21.5})
    b = GaugeServer(pb, {"distance_mm": 2999.0, "temperature_c": 20.0})
    c = GaugeServer(pc, {"distance_mm": 2400.5, "temperature_c": 19.0}, framer=FramerType.RTU)
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database, lorawan={"chirpstack": False},
                      modbus={"enabled": True, "timeout_s": 0.5, "rtu_ports": [pc]})
    devices = [_gauge("UP-A", pa), _gauge("UP-B", pb), _gauge("UP-C", pc)]
    provision(cfg.registry_database(), devices)
    try:
        with running(cfg) as svc:
            mb = svc.collector("modbus")
            wait_until(lambda: all(s.polls >= 2 for s in mb.devices.values()), 20, "two polls of every gauge")
            a.stop()
            state_a = mb.devices[devices[0].key]
            wait_until(lambda: state_a.reachable is False, 10, "gauge A marked unreachable")
            polls_b = mb.devices[devices[1].key].polls
            wait_until(lambda: mb.devices[devices[1].key].polls >= polls_b + 3, 10, "gauge B still polled")
            metrics = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics").text
            ready = mb.ready()
    finally:
        b.stop()
        c.stop()
    points = stored(influxd, influx_db, "water_level")
    depth = {dev: rec["depth_mm"] for (dev, _), rec in points.items() if "depth_mm" in rec}
    assert depth == {"UP-A": 350.0, "UP-B": 1.0, "UP-C": 599.5}
    # B's polls went on at its own 1 s interval while A was down
    times_b = sorted(t for (dev, t), rec in points.items() if dev == "UP-B" and "depth_mm" in rec)
    gaps = [(y - x) / 1e9 for x, y in pairwise(times_b)]
    assert gaps and max(gaps) < 1.6, gaps
    health = influx_query(influxd, influx_db, 'SELECT "reachable" FROM "device_health" WHERE "device_id" = \'UP-A\'')
    assert [row[1] for row in health[0]["values"]] == [True, False]
    assert "urbansense_modbus_unreachable 1.0" in metrics
    assert 'urbansense_modbus_poll_failures_total{reason="connection"}' in metrics
    assert ready == (True, "polling 3 devices, 1 unreachable")
    # no RSSI on Modbus, yet every gauge that answered counts as heard on the overview map
    heard = build_dashboards("en")["urbansense-overview"]["panels"][0]["targets"][1]["query"]
    series = influx_query(influxd, influx_db, expand(heard, Expansion(variables={
        "district": ([".*"], False), "online_window": (["15m"], False)})))
    assert {s["tags"]["device_id"] for s in series} == {"UP-A", "UP-B", "UP-C"}


pytestmark = pytest.mark.timeout(120)
