"""Issue 13 on the real `urbansense run` process (real Mosquitto, real influxd): a poison message at
the head of the persistent session after a SIGKILL is a dead letter, not a crash loop; a task that
dies turns `/readyz` 503 within a second and the process exits non-zero on its own.

No real input makes per-message processing raise any more, so the poison is made by the test-only
hook `URBANSENSE_FAULT_INJECT` (`service.faults`), set in the process's environment only.
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
from servicekit import recent_ns, write_run_config

from service.faults import ENV, FaultHook, InjectedFault, from_env
from sim.daemons import Daemon, free_port
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet
from storage.deadletter import DeadLetterStore

FLEET = demo_fleet({"noise": 11})
DEVICES, POISON = FLEET[:10], FLEET[10]


class Process:
    """`urbansense run` as a child process with its own config, log file and `/readyz` port."""

    def __init__(self, tmp: Path, broker: Daemon, influxd: Daemon, db: str, fault: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.config = write_run_config(tmp, broker, influxd, db, self.port, client_id=f"process-{db}", devices=FLEET,
                                       logging={"level": "INFO"})
        self.env = {**os.environ, ENV: fault}
        self.log_path = tmp / "service.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "urbansense"), "--config",
                                          str(self.config), "run"], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self.proc

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_subscribed(self, starts: int, timeout: float = 60) -> None:
        """Until the `starts`-th process has subscribed (its MQTT session is live)."""
        deadline = time.monotonic() + timeout
        while self.log().count("mqtt: subscribed to") < starts:
            assert self.proc is not None and self.proc.poll() is None, self.log()[-3000:]
            assert time.monotonic() < deadline, self.log()[-3000:]
            time.sleep(0.1)

    def readyz(self) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)

    def dead_letters(self) -> list:
        with DeadLetterStore(self.tmp / "deadletter.sqlite") as store:
            return store.list()


@pytest.fixture
def process(tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str,
            request: pytest.FixtureRequest) -> Iterator[Process]:
    p = Process(tmp_path, mosquitto, influxd, influx_db, request.param)
    yield p
    if p.proc is not None and p.proc.poll() is None:
        p.proc.kill()
        p.proc.wait(10)


def publish(broker: Daemon, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 and wait for the broker's acknowledgements; returns when (monotonic) the first left."""
    pub = Publisher("127.0.0.1", broker.port)
    sent = time.monotonic()
    for topic, event in messages:
        pub.publish(topic, event)
    assert pub.flush(60)
    pub.close()
    return sent


def test_the_fault_hook_is_off_unless_its_variable_is_set() -> None:
    assert ENV not in os.environ and from_env() is None
    assert from_env({ENV: ""}) is None
    hook = from_env({ENV: "message:abc"})
    assert hook == FaultHook("message", "abc")
    hook.on_message("other")
    with pytest.raises(InjectedFault):
        hook.on_message("abc")
    with pytest.raises(ValueError, match=ENV):
        from_env({ENV: "explode"})


@pytest.mark.slow
@pytest.mark.parametrize("process", [f"message:{POISON.key}"], indirect=True)
def test_sigkilled_process_restarted_with_poison_at_the_head_dead_letters_it_and_stores_the_next_1000(
        process: Process, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    proc = process.start()
    process.wait_subscribed(1)  # its persistent session exists at the broker
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL

    sim = FleetSimulator(FLEET, Scenario("calm"), seed=13)
    t1 = recent_ns(1)
    poison = sim.uplink(POISON, 0.0, t1 - 1_000_000)
    good = [sim.uplink(DEVICES[i % 10], float(i), t1 + i * 1000) for i in range(1000)]
    publish(mosquitto, [(poison.topic, poison.event), *((u.topic, u.event) for u in good)])

    proc = process.start()
    process.wait_subscribed(2)
    deadline = time.monotonic() + 90
    while len(stored := noise_times(influxd, influx_db, t1)) < 1000:
        assert proc.poll() is None, process.log()[-3000:]
        assert time.monotonic() < deadline, f"{len(stored)} of 1,000 stored\n{process.log()[-3000:]}"
        time.sleep(0.2)
    time.sleep(1)  # a crash loop would show now: the process must still be there, and ready
    assert proc.poll() is None, process.log()[-3000:]
    assert process.readyz().status_code == 200
    assert sorted(noise_times(influxd, influx_db, t1)) == sorted(u.time_ns for u in good)
    dead = process.dead_letters()
    assert [d.reason for d in dead] == ["internal_error"]
    assert "InjectedFault" in dead[0].detail and dead[0].payload == poison.event
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, process.log()[-3000:]

    process.start()  # acknowledged like any refusal: a third start is not handed the poison again
    process.wait_subscribed(3)
    time.sleep(2)
    assert len(process.dead_letters()) == 1
    assert "task pipeline died" not in process.log()


def noise_times(influxd: Daemon, db: str, since_ns: int) -> list[int]:
    series = influx_query(influxd, db, f'SELECT "laeq_db" FROM "noise" WHERE time >= {since_ns}')
    return [row[0] for s in series for row in s["values"]]


@pytest.mark.slow
@pytest.mark.parametrize("process", [f"task:{DEVICES[0].key}"], indirect=True)
def test_a_task_that_dies_in_the_real_process_turns_readyz_503_within_a_second_and_exits_non_zero(
        process: Process, mosquitto: Daemon) -> None:
    proc = process.start()
    process.wait_subscribed(1)
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=1) as http:
            while not stop.is_set():
                try:
                    r = http.get(f"http://127.0.0.1:{process.port}/readyz")
                    seen.append((time.monotonic(), r.status_code, r.text))
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not any(status == 200 for _, status, _ in seen):
        assert time.monotonic() < deadline, seen[-3:]
        time.sleep(0.05)
    u = FleetSimulator(DEVICES, Scenario("calm"), seed=1).uplink(DEVICES[0], 0.0, recent_ns())
    fault_sent = publish(mosquitto, [(u.topic, u.event)])  # the fault can only follow this
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("the process stalled instead of exiting\n" + process.log()[-3000:])
    finally:
        stop.set()
        thread.join(5)
    assert code != 0
    assert all(status == 200 for t, status, _ in seen if t < fault_sent)
    first_503 = next(((t, text) for t, status, text in seen if status == 503), None)
    assert first_503 is not None, seen[-5:]
    assert first_503[0] - fault_sent < 1.0  # the fault itself came after fault_sent: this bounds it from above
    assert "task pipeline" in first_503[1] and "InjectedFault" in first_503[1]
    log = process.log()
    assert "task pipeline died" in log and "Traceback" in log
