"""`urbansense run --workers 2` on a real Mosquitto and influxd: two ingest processes share the uplink stream
through an MQTT 5 shared subscription; one SIGKILLed mid-stream loses nothing; SIGTERM stops them all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from conftest import influx_query
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from servicekit import metric, recent_ns, write_run_config
from test_ingest_process import publish
from typer.testing import CliRunner

from cli.app import app
from service.bus import decode_readings
from sim.daemons import Daemon, free_port, free_port_run
from sim.simulator import FleetSimulator, Scenario, demo_fleet

FLEET = demo_fleet({"noise": 20})
N = 3000
URBANSENSE = str(Path(sys.executable).parent / "urbansense")


def _config(tmp: Path, broker: Daemon, influxd: Daemon, db: str, metrics_port: int) -> Path:
    return write_run_config(tmp, broker, influxd, db, metrics_port, client_id=f"w-{db[:50]}", devices=FLEET,
                            rules={"warm_up": False}, logging={"level": "INFO"})


class BusWatcher:
    """Counts the readings each ingest worker publishes to the readings topic (its own, non-shared session)."""

    def __init__(self, broker: Daemon, topic: str = "urbansense/readings/#") -> None:
        self.by_topic: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bus-watcher", protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.by_topic.setdefault(msg.topic, []).extend(r.time_ns for r in decode_readings(msg.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher(mosquitto: Daemon) -> Iterator[BusWatcher]:
    w = BusWatcher(mosquitto)
    yield w
    w.close()


def _log_wait(log: Path, pattern: str, count: int, proc: subprocess.Popen, timeout: float = 90) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(found := re.findall(pattern, log.read_text())) < count:
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"waiting for {pattern!r} x{count}\n{log.read_text()[-4000:]}"
        time.sleep(0.2)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_ingest_workers_share_the_stream_and_a_sigkilled_one_loses_nothing(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, watcher: BusWatcher) -> None:
    metrics_port = free_port_run(3)  # the parent's, then worker k's = the parent's + k
    config = _config(tmp_path, mosquitto, influxd, influx_db, metrics_port)
    log = tmp_path / "run.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([URBANSENSE, "--config", str(config), "run", "--workers", "2", "--ingest-id", "t"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _log_wait(log, r"\[t-w[12]\] mqtt: subscribed to \$share/urbansense/", 2, proc)  # each line says whose
        # the leader's readings session exists before the first reading (a cluster's first start: docs/deploy.md)
        _log_wait(log, r"\[leader\] mqtt: subscribed to urbansense/readings/#", 1, proc)
        pids = dict(re.findall(r"ingest worker (t-w\d) started \(pid (\d+)\)", log.read_text()))
        assert set(pids) == {"t-w1", "t-w2"}

        sim = FleetSimulator(FLEET, Scenario("calm"), seed=19)
        t1 = recent_ns(1)
        uplinks = [sim.uplink(FLEET[i % len(FLEET)], float(i), t1 + i * 1_000_000) for i in range(N)]
        messages = [(u.topic, u.event) for u in uplinks]
        publish(mosquitto, messages[:N // 2])
        os.kill(int(pids["t-w1"]), signal.SIGKILL)  # mid-stream: whatever it held unacknowledged stays at the broker
        publish(mosquitto, messages[N // 2:])
        _log_wait(log, r"ingest worker t-w1 \(pid \d+\) exited with code -9; restarting", 1, proc)
        _log_wait(log, r"ingest worker t-w1 started", 2, proc)

        deadline = time.monotonic() + 120
        while len(stored := _noise_times(influxd, influx_db, t1)) < N:
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, f"{len(stored)} of {N} stored\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        assert sorted(stored) == sorted(u.time_ns for u in uplinks)  # every uplink once, none lost
        deadline = time.monotonic() + 120  # the restarted worker boots, resumes its session, republishes
        while len(set().union(*watcher.by_topic.values())) < N and time.monotonic() < deadline:
            time.sleep(0.2)
        with watcher.lock:
            by_worker = {topic.rsplit("/", 1)[1]: set(times) for topic, times in watcher.by_topic.items()}
        assert set(by_worker) == {"t-w1", "t-w2"}
        assert all(len(times) > 0 for times in by_worker.values())  # each worker took a share
        assert set.union(*by_worker.values()) == {u.time_ns for u in uplinks}  # together: all, to the leader

        deadline = time.monotonic() + 120  # the leader (this process) got every reading from the bus, once
        while (handed := metric(metrics_port, "urbansense_bus_readings_total")) < N and time.monotonic() < deadline:
            time.sleep(0.5)
        late = metric(metrics_port, "urbansense_bus_late_readings_total")  # a redelivery after the SIGKILL
        assert N <= handed <= N + late

        children = [int(p) for p in re.findall(r"ingest worker t-w\d started \(pid (\d+)\)", log.read_text())]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, log.read_text()[-4000:]
        assert not any(_alive(pid) for pid in children)
        assert "ingest worker t-w2 stopped (exit code 0)" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _noise_times(influxd: Daemon, db: str, since_ns: int) -> list[int]:
    series = influx_query(influxd, db, f'SELECT "laeq_db" FROM "noise" WHERE time >= {since_ns}')
    return [row[0] for s in series for row in s["values"]]


def test_workers_refuse_a_transport_that_only_one_process_can_bind(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[nbiot]\nudp = true\nudp_port = 8600\n[modbus]\nenabled = true\n")
    runner = CliRunner()
    out = runner.invoke(app, ["--config", str(config), "run", "--workers", "2"], terminal_width=300)
    assert out.exit_code == 1
    assert "[nbiot] listens on UDP port 8600, which only one process of a machine can bind" in out.output
    assert "[modbus] polls every Modbus device" in out.output
    out = runner.invoke(app, ["--config", str(config), "run", "--workers", "2", "--role", "ingest"],
                        terminal_width=300)
    assert out.exit_code == 2 and "cannot also be --role ingest" in " ".join(out.output.replace("│", " ").split())
    out = runner.invoke(app, ["--config", str(config), "run", "--ingest-id", "a/b"])
    assert out.exit_code == 2 and "letters, digits" in out.output


class SharedMember:
    """A plain MQTT 5 member of the shared subscription (persistent session) that acknowledges what it gets."""

    def __init__(self, broker: Daemon, client_id: str, group: str = "urbansense") -> None:
        self.got: list[bytes] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.on_message = lambda c, u, m: self.got.append(m.payload)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(f"$share/{group}/application/+/device/+/event/up", qos=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_retired_ingest_worker_drains_its_share_exits_and_is_dealt_nothing_new(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    config = _config(tmp_path, mosquitto, influxd, influx_db, free_port())
    client_id = f"w-{influx_db[:50]}"
    SharedMember(mosquitto, f"{client_id}-r1").close()  # worker r1's persistent session, left offline
    other = SharedMember(mosquitto, "other-member")
    try:
        sim = FleetSimulator(FLEET, Scenario("calm"), seed=23)
        t1 = recent_ns(1)
        first = [sim.uplink(FLEET[i % len(FLEET)], float(i), t1 + i * 1_000_000) for i in range(200)]
        publish(mosquitto, [(u.topic, u.event) for u in first])  # about half is dealt to r1's offline session
        deadline = time.monotonic() + 30
        while len(other.got) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        share = 200 - len(other.got)
        assert 0 < share < 200
        log = tmp_path / "retire.log"
        with open(log, "ab") as out:
            proc = subprocess.run([URBANSENSE, "--config", str(config), "run", "--role", "ingest", "--ingest-id",
                                   "r1", "--retire"], stdout=out, stderr=subprocess.STDOUT, timeout=120)
        assert proc.returncode == 0, log.read_text()[-3000:]
        assert len(_noise_times(influxd, influx_db, t1)) == share  # its whole share was stored before it left
        assert "session of" in log.read_text() and "ended at the broker (retired)" in log.read_text()

        before = len(other.got)
        second = [sim.uplink(FLEET[i % len(FLEET)], float(i), t1 + (1000 + i) * 1_000_000) for i in range(100)]
        publish(mosquitto, [(u.topic, u.event) for u in second])
        deadline = time.monotonic() + 30
        while len(other.got) < before + 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(other.got) == before + 100  # nothing new waits in a retired worker's session
    finally:
        other.close()


@pytest.mark.timeout(120)
def test_a_worker_that_cannot_listen_says_which_port_and_the_parent_is_not_ready(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    """qa2 F15: a worker whose metrics port is taken used to die in a loop with a bare traceback while the
    parent's /readyz said "ok"; now its one error line names the port and the setting, and the parent's
    /readyz answers 503 naming the worker."""
    metrics_port = free_port_run(2)
    taken = socket.socket()
    taken.bind(("127.0.0.1", metrics_port + 1))  # worker k's port is the parent's + k
    taken.listen()
    config = _config(tmp_path, mosquitto, influxd, influx_db, metrics_port)
    log = tmp_path / "run.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([URBANSENSE, "--config", str(config), "run", "--workers", "1", "--ingest-id", "t"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _log_wait(log, r"ingest worker t-w1 \(pid \d+\) exited with code 1; restarting", 2, proc)
        assert f"error: metrics: cannot listen on 127.0.0.1:{metrics_port + 1}: Address already in use (set " \
               "[metrics] port or run --metrics-port" in log.read_text()
        assert "Traceback" not in log.read_text()
        deadline = time.monotonic() + 30
        while (ready := httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)).status_code == 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.2)
        assert ready.status_code == 503 and "workers: 0 of 1 up; t-w1 " in ready.text, ready.text
        assert metric(metrics_port, "urbansense_workers_running") == 0
    finally:
        taken.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


@pytest.mark.timeout(180)
def test_a_second_run_of_the_same_workers_is_refused_naming_the_ids_and_the_pid(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    """qa3 F8: the same `run --workers` started again (an operator who forgot it was running) claimed "this
    process leads" and started workers with the same ingest ids, which took the MQTT sessions from each other
    every half second for ever. Now it is refused before it starts anything, naming the ids and the pid."""
    config = _config(tmp_path, mosquitto, influxd, influx_db, 0)  # any free ports: worker k's is not the parent's + k
    log = tmp_path / "run.log"
    with open(log, "ab") as out:
        first = subprocess.Popen([URBANSENSE, "--config", str(config), "run", "--workers", "1", "--ingest-id", "t"],
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        _log_wait(log, r"\[t-w1\] mqtt: subscribed to \$share/urbansense/", 1, first)
        _log_wait(log, r"leadership acquired", 1, first)
        assert "this process leads" not in log.read_text()
        worker_pid = re.findall(r"ingest worker t-w1 started \(pid (\d+)\)", log.read_text())[0]

        runner = CliRunner()  # in this process: the lock is the other process's all the same
        again = runner.invoke(app, ["--config", str(config), "run", "--workers", "1", "--ingest-id", "t",
                                    "--metrics-port", str(free_port())], terminal_width=300)
        assert again.exit_code == 1, again.output
        assert f"error: ingest id t is already running on this machine (pid {first.pid})" in again.output
        assert "leads" not in again.output and "campaigns" not in again.output
        assert "ingest worker" not in again.output  # no worker was started

        by_hand = runner.invoke(app, ["--config", str(config), "run", "--role", "ingest", "--ingest-id", "t-w1",
                                      "--metrics-port", str(free_port())], terminal_width=300)
        assert by_hand.exit_code == 1, by_hand.output
        assert f"error: ingest id t-w1 is already running on this machine (pid {worker_pid})" in by_hand.output

        time.sleep(1)  # the running workers kept their session: nobody took it over
        assert "mqtt: lost" not in log.read_text() and first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
