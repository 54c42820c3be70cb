"""Node-RED's loss-free rate beside urbansense's (one process), on this machine, in one run.

    sh benchmarks/nodered/install.sh                       # once: npm installs Node-RED 4 into var/nodered
    python benchmarks/nodered/nodered_bench.py [--rates 500,1000,2000,4000] [--seconds 20] [--grace 10]

Starts a private Mosquitto and influxd on loopback (data in a temporary folder) and the same
ChirpStack v4 uplinks as benchmarks/e2e_bench.py (`sim.simulator.FleetSimulator`: ~1.35 KB
events, 2 gateways in rxInfo), here from a fleet of Dragino LDDS75 water-level gauges so that
Node-RED's function node can decode them as Dragino's own decoder does. For each system in turn:

- Node-RED 4 (the flow is built here: mqtt in QoS 1 on a persistent session → function
  `decode.js` → join 1,000 lines or 0.2 s → http request POST /write; editor and admin API off,
  loopback only, no telemetry; `--nodered-clean-session` for the mqtt node's default session);
- urbansense: `urbansense run`, one process, default settings (rules, quality judge, dead
  letters, acknowledgement after the write);

it publishes at each rate for `--seconds` (QoS 1, paced, from a raw-socket publisher whose
packets are built before the clock runs), then counts the points stored (`count(depth_mm)` over
the step's own time window) until all are there, `--grace` seconds have passed (a system that
stored them all by then *kept up*), or a further `--drain` seconds have passed and the count
has stopped growing for 60 s (what is still missing then is *lost*; a backlog still draining
is waited for up to 10 minutes). The ramp stops at the first step with a loss. Printed per step: the
rate reached, points stored, resident memory, load average (the machine is shared). Never
leaves loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from provisioning.registry import Registry
from sim.daemons import Daemon, free_port, start_influxd, start_mosquitto, stop_process, wait_http_ok
from sim.simulator import FleetSimulator, Scenario, SimUplink, demo_fleet
from storage.lineprotocol import tag_string

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TOPIC = "application/+/device/+/event/up"
MODEL = "dragino-ldds75"
ID = {name: f"7b1f0c1d2e3a4b{i:02x}" for i, name in enumerate(("tab", "broker", "in", "decode", "join", "write",
                                                                 "check"), 1)}
"""Node ids of the flow in Node-RED's own shape (16 hex digits; a short word may clash with a type's name)."""
STEP_GAP_NS = 3600 * 10**9
"""Each step's uplinks carry times in an hour of their own, so a step's points are counted alone."""
STALL_S = 60.0
"""After the drain time, a count that has not grown for this long means the missing points are lost."""
MAX_WAIT_S = 600.0


def fleet(n: int) -> list:
    """`n` LDDS75 water-level gauges (2 m mount height) of the demo fleet's shape."""
    return [dataclasses.replace(d, model=MODEL, install={"mount_height_mm": 2000.0})
            for d in demo_fleet({"water_level": n})]


def step_uplinks(devices: list, rate: int, seconds: float, base_ns: int, seed: int) -> list[SimUplink]:
    """rate × seconds uplinks: rounds of the fleet one second apart in event time from `base_ns`."""
    sim = FleetSimulator(devices, Scenario("rainstorm", ("朝阳",), ramp_s=600), seed=seed)
    n = int(rate * seconds)
    out: list[SimUplink] = []
    r = 0
    while len(out) < n:
        out.extend(sim.round(float(r), base_ns + r * 10**9))
        r += 1
    return out[:n]


