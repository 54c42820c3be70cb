"""Issue 19, hot standby: two `urbansense run` processes on a real Mosquitto, influxd and PostgreSQL.

A rainstorm at 500 uplinks/s (200 dry gauges in the background, 3 flooding ones); the flood cases
open; the leader is SIGKILLed in the middle; the standby leads within 10 s, escalates the cases at
27 cm and (after the killed instance is back as a standby and PostgreSQL itself has been restarted)
closes them when the water falls. At the end every published uplink is in InfluxDB exactly once
and every notification reached its receiver exactly once (counted by Idempotency-Key).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import influx_query
from test_alerting_e2e import CROSS, FALL, MIN, RISE, WATER, Fleet, accepted, flood_cases, keys

from alerts.store import AlertStore
from alerts.testing import RecordingServer
from collectors.lorawan.chirpstack import build_chirpstack_event
from core.device import Device
from decoders import get_model
from provisioning.registry import Registry
from sim.daemons import Daemon, PostgresDaemon, free_port, start_postgres, stop_process
from sim.simulator import Publisher

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RATE = 500                      # uplinks a second, all devices together
DRY = [Device(f"WL-BG-{i:03d}", f"24e12472{i:08x}", "milesight-em500-udl", "water_level", 39.80 + i / 1000,
              116.30, f"海淀区 道路 {i}", "海淀", install={"mount_height_mm": 2000.0}, expected_interval_s=3600)
       for i in range(200)]
TAKEOVER_S = 10.0
DATABASE = True
"""The shared state in PostgreSQL (the acceptance); False runs the same story on SQLite files and a file lock."""


class Instance:
    """One `urbansense run --role both` process with its own metrics port, dead letters and log."""

    def __init__(self, name: str, folder: Path, config_text: str) -> None:
        self.name = name
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "config.toml"
        self.config.write_text(config_text.replace("@METRICS_PORT@", str(self.port)))
        self.log_path = folder / "service.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "urbansense"), "--config", str(self.config),
                                          "run", "--role", "both", "--ingest-id", self.name],
                                         stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def leads(self) -> bool:
        if not self.alive():
            return False
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        except httpx.HTTPError:
            return False
        m = re.search(r"^urbansense_leader (\S+)$", text, re.M)
        return bool(m) and float(m.group(1)) == 1.0

    def readyz(self) -> tuple[int, str]:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=10)
            return r.status_code, r.text
        except httpx.HTTPError as exc:
            return 0, f"{type(exc).__name__}: {exc}"

    def ready(self) -> bool:
        return self.readyz()[0] == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 40)


def wait_until(cond, timeout: float, what: str, instances: list[Instance]) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(0.1)
    tails = "\n".join(f"--- {i.name} /readyz {i.readyz()}\n" + "\n".join(i.log().splitlines()[-25:])
                      for i in instances)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tails}")


STORM = """
import sys
sys.path.insert(0, "tests")
from test_failover import storm_main
storm_main(*sys.argv[1:])
"""


def storm_main(port: str, rate: str, out: str, stop: str) -> None:
    """The storm's own process (off the test's GIL): `rate` uplinks a second from the dry gauges until the
    file `stop` exists, then every one acknowledged by the broker; writes {device: count} and the seconds."""
    pub = Publisher("127.0.0.1", int(port))
    info = get_model(DRY[0].model)
    payload, fport = info.codec.encode(
        {**{n: r.snap((r.lo + r.hi) / 2) for n, r in info.ranges.items()}, "distance_mm": 1990.0,
         "battery_pct": 90, **({"tilted": False} if "tilted" in info.ranges else {})})
    sent: Counter[str] = Counter()
    t0 = time.monotonic()
    n = 0
    while not Path(stop).exists():
        due = int((time.monotonic() - t0) * int(rate))
        while n < due:
            d = DRY[n % len(DRY)]
            sent[d.id] += 1
            topic, event = build_chirpstack_event(d.key, payload, fport, sent[d.id], time.time_ns(),
                                                  [("a840410000000001", -90.0, 6.5)], str(uuid.uuid4()))
            pub.publish(topic, event)
            n += 1
        time.sleep(0.01)
    seconds = time.monotonic() - t0
    ok = pub.flush(60)
    pub.close()
    Path(out).write_text(json.dumps({"sent": sent, "seconds": seconds, "flushed": ok}))


class Storm:
    """`storm_main` in a child process; `stop()` returns ({device: uplinks published}, seconds, all acked)."""

    def __init__(self, port: int, rate: int, folder: Path) -> None:
        self.out, self.stop_file = folder / "storm.json", folder / "storm.stop"
        self.proc = subprocess.Popen([sys.executable, "-c", STORM, str(port), str(rate), str(self.out),
                                      str(self.stop_file)], cwd=ROOT)

    def stop(self) -> tuple[Counter[str], float, bool]:
        self.stop_file.touch()
        self.proc.wait(90)
        got = json.loads(self.out.read_text())
        return Counter(got["sent"]), got["seconds"], got["flushed"]


def config_text(tmp: Path, mosquitto: Daemon, influxd: Daemon, db: str, database_url: str, name: str,
                cases: RecordingServer, desk: RecordingServer) -> str:
    return f"""
