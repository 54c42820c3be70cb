"""Issue 13 on a real Mosquitto and a real influxd: no message stops ingest, no task dies silently,
different NB-IoT frames of one second stay apart and a retransmission stays one point."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import influx_query
from nbiotkit import nb_fleet
from servicekit import make_config, recent_ns, running, wait_until

from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.nbiot.frame import build_frame
from core.device import Device
from decoders import get_model
from provisioning.registry import Registry
from service.app import Service
from service.config import Config
from sim.daemons import Daemon
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet
from storage.deadletter import DeadLetterStore

DEVICES = demo_fleet({"noise": 10})
POISON = Device(id="P-POISON", key="00112233445566ff", model="nwave-nps405", kind="parking")


def provision(cfg: Config, devices: list[Device]) -> None:
    with Registry(cfg.registry_database()) as reg:
        for d in devices:
            reg.add(d, by="test")


def noise_times(influxd: Daemon, db: str, since_ns: int) -> list[int]:
    series = influx_query(influxd, db, f'SELECT "laeq_db" FROM "noise" WHERE time >= {since_ns}')
    return [row[0] for s in series for row in s["values"]]


class ReadyProbe:
    """Polls `/readyz` every 20 ms from a thread; remembers (monotonic time, status)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.seen: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=1) as http:
            while not self._stop.is_set():
                try:
                    r = http.get(self.url)
                    self.seen.append((time.monotonic(), r.status_code, r.text))
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def poison_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder bug nobody foresaw: the poison device's model raises ZeroDivisionError on payload 0x66."""
    codec = get_model(POISON.model).codec
    real = codec.decode

    def buggy(payload: bytes, port: int):  # type: ignore[no-untyped-def]
        if payload == b"\x66":
            raise ZeroDivisionError("division by zero in a vendor formula")
        return real(payload, port)

    monkeypatch.setattr(codec, "decode", buggy)


def zero_time_event(sim: FleetSimulator, device: Device, time_ns: int) -> tuple[str, bytes]:
    """A good uplink whose gateway has no GNSS: gwTime is Go's zero time and the event has no `time`."""
    u = sim.uplink(device, 0.0, time_ns)
    doc = orjson.loads(u.event)
    del doc["time"]
    doc["rxInfo"][0]["gwTime"] = "0001-01-01T00:00:00+00:00"
    return u.topic, orjson.dumps(doc)


def poison_event(time_ns: int) -> tuple[str, bytes]:
    return build_chirpstack_event(POISON.key, b"\x66", 1, 1, time_ns, [("0016c001f0000a03", -91.0, 4.25)])


@pytest.mark.slow
def test_zero_time_and_poison_among_1000_good_then_poison_at_the_head_after_a_restart(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, poison_codec: None, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database)
    provision(cfg, [*DEVICES, POISON])
    sim = FleetSimulator(DEVICES, Scenario("calm"), seed=13)
    t0 = recent_ns(2)
    good = [sim.uplink(DEVICES[i % 10], float(i), t0 + i * 1000) for i in range(1000)]
    with running(cfg) as svc:
        probe = ReadyProbe(svc.metrics_server.port)
        pub = Publisher("127.0.0.1", mosquitto.port)
        for i, u in enumerate(good):
            pub.publish(u.topic, u.event)
            if i == 400:
                pub.publish(*zero_time_event(sim, DEVICES[3], t0 + 10 * 1_000_000))
                pub.publish(*poison_event(t0 + 20 * 1_000_000))
        assert pub.flush(60)
        pub.close()
        wait_until(lambda: svc.pipeline.stats.received >= 1002, 90, "1,002 messages through the pipeline")
        wait_until(lambda: len(noise_times(influxd, influx_db, t0)) >= 1001, 60, "1,001 points")
        probe.stop()
        assert probe.seen and {status for _, status, _ in probe.seen} == {200}
    times = noise_times(influxd, influx_db, t0)
    assert len(times) == 1001  # the 1,000 and the zero-time uplink, at its network server's time
    assert sorted(set(times) - {u.time_ns for u in good}) == [t0 + 10 * 1_000_000 + 180_000_000]
    health = influx_query(influxd, influx_db, f'SELECT "time_source" FROM "device_health" WHERE time >= {t0} '
                                              f'AND "time_source" = \'rxInfo.nsTime\'')
    assert sum(len(s["values"]) for s in health) == 1
    with DeadLetterStore(cfg.dead_letter_database()) as store:
        dead = store.list()
    assert [(d.reason, d.device_key) for d in dead] == [("internal_error", None)]
    assert "ZeroDivisionError" in dead[0].detail

    # the service is stopped; the poison waits at the head of its session, 1,000 more behind it
    t1 = recent_ns(1)
    more = [sim.uplink(DEVICES[i % 10], float(i), t1 + i * 1000) for i in range(1000)]
    pub = Publisher("127.0.0.1", mosquitto.port)
    pub.publish(*poison_event(t1 - 1_000_000))
    for u in more:
        pub.publish(u.topic, u.event)
    assert pub.flush(60)
    pub.close()
    with running(cfg) as svc:
        wait_until(lambda: len(noise_times(influxd, influx_db, t1)) >= 1000, 90, "the next 1,000 points")
        assert httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/readyz").status_code == 200
    assert sorted(noise_times(influxd, influx_db, t1)) == sorted(u.time_ns for u in more)
    with DeadLetterStore(cfg.dead_letter_database()) as store:
        assert [d.reason for d in store.list()] == ["internal_error", "internal_error"]


