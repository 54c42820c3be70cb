"""Fault tests on the real Mosquitto and the real influxd: nothing lost, nothing stored twice.

Each scenario publishes a stream of uniquely numbered uplinks at a steady rate (uplink n
has time t0 + n µs, so its point is identified by its time), breaks something mid-stream
and then counts the points in InfluxDB. The counts go to stdout (`pytest -s`) as
`FAULT <scenario>: published N stored N duplicated 0 lost 0`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import influx_query
from servicekit import make_config, running, wait_until

from provisioning.registry import Registry
from sim.daemons import Daemon, start_influxd, start_mosquitto
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet
from storage.deadletter import DeadLetterStore

DB = "faults"
KIND = "noise"
DEVICES = demo_fleet({KIND: 10})


class Stream:
    """Publishes uplink 0, 1, 2, ... at `rate` per second from a thread until `stop()` or `total`."""

    def __init__(self, broker_port: int, rate: float, total: int) -> None:
        self.sim = FleetSimulator(DEVICES, Scenario("calm"), seed=11)
        self.t0 = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000
        self.rate = rate
        self.total = total
        self.published = 0
        self.pub = Publisher("127.0.0.1", broker_port, max_outstanding=5000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        for n in range(self.total):
            if self._stop.is_set():
                return
            delay = started + n / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            u = self.sim.uplink(DEVICES[n % len(DEVICES)], n / self.rate, self.t0 + n * 1000)
            self.pub.publish(u.topic, u.event)
            self.published += 1

    def wait(self, timeout: float = 120) -> int:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not finish"
        assert self.pub.flush(60), "the broker did not acknowledge every publish"
        self.pub.close()
        return self.published


def stored_numbers(influxd: Daemon, t0: int) -> list[int]:
    """The uplink number of every stored point of the stream's measurement (one entry per point)."""
    series = influx_query(influxd, DB, f'SELECT * FROM "{KIND}" WHERE time >= {t0}')
    return [(row[0] - t0) // 1000 for s in series for row in s["values"]]


def tally(name: str, influxd: Daemon, stream: Stream, published: int, timeout: float = 90) -> dict[str, int]:
    """Wait until every published uplink is stored (or time out), then count and print."""
    deadline = time.monotonic() + timeout
    while True:
        numbers = stored_numbers(influxd, stream.t0)
        if len(set(numbers)) >= published or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    unique = set(numbers)
    counts = {"published": published, "stored": len(unique), "duplicated": len(numbers) - len(unique),
              "lost": len(set(range(published)) - unique), "unexpected": len(unique - set(range(published)))}
    print(f"\nFAULT {name}: " + " ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


def assert_exact(counts: dict[str, int]) -> None:
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["unexpected"] == 0, counts
    assert counts["stored"] == counts["published"], counts


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[list[Daemon]]:
    """An influxd of the test's own (it gets killed), in a list so the test can swap in the restarted one."""
    holder = [start_influxd(tmp_path / "influx")]
    httpx.post(f"{holder[0].url}/query", params={"q": f"CREATE DATABASE {DB}"}).raise_for_status()
    yield holder
    holder[-1].stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[list[Daemon]]:
    holder = [start_mosquitto(tmp_path / "broker")]
    yield holder
    holder[-1].stop()


def provision(path: Path) -> None:
    with Registry(path) as reg:
        for d in DEVICES:
            reg.add(d, by="test")


def metric(svc, name: str) -> float:  # type: ignore[no-untyped-def]
    text = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics").text
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return float(line.split()[1])


def readyz(svc) -> int:  # type: ignore[no-untyped-def]
    return httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/readyz").status_code


def test_influxd_killed_for_30_s_mid_stream_loses_nothing(tmp_path: Path, own_broker: list[Daemon],
                                                          own_influxd: list[Daemon]) -> None:
    influx = own_influxd[0]
    cfg = make_config(tmp_path, own_broker[0], influx, DB, influxdb={"timeout_s": 2.0},
                      spool={"path": str(tmp_path / "spool"), "probe_max_s": 1.0})
    provision(cfg.registry_database())
    with running(cfg) as svc:
        stream = Stream(own_broker[0].port, rate=150, total=150 * 40).start()
        time.sleep(5)
        influx.kill()
        wait_until(lambda: svc.writer.stats.points_spooled > 0, 10, "batches to be spooled")
        time.sleep(3)
        assert metric(svc, "urbansense_spool_bytes") > 0
        assert metric(svc, "urbansense_spool_oldest_age_seconds") > 1
        assert readyz(svc) == 200, "a spool below its bound keeps the service ready"
        time.sleep(30 - 3 - 1)
        own_influxd.append(start_influxd(tmp_path / "influx", port=influx.port))
        published = stream.wait()
        counts = tally("influxd killed for 30 s", own_influxd[-1], stream, published)
        wait_until(lambda: svc.spool.empty, 30, "the spool to drain")
        assert metric(svc, "urbansense_spool_bytes") == 0
        spooled = svc.writer.stats.points_spooled
    assert_exact(counts)
    assert spooled > 2000, "the outage should have gone through the spool"
    assert list((tmp_path / "spool").glob("*.spool")) == []


def write_service_config(tmp_path: Path, broker: Daemon, influx: Daemon) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
[mqtt]
port = {broker.port}
client_id = "fault-sigkill"
reconnect_max_s = 2.0
[influxdb]
url = "{influx.url}"
database = "{DB}"
flush_interval_s = 0.1
[spool]
path = "spool"
[registry]
path = "registry.sqlite"
reload_interval_s = 0.5
[pipeline]
dead_letter_path = "deadletter.sqlite"
[metrics]
port = 0
[logging]
level = "INFO"
""")
    return cfg


def test_service_killed_with_sigkill_three_times_stores_every_uplink_once(
        tmp_path: Path, own_broker: list[Daemon], influxd: Daemon) -> None:
    httpx.post(f"{influxd.url}/query", params={"q": f"DROP DATABASE {DB}"}).raise_for_status()
    cfg = write_service_config(tmp_path, own_broker[0], influxd)
    provision(tmp_path / "registry.sqlite")
    exe = Path(sys.executable).parent / "urbansense"
    log = open(tmp_path / "service.log", "ab")  # noqa: SIM115 - closed below

    def start() -> subprocess.Popen:
        return subprocess.Popen([str(exe), "--config", str(cfg), "run"], stdout=log, stderr=subprocess.STDOUT)

    def wait_subscribed(starts: int, timeout: float = 60) -> None:
        """Wait until the `starts`-th process has subscribed: a kill before that tests start-up, not ingest."""
        deadline = time.monotonic() + timeout
        while (tmp_path / "service.log").read_text().count("mqtt: subscribed to") < starts:
            assert time.monotonic() < deadline, (tmp_path / "service.log").read_text()[-3000:]
            time.sleep(0.2)

    proc = start()
    wait_subscribed(1)
    stream = Stream(own_broker[0].port, rate=150, total=150 * 20).start()
    kills = 0
    try:
        for _ in range(3):
            time.sleep(4)
            wait_subscribed(kills + 1)
            assert proc.poll() is None, (tmp_path / "service.log").read_text()[-3000:]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            kills += 1
            time.sleep(1)
            proc = start()
        wait_subscribed(kills + 1)
        published = stream.wait()
        counts = tally(f"service SIGKILLed {kills} times", influxd, stream, published)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "service.log").read_text()[-3000:]
    assert_exact(counts)


def test_broker_restart_mid_stream_reconnects_by_itself_and_loses_nothing(
        tmp_path: Path, own_broker: list[Daemon], influxd: Daemon) -> None:
    httpx.post(f"{influxd.url}/query", params={"q": f"DROP DATABASE {DB}"}).raise_for_status()
    broker = own_broker[0]
    cfg = make_config(tmp_path, broker, influxd, DB, mqtt={"reconnect_max_s": 2.0},
                      spool={"path": str(tmp_path / "spool")})
    provision(cfg.registry_database())
    with running(cfg) as svc:
        consumer = svc.collector("lorawan").consumer
        stream = Stream(broker.port, rate=150, total=150 * 15).start()
        time.sleep(5)
        broker.stop()
        time.sleep(3)
        own_broker.append(start_mosquitto(tmp_path / "broker", port=broker.port))
        wait_until(lambda: consumer.connected, 30, "the service to reconnect")
        published = stream.wait()
        counts = tally("broker restarted", influxd, stream, published)
        reconnects = consumer.stats.reconnects
    assert_exact(counts)
    assert reconnects >= 1


def test_influxd_down_past_the_spool_bound_stops_acking_and_the_broker_keeps_the_rest(
        tmp_path: Path, own_broker: list[Daemon], own_influxd: list[Daemon]) -> None:
    influx = own_influxd[0]
    bound = 40_000
    cfg = make_config(tmp_path, own_broker[0], influx, DB, influxdb={"timeout_s": 2.0},
                      mqtt={"receive_maximum": 300},
                      spool={"path": str(tmp_path / "spool"), "max_bytes": bound, "probe_max_s": 1.0})
    provision(cfg.registry_database())
    with running(cfg) as svc:
        consumer = svc.collector("lorawan").consumer
        stream = Stream(own_broker[0].port, rate=200, total=200 * 25).start()
        time.sleep(3)
        influx.kill()
        wait_until(lambda: svc.writer.spool_refusing, 20, "the spool to fill")
        time.sleep(8)
        assert readyz(svc) == 503, "a full spool and no InfluxDB: not ready"
        behind = stream.published - consumer.stats.acked
        assert behind > 1000, f"the broker should be holding the backlog, only {behind} unacknowledged"
        spool_bytes = metric(svc, "urbansense_spool_bytes")
        assert spool_bytes <= bound + 20_000
        time.sleep(4)
        own_influxd.append(start_influxd(tmp_path / "influx", port=influx.port))
        published = stream.wait()
        counts = tally("influxd down past the spool bound", own_influxd[-1], stream, published)
        wait_until(lambda: svc.spool.empty, 30, "the spool to drain")
        assert readyz(svc) == 200
    print(f"FAULT spool bound {bound} B: {behind} uplinks held unacknowledged at the broker")
    assert_exact(counts)


def test_a_point_influxdb_rejects_is_dead_lettered_and_the_rest_of_its_batch_written(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    # the planted point is 30 days old: the time policy must trust times that old here
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, database=database, influxdb={"flush_interval_s": 1.0},
                      pipeline={"time_max_past_s": 60 * 86400.0})
    provision(cfg.registry_database())
    sim = FleetSimulator(DEVICES, Scenario("calm"), seed=2)
    now = time.time_ns()
    old = now - 30 * 24 * 3600 * 10**9  # a shard of its own, where the conflict is planted
    httpx.post(f"{influxd.url}/write", params={"db": influx_db},
               content=f'{KIND},device_id=planted laeq_db="not a number" {old - 1000}').raise_for_status()
    ups = [sim.uplink(DEVICES[i % len(DEVICES)], 0.0, now + i * 1000) for i in range(99)]
    bad = sim.uplink(DEVICES[3], 0.0, old)
    ups.insert(50, bad)
    with running(cfg) as svc:
        pub = Publisher("127.0.0.1", mosquitto.port)
        for u in ups:
            pub.publish(u.topic, u.event)
        pub.close()
        wait_until(lambda: svc.pipeline.stats.readings >= 100, 30, "the batch to be handed off")
        batches = svc.writer.stats.batches_written
        rejected = metric(svc, "urbansense_points_rejected_total")
    rows = influx_query(influxd, influx_db, f'SELECT laeq_db FROM "{KIND}" WHERE time >= {now}')
    assert len(rows[0]["values"]) == 99
    health = influx_query(influxd, influx_db, f'SELECT count(fcnt) FROM device_health WHERE time = {old}')
    assert health[0]["values"][0][1] == 1, "the refused point's health line was still written"
    assert rejected == 1 and batches <= 3
    letters = DeadLetterStore(cfg.dead_letter_database()).list(reason="influx_rejected")
    assert len(letters) == 1
    assert "field type conflict" in letters[0].detail
    assert letters[0].payload.startswith(f"{KIND},device_id={DEVICES[3].id}".encode())
    assert str(old).encode() in letters[0].payload
    print(f"\nFAULT planted type conflict: published 100 stored 99 dead-lettered {len(letters)} lost 0")