[mqtt]
port = {mosquitto.port}
client_id = "{f"failover-{db}"[:40]}"
[influxdb]
url = "{influxd.url}"
database = "{db}"
flush_interval_s = 0.1
[registry]
path = "{tmp / 'registry.sqlite'}"
[pipeline]
dead_letter_path = "{tmp / name / 'deadletter.sqlite'}"
[metrics]
port = @METRICS_PORT@
[logging]
level = "INFO"
[rules]
tick_interval_s = 0.5
{f'[database]{chr(10)}url = "{database_url}"' if database_url else ""}
[cluster]
enabled = true
takeover_s = {TAKEOVER_S}
readings_topic = "failover/{db}/readings"
leader_client_id = "leader-{db}"
share_group = "g-{db}"
[alerts]
db_path = "{tmp / 'alerts.sqlite'}"
default_receivers = []
[alerts.outbox]
base_delay_s = 0.2
max_delay_s = 2.0
poll_interval_s = 0.2
jitter = 0.0
[alerts.receivers.cases]
type = "case_platform"
url = "{cases.url}"
edition = "cjt214"
district_codes = {{ "朝阳" = "110105" }}
[alerts.receivers.desk]
type = "webhook"
url = "{desk.url}/flood"
[[alerts.routes]]
route = "emergency"
receivers = ["desk", "cases"]
[[alerts.routes]]
route = "case"
receivers = ["cases"]
"""


def influx_count(influxd: Daemon, db: str) -> dict[str, int]:
    series = influx_query(influxd, db, 'SELECT count("depth_mm") FROM "water_level" GROUP BY "device_id"')
    return {s["tags"]["device_id"]: s["values"][0][1] for s in series}


def test_the_standby_takes_over_a_killed_leader_in_a_rainstorm_nothing_lost_nothing_twice(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    postgres = start_postgres(tmp_path / "pg")  # our own cluster: restarting the session's would cut other tests off
    try:
        _storm_and_failover(tmp_path, mosquitto, influxd, influx_db, postgres, postgres.dsn())
    finally:
        postgres.stop()
        shutil.rmtree(postgres.data_dir.parent, ignore_errors=True)


def _storm_and_failover(tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, postgres: PostgresDaemon,
                        pg_dsn: str) -> None:
    with Registry(pg_dsn if DATABASE else tmp_path / "registry.sqlite") as reg:
        for d in (*WATER, *DRY):
            reg.add(d, by="test")
    with RecordingServer() as cases, RecordingServer() as desk:
        instances = [Instance(name, tmp_path / name,
                              config_text(tmp_path, mosquitto, influxd, influx_db, pg_dsn if DATABASE else "", name,
                                          cases, desk))
                     for name in ("a", "b")]
        fleet = Fleet(mosquitto.port)
        base = time.time_ns() - 60 * MIN
        storm: Storm | None = None
        try:
            for inst in instances:
                inst.start()
            wait_until(lambda: sum(i.leads() for i in instances) == 1, 60, "one leader", instances)
            # ready: the standby stands by, the leader has its part running and its bus session subscribed
            wait_until(lambda: all(i.ready() for i in instances), 60, "both instances ready", instances)
            storm = Storm(mosquitto.port, RATE, tmp_path)
            fleet.water(0, RISE, base)
            wait_until(lambda: sum(1 for b in flood_cases(cases) if b["action"] == "open") == 3, 60,
                       "the 3 flood cases opened", instances)
            time.sleep(2.0)

            # the leader dies mid-storm
            leader = next(i for i in instances if i.leads())
            standby = next(i for i in instances if i is not leader)
            killed_at, killed_wall = time.monotonic(), time.time()
            leader.kill()
            led_at = wait_until(standby.leads, 3 * TAKEOVER_S, "the standby to lead", instances)
            takeover_s = led_at - killed_at
            assert takeover_s <= TAKEOVER_S, f"the standby led {takeover_s:.1f} s after the kill"
            warm_s = wait_until(standby.ready, 60, "the new leader warm and reading", instances) - killed_at
            # systemd brings the killed process back, as a standby now: its ingest id's MQTT session holds
            # its share of the uplinks sent meanwhile (Mosquitto keeps queueing a dead member's share)
            leader.start()
            fleet.water(12, CROSS, base)
            wait_until(lambda: sum(1 for b in flood_cases(cases) if b["action"] == "update"
                                   and b["severity"] == "critical") >= 3, 60, "the 3 cases escalated", instances)
            fleet.water(19, FALL, base)
            wait_until(lambda: sum(1 for b in flood_cases(cases) if b["action"] == "close") == 3, 90,
                       "the 3 cases closed", instances)
            assert standby.leads() and not leader.leads(), "the cases must be escalated and closed by the new leader"
            closed_wall = time.time()

            # PostgreSQL restarts under both, mid-storm: leadership comes back, nothing is lost
            wait_until(leader.ready, 60, "the restarted instance ready", instances)
            if DATABASE:
                postgres.stop()
                time.sleep(2.0)
                postgres.restart()
            wait_until(lambda: sum(i.leads() for i in instances) == 1 and all(i.ready() for i in instances),
                       3 * TAKEOVER_S, "leadership re-established after PostgreSQL's restart", instances)
            time.sleep(3.0)  # the storm goes on under the re-established leader
        finally:
            if storm is not None:
                sent, storm_s, flushed = storm.stop()
            else:
                for inst in instances:
                    inst.stop()
        try:  # every later failure stops the instances too
            assert flushed and fleet.pub.flush(60)
            published = Counter(sent)
            published.update({d.id: fleet.fcnt[d.id] for d in WATER})
            wait_until(lambda: influx_count(influxd, influx_db) == dict(published), 90,
                       "every published uplink stored", instances)
            time.sleep(2.0)  # a late duplicate notification would arrive now
        finally:
            for inst in instances:
                inst.stop()
            fleet.pub.close()

        rate = sum(sent.values()) / storm_s
        assert rate >= 0.9 * RATE, f"the storm ran at {rate:.0f} uplinks/s"
        # exactly once: InfluxDB holds one point per published uplink (a redelivery overwrites itself)
        assert influx_count(influxd, influx_db) == dict(published)
        # every transition notified exactly once, counted by Idempotency-Key: each outbox row of the shared
        # alert store was delivered, under its own key, and no receiver got a key the store does not have.
        # The same key twice is allowed only for a delivery the killed leader had under way (the receiver
        # accepted it before the kill; the new leader, finding it unrecorded, sent it again after).
        store = AlertStore(pg_dsn if DATABASE else tmp_path / "alerts.sqlite")
        try:
            rows = store.outbox(limit=100_000)
        finally:
            store.close()
        assert rows and all(r.delivered_ns is not None for r in rows), [r for r in rows if r.delivered_ns is None]
        for name, srv in (("cases", cases), ("desk", desk)):
            assert set(keys(srv)) == {f"{r.fingerprint}:{r.seq}" for r in rows if r.receiver == name}, name
            for key, n in Counter(keys(srv)).items():
                if n > 1:
                    times = [r.time for r in srv.accepted if r.headers["idempotency-key"] == key]
                    assert n == 2 and times[0] < killed_wall < times[1], (name, key, times, killed_wall)
        # one case per gauge: opened before the kill, escalated and closed by the new leader
        for d in WATER:
            mine = [b for b in flood_cases(cases) if b["device_id"] == d.id]
            actions = [b["action"] for b in mine]
            assert actions.count("open") == 1 and actions.count("close") == 1, (d.id, actions)
            assert actions[0] == "open" and actions[-1] == "close", (d.id, actions)
            assert any(b["action"] == "update" and b["severity"] == "critical" for b in mine), (d.id, actions)
            # the escalation and the close were sent by the new leader: after the kill, before PostgreSQL's restart
            late = [r.time for r in cases.accepted if r.json.get("device_id") == d.id
                    and (r.json.get("action") == "close" or r.json.get("severity") == "critical")]
            assert late and all(killed_wall < t <= closed_wall for t in late), (d.id, late, killed_wall)
            desk_mine = [b for b in accepted(desk) if b["device_id"] == d.id]
            assert {b["rule_id"] for b in desk_mine if b["status"] == "resolved"} == {"water.rising", "water.depth"}
        for inst in instances:
            assert "leadership acquired" in inst.log() or inst is not standby
        print(f"leader after {takeover_s:.1f} s, warm and reading after {warm_s:.1f} s; "
              f"{sum(published.values())} uplinks at {rate:.0f}/s")