class RawPublisher:
    """A minimal MQTT 3.1.1 QoS 1 publisher over a plain socket: the packets are built before the clock runs
    and written in slices, so that on a loaded machine the publisher is not what limits the rate (paho's
    Python publisher tops out near 700 messages/s here under load). PUBACKs are counted by a reader thread;
    at most `window` messages are outstanding."""

    def __init__(self, port: int, window: int = 30_000) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_id = f"nodered-bench-pub-{os.getpid()}".encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(client_id).to_bytes(2, "big") + client_id
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = self.sock.recv(4)
        if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
            raise SystemExit(f"broker refused the publisher: {connack!r}")
        self.window = window
        self.sent = 0
        self.acked = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        pending = b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            pending += data
            whole = len(pending) // 4 * 4  # only PUBACKs (4 bytes) come back on this connection
            self.acked += whole // 4
            pending = pending[whole:]

    @staticmethod
    def packets(uplinks: list[SimUplink]) -> list[tuple[bytes, bytes]]:
        """(fixed header + topic, payload) of each QoS 1 PUBLISH; the packet id goes between them."""
        out = []
        for u in uplinks:
            topic = u.topic.encode()
            head = b"\x32" + _varint(2 + len(topic) + 2 + len(u.event)) + len(topic).to_bytes(2, "big") + topic
            out.append((head, u.event))
        return out

    def publish_paced(self, packets: list[tuple[bytes, bytes]], rate: int) -> float:
        """Send at `rate` per second (in 5 ms slices); returns seconds until the broker acknowledged the last."""
        start = time.monotonic()
        i = 0
        n = len(packets)
        while i < n:
            due = min(n, int((time.monotonic() - start) * rate) + 1)
            due = min(due, i + self.window - (self.sent - self.acked))  # at most `window` unacknowledged
            if due > i:
                chunk = []
                for head, payload in packets[i:due]:
                    self.sent += 1
                    chunk += (head, (self.sent % 65535 + 1).to_bytes(2, "big"), payload)
                self.sock.sendall(b"".join(chunk))
                i = due
            time.sleep(0.005)
        while self.acked < self.sent:
            time.sleep(0.005)
        return time.monotonic() - start

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")
        self.sock.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Points:
    """Counts stored points (`count(depth_mm)` of `water_level`) in a time window of one database."""

    def __init__(self, url: str, db: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.db = db
        self.http.post("/query", params={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()

    def count(self, lo_ns: int, hi_ns: int) -> int:
        q = f'SELECT count("depth_mm") FROM "water_level" WHERE time >= {lo_ns} AND time < {hi_ns}'
        r = self.http.get("/query", params={"db": self.db, "q": q})
        r.raise_for_status()
        series = r.json()["results"][0].get("series") or []
        return int(series[0]["values"][0][1]) if series else 0


def node_red_flow(devices: list, broker_port: int, influx_url: str, db: str, *, clean_session: bool) -> list[dict]:
    """The flow: mqtt in → decode.js → join (1,000 lines or 0.2 s) → http request POST /write.
    `clean_session=False` (a fixed client id and a persistent session, as urbansense keeps) is the careful
    setting; True is the mqtt-broker node's default."""
    table = {d.key: {"head": f"water_level{tag_string(d.tags())}", "mount": d.install["mount_height_mm"]}
             for d in devices}
    return [
        {"id": ID["tab"], "type": "tab", "label": "ChirpStack → InfluxDB"},
        {"id": ID["broker"], "type": "mqtt-broker", "name": "bench broker", "broker": "127.0.0.1",
         "port": str(broker_port), "clientid": "nodered-bench", "autoConnect": True, "usetls": False,
         "protocolVersion": "4", "keepalive": "30", "cleansession": clean_session, "birthTopic": "", "closeTopic": "",
         "willTopic": ""},
        {"id": ID["in"], "type": "mqtt in", "z": ID["tab"], "name": "uplinks", "topic": TOPIC, "qos": "1",
         "datatype": "json", "broker": ID["broker"], "nl": False, "rap": True, "rh": 0, "inputs": 0,
         "wires": [[ID["decode"]]]},
        {"id": ID["decode"], "type": "function", "z": ID["tab"], "name": "LDDS75 → line protocol",
         "func": (HERE / "decode.js").read_text(encoding="utf-8"), "outputs": 1, "timeout": 0, "noerr": 0,
         "initialize": f"context.set('devices', {json.dumps(table, ensure_ascii=False)});", "finalize": "",
         "libs": [], "wires": [[ID["join"]]]},
        {"id": ID["join"], "type": "join", "z": ID["tab"], "name": "batch", "mode": "custom", "build": "string",
         "property": "payload", "propertyType": "msg", "key": "topic", "joiner": "\\n", "joinerType": "str",
         "accumulate": False, "timeout": "0.2", "count": "1000", "reduceRight": False, "wires": [[ID["write"]]]},
        {"id": ID["write"], "type": "http request", "z": ID["tab"], "name": "InfluxDB /write", "method": "POST",
         "ret": "txt", "paytoqs": "ignore", "url": f"{influx_url}/write?db={db}&precision=ns", "tls": "",
         "persist": True, "proxy": "", "insecureHTTPParser": False, "authType": "", "senderr": False,
         "headers": [], "wires": [[ID["check"]]]},
        {"id": ID["check"], "type": "function", "z": ID["tab"], "name": "write refused?", "outputs": 0,
         "func": "if (msg.statusCode !== 204) { node.error('InfluxDB write ' + msg.statusCode + ': ' + "
                 "msg.payload, msg); }\nreturn null;", "wires": []},
    ]


def wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exited {proc.returncode} before {text!r}:\n{log.read_text()[-3000:]}")
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"no {text!r} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start_node_red(tmp: Path, home: Path, devices: list, broker: Daemon, influxd: Daemon, *,
                   clean_session: bool) -> subprocess.Popen:
    red = home / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        raise SystemExit(f"{red} not found: run `sh benchmarks/nodered/install.sh` first")
    user_dir = tmp / "node-red"
    user_dir.mkdir(exist_ok=True)  # a restart (--crash) keeps the flow and its session
    (user_dir / "flows.json").write_text(json.dumps(node_red_flow(devices, broker.port, influxd.url, "nodered",
                                                                  clean_session=clean_session),
                                                    ensure_ascii=False, indent=1))
    log = tmp / "node-red.log"
    ui_port = free_port()
    env = {**os.environ, "NODE_RED_BENCH_PORT": str(ui_port), "NODE_RED_DISABLE_TELEMETRY": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(["node", str(red), "--settings", str(HERE / "settings.js"), "--userDir",
                                 str(user_dir), "--no-telemetry"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    wait_for_line(log, "Connected to broker", proc, 60)
    for path in ("/", "/flows", "/settings"):  # editor and admin API off (settings.js: httpAdminRoot false)
        try:
            status = httpx.get(f"http://127.0.0.1:{ui_port}{path}", timeout=10).status_code
        except httpx.ConnectError:
            continue  # no HTTP server at all: nothing to reach
        if status != 404:
            proc.kill()
            raise SystemExit(f"Node-RED answers {path} with {status}: its editor or admin API is on")
    proc.log = log  # type: ignore[attr-defined]
    return proc


def start_urbansense(tmp: Path, devices: list, broker: Daemon, influxd: Daemon) -> subprocess.Popen:
    if not (tmp / "registry.sqlite").exists():  # a restart (--crash) keeps the registry
        with Registry(tmp / "registry.sqlite") as reg:
            for d in devices:
                reg.add(d, by="bench")
    port = free_port()
    cfg = tmp / "urbansense.toml"
    cfg.write_text(f"""[mqtt]
port = {broker.port}
client_id = "urbansense-nodered-bench"
[influxdb]
url = "{influxd.url}"
database = "urbansense"
[metrics]
port = {port}
[logging]
level = "INFO"
[registry]
path = "registry.sqlite"
[pipeline]
dead_letter_path = "deadletter.sqlite"
[alerts]
db_path = "alerts.sqlite"
[spool]
path = "spool"
""")
    log = tmp / "urbansense.log"
    exe = Path(sys.executable).parent / "urbansense"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe), "--config", str(cfg), "run"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=tmp)
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", 90, proc=proc, log=log)
    proc.log = log  # type: ignore[attr-defined]
    proc.metrics_port = port  # type: ignore[attr-defined]
    return proc


def rss_mib(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, MiB, from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


@dataclasses.dataclass
class Verdict:
    kept_up: int = 0
    """highest rate whose every point was stored within the grace period after publishing ended"""
    loss_free: int = 0
    """highest rate with no point lost for good (stored within grace + drain)"""


def ramp(name: str, proc: subprocess.Popen, points: Points, broker: Daemon, devices: list, rates: list[int],
         seconds: float, grace: float, drain: float, base_ns: int) -> Verdict:
    """Steps of increasing rate until one loses points for good (or a backlog outlasts `drain`)."""
    verdict = Verdict()
    for k, rate in enumerate(rates):
        lo = base_ns + k * STEP_GAP_NS
        uplinks = step_uplinks(devices, rate, seconds, lo, seed=k)
        hi = uplinks[-1].time_ns + 1
        packets = RawPublisher.packets(uplinks)
        del uplinks
        load = os.getloadavg()[0]
        pub = RawPublisher(broker.port)
        took = pub.publish_paced(packets, rate)
        pub.close()
        sent = len(packets)
        end = time.monotonic()
        stored = points.count(lo, hi)
        progress = end
        while stored < sent and proc.poll() is None:
            now = time.monotonic()
            if now - end > grace + drain and (now - progress > STALL_S or now - end > MAX_WAIT_S):
                break  # past the drain time and stalled (or out of patience): the rest is lost
            time.sleep(0.5)
            before, stored = stored, points.count(lo, hi)
            if stored > before:
                progress = time.monotonic()
        waited = time.monotonic() - end
        rss, peak = rss_mib(proc.pid) if proc.poll() is None else (0.0, 0.0)
        in_grace = stored == sent and waited <= grace + 0.5
        outcome = (f"all within {waited:.1f} s" if in_grace else
                   f"all, but only {waited:.0f} s after the last (late)" if stored == sent else
                   f"LOST {sent - stored:,} (none more stored in the {STALL_S:.0f} s before {waited:.0f} s "
                   f"after the last)" if waited < MAX_WAIT_S else
                   f"{sent - stored:,} still missing {waited:.0f} s after the last (still arriving)")
        print(f"  {name:<10} {rate:>6,}/s  published {sent:>7,} in {took:5.1f} s ({sent / took:>6,.0f}/s)  "
              f"stored {stored:>7,}: {outcome}  RSS {rss:,.0f} MiB (peak {peak:,.0f})  load {load:.1f}", flush=True)
        if proc.poll() is not None:
            tail = proc.log.read_text(errors="replace").splitlines()[-8:]  # type: ignore[attr-defined]
            print(f"  {name} exited {proc.returncode}; its log ends:\n    " + "\n    ".join(tail), flush=True)
            break
        if stored < sent:
            tail = proc.log.read_text(errors="replace").splitlines()[-12:]  # type: ignore[attr-defined]
            print(f"  {name} log ends:\n    " + "\n    ".join(tail), flush=True)
            port = getattr(proc, "metrics_port", None)
            if port and proc.poll() is None:
                m = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                print("  " + "; ".join(line for line in m.splitlines() if line.startswith((
                    "urbansense_mqtt_messages_received_total", "urbansense_mqtt_messages_acked_total",
                    "urbansense_spool_bytes", "urbansense_queue_depth", "urbansense_write_failures_total",
                    "urbansense_points_spooled_total"))), flush=True)
        if in_grace and verdict.kept_up == (rates[k - 1] if k else 0):
            verdict.kept_up = rate
        if stored < sent:
            break
        verdict.loss_free = rate
    return verdict


def crash_step(name: str, start: Callable[[], subprocess.Popen], points: Points, broker: Daemon, devices: list,
               rate: int, seconds: float, drain: float, base_ns: int) -> None:
    """Publish at `rate` for `seconds`; halfway through SIGKILL the system and start it again at once (same
    config, same MQTT session); then count what was stored. What a process had taken from the broker but
    not yet written is lost only if it acknowledged it first."""
    uplinks = step_uplinks(devices, rate, seconds, base_ns, seed=99)
    hi = uplinks[-1].time_ns + 1
    packets = RawPublisher.packets(uplinks)
    del uplinks
    proc = start()
    pub = RawPublisher(broker.port)
    publisher = threading.Thread(target=pub.publish_paced, args=(packets, rate), daemon=True)
    publisher.start()
    time.sleep(seconds / 2)
    before = points.count(base_ns, hi)
    proc.kill()
    proc.wait(30)
    proc = start()
    publisher.join()
    pub.close()
    end = time.monotonic()
    stored, progress, progress_at = 0, end, 0.0
    while stored < len(packets) and time.monotonic() - end < MAX_WAIT_S:
        now = time.monotonic()
        if now - end > drain and now - progress > STALL_S:
            break
        time.sleep(0.5)
        count = points.count(base_ns, hi)
        if count > stored:
            stored, progress, progress_at = count, time.monotonic(), time.monotonic() - end
    stop_process(proc, 60)
    lost = len(packets) - stored
    print(f"  {name:<10} kill -9 halfway through {len(packets):,} uplinks at {rate:,}/s ({before:,} stored before "
          f"the kill), restarted: stored {stored:,} (the last {progress_at:.0f} s after publishing ended): "
          f"{'none lost' if not lost else f'LOST {lost:,}'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python benchmarks/nodered/nodered_bench.py --rates 500,1000,2000")
    ap.add_argument("--rates", default="500,1000,2000,3000,4000,6000,8000", help="uplinks/s per step, increasing")
    ap.add_argument("--seconds", type=float, default=20.0, help="publishing time per step (default 20)")
    ap.add_argument("--grace", type=float, default=10.0, help="seconds after a step for the last points (default 10)")
    ap.add_argument("--drain", type=float, default=60.0,
                    help="after the grace, how long a backlog may still drain before its points count as lost")
    ap.add_argument("--devices", type=int, default=200, help="LDDS75 gauges in the fleet (default 200)")
    ap.add_argument("--nodered-home", type=Path, default=ROOT / "var" / "nodered",
                    help="where install.sh put node_modules/node-red (default var/nodered)")
    ap.add_argument("--nodered-clean-session", action="store_true",
                    help="Node-RED's mqtt-broker default (clean session) instead of a persistent session")
    ap.add_argument("--crash", type=int, default=1000, metavar="RATE",
                    help="after the ramp, kill -9 each system halfway through a step at RATE/s (0 = skip)")
    ap.add_argument("--only", choices=("node-red", "urbansense"), help="run one system only")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    devices = fleet(args.devices)
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    red_pkg = args.nodered_home / "node_modules" / "node-red" / "package.json"
    red_version = json.loads(red_pkg.read_text())["version"] if red_pkg.exists() else "?"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()} at start (shared machine); "
          f"Node-RED {red_version} on node {node_version}; {len(devices)} {MODEL} gauges; "
          f"{args.seconds:.0f} s per step, {args.grace:.0f} s grace", flush=True)
    base_ns = (time.time_ns() // 10**9 - 5 * 86400) * 10**9
    results: dict[str, Verdict] = {}
    with tempfile.TemporaryDirectory(prefix="nodered-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broker = start_mosquitto(tmp, autosave_interval=86_400)
        influxd = start_influxd(tmp)
        try:
            for name in ("node-red", "urbansense"):
                if args.only and args.only != name:
                    continue
                points = Points(influxd.url, "nodered" if name == "node-red" else "urbansense")

                def start(name: str = name) -> subprocess.Popen:
                    if name == "node-red":
                        return start_node_red(tmp, args.nodered_home, devices, broker, influxd,
                                              clean_session=args.nodered_clean_session)
                    return start_urbansense(tmp, devices, broker, influxd)

                proc = start()
                try:
                    results[name] = ramp(name, proc, points, broker, devices, rates, args.seconds, args.grace,
                                         args.drain, base_ns)
                finally:
                    stop_process(proc, 60)
                base_ns += len(rates) * STEP_GAP_NS
                if args.crash:
                    crash_step(name, start, points, broker, devices, args.crash, args.seconds, args.drain, base_ns)
                    base_ns += STEP_GAP_NS
        finally:
            broker.stop()
            influxd.stop()
    for name, v in results.items():
        print(f"{name}: kept up (all stored within {args.grace:.0f} s) to {v.kept_up:,} uplinks/s; "
              f"loss-free to {v.loss_free:,} uplinks/s (rates tried: {args.rates})")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