def test_a_task_that_dies_turns_readyz_503_within_a_second_and_exits_non_zero(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database, logging={"level": "ERROR"})
    provision(cfg, DEVICES)
    holder: dict = {}
    started = threading.Event()

    def main() -> None:
        async def go() -> None:
            svc = holder["svc"] = Service(cfg)
            task = asyncio.create_task(svc.run())
            await svc.started.wait()
            started.set()
            await task
        asyncio.run(go())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert started.wait(30)
    svc: Service = holder["svc"]
    assert svc.collector("lorawan").consumer.wait_connected(10)
    probe = ReadyProbe(svc.metrics_server.port)
    died: list[float] = []

    async def broken_handle(chunk):  # type: ignore[no-untyped-def]  # the test hook: the pipeline task dies
        died.append(time.monotonic())
        raise RuntimeError("test hook: pipeline task killed")

    svc.pipeline.handle = broken_handle  # type: ignore[method-assign]
    u = FleetSimulator(DEVICES, Scenario("calm"), seed=1).uplink(DEVICES[0], 0.0, recent_ns())
    pub = Publisher("127.0.0.1", mosquitto.port)
    pub.publish(u.topic, u.event)
    pub.close()
    thread.join(30)
    probe.stop()
    assert not thread.is_alive(), "the service stalled instead of exiting"
    assert svc.exit_code == 1 and svc.supervisor.failed == ["pipeline"]
    first_503 = next((t, text) for t, status, text in probe.seen if status == 503)
    assert first_503[0] - died[0] < 1.0
    assert "task pipeline" in first_503[1] and "RuntimeError" in first_503[1]
    assert all(status == 200 for t, status, _ in probe.seen if t < died[0])


def test_200_different_nbiot_frames_in_one_second_are_200_points_and_a_frame_sent_3_times_is_1(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database, lorawan={"chirpstack": False},
                      nbiot={"udp": True, "udp_port": 0})
    water, noise = nb_fleet(2)
    provision(cfg, [water, noise])
    second = recent_ns() // 1_000_000_000
    codec = get_model(noise.model).codec
    frames = []
    for seq in range(200):
        payload, msg_type = codec.encode({"laeq_db": 40.0 + seq / 10, "lmax_db": 80.0, "lmin_db": 35.0})
        frames.append(build_frame(noise.key, msg_type, seq, payload, device_time_s=second))
    wpayload, wtype = get_model(water.model).codec.encode({"distance_mm": 2500.0, "battery_v": 3.6})
    retransmitted = build_frame(water.key, wtype, 77, wpayload, device_time_s=second)
    with running(cfg) as svc:
        port = svc.collector("nbiot").udp.port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for f in [*frames[:100], retransmitted, *frames[100:], retransmitted, retransmitted]:
                sock.sendto(f, ("127.0.0.1", port))
                time.sleep(0.001)
        wait_until(lambda: svc.pipeline.stats.received >= 203, 30, "203 datagrams through the pipeline")
        wait_until(lambda: svc.pipeline.stats.readings >= 201, 30, "201 readings written")
        assert svc.pipeline.stats.skipped == {"duplicate": 2}
    noise_points = influx_query(influxd, influx_db, 'SELECT "laeq_db" FROM "noise"')
    assert len(noise_points[0]["values"]) == 200
    assert sorted(v for _, v in noise_points[0]["values"]) == [40.0 + seq / 10 for seq in range(200)]
    water_points = influx_query(influxd, influx_db, 'SELECT "distance_mm" FROM "water_level"')
    assert len(water_points[0]["values"]) == 1
