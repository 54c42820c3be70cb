"""Flood alert latency under load: uplink publish → the desk webhook's receipt, and → the desk console's event.

    python benchmarks/alert_latency_bench.py [--rate 5000] [--duration 20] [--gauges 200] [--floods-per-s 10]

Starts a private Mosquitto and influxd on loopback, provisions background devices (noise, dust,
bins, parking) and `--gauges` water-level gauges, and runs the real `Service` in this process with
a webhook receiver (the emergency desk, route `emergency`) and the desk console enabled. One
publisher keeps `--rate` background uplinks/s flowing (pre-built ChirpStack events, one per device
per round); another floods one fresh gauge at a time to 32 cm (the `water.depth` rule's critical
level), `--floods-per-s` times a second. For each flood it records the time from just before its
publish to (a) the webhook's receipt of the critical notification and (b) the first console
`state` event (server-sent events, read by a logged-in client) that shows the alert; then prints
p50/p95/p99/max of both, the background rate actually achieved, and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
from loguru import logger

from collectors.lorawan.chirpstack import build_chirpstack_event
from core.device import Device
from provisioning.registry import Registry
from service.app import Service
from service.config import parse_config
from service.desk.auth import hash_password
from sim.daemons import Daemon, free_port, start_influxd, start_mosquitto
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet

PASSWORD = "bench-password-1"


def gauges(n: int) -> list[Device]:
    return [Device(f"WL-B{i:04d}", f"{0x24E1250000000000 + i:016x}", "milesight-em500-udl", "water_level",
                   39.80 + (i % 20) * 0.01, 116.30 + (i // 20) * 0.01, f"下穿通道 {i}", "朝阳", "建外街道",
                   install={"mount_height_mm": 2000.0}, expected_interval_s=3600) for i in range(n)]


def background_fleet(n: int) -> list[Device]:
    per = n // 4
    return demo_fleet({"noise": per, "dust": per, "bin_fill": per, "parking": n - 3 * per})


class Desk:
    """The emergency desk's webhook: the monotonic time each critical `water.depth` firing arrived."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        desk = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a desk's web server would

            def do_POST(self) -> None:
                t = time.perf_counter()
                body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if body.get("rule_id") == "water.depth" and body.get("severity") == "critical":
                    desk.received.setdefault(body["device_id"], t)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/desk"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Console:
    """A logged-in console client reading the server-sent events: when each flooded gauge first shows."""

    def __init__(self, url: str) -> None:
        self.seen: dict[str, float] = {}
        self.events = 0
        self.stop = threading.Event()
        self.client = httpx.Client(base_url=url, timeout=None)
        r = self.client.post("/login", data={"user": "bench", "password": PASSWORD}, follow_redirects=False)
        assert r.status_code == 303, r.text
        self.connected = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.connected.wait(10)

    def _read(self) -> None:
        with self.client.stream("GET", "/events") as r:
            self.connected.set()
            for line in r.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("data: "):
                    t = time.perf_counter()
                    self.events += 1
                    for a in orjson.loads(line[6:])["alerts"]:
                        if a["rule_id"] == "water.depth" and a["severity"] == "critical":
                            self.seen.setdefault(a["device_id"], t)


def pct(values: list[float], p: float) -> float:
    xs = sorted(values)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


STAGES: dict[str, dict[str, float]] = {"received": {}, "rule": {}, "stored": {}, "sending": {}}


def trace_stages() -> None:
    """Wrap the service's own methods to time the stages of a flood uplink (bench only)."""
    from alerts.notifiers.webhook import WebhookNotifier
    from service.alerting import RulesAndAlerts
    from service.pipeline import Pipeline

    to_reading, send = Pipeline.to_reading, WebhookNotifier.send
    collect, flush = RulesAndAlerts._collect, RulesAndAlerts.flush

    def to_reading_(self, msg):  # type: ignore[no-untyped-def]
        r = to_reading(self, msg)
        if r.device_id.startswith("WL-B"):
            STAGES["received"].setdefault(r.device_id, time.perf_counter())
        return r

    def collect_(self, transitions):  # type: ignore[no-untyped-def]
        transitions = list(transitions)
        for t in transitions:
            STAGES["rule"].setdefault(t.device_id, time.perf_counter())
        return collect(self, transitions)

    def flush_(self):  # type: ignore[no-untyped-def]
        devices = [t.device_id for t in self._pending]
        flush(self)
        for d in devices:
            STAGES["stored"].setdefault(d, time.perf_counter())

    async def send_(self, delivery):  # type: ignore[no-untyped-def]
        STAGES["sending"].setdefault(delivery.body.get("device_id", ""), time.perf_counter())
        return await send(self, delivery)

    Pipeline.to_reading, RulesAndAlerts._collect, RulesAndAlerts.flush = to_reading_, collect_, flush_  # type: ignore[method-assign]
    WebhookNotifier.send = send_  # type: ignore[method-assign]


def run(args: argparse.Namespace, tmp: Path) -> None:
    mosq: Daemon = start_mosquitto(tmp, port=free_port())
    influx: Daemon = start_influxd(tmp, port=free_port())
    try:
        flood_gauges = gauges(args.gauges)
        fleet = background_fleet(args.devices)
        desk = Desk()
        cfg = parse_config({
            "mqtt": {"port": mosq.port, "client_id": "bench-latency"},
            "influxdb": {"url": influx.url, "database": "bench"},
            "registry": {"path": str(tmp / "registry.sqlite")},
            "pipeline": {"dead_letter_path": str(tmp / "deadletter.sqlite")},
            "spool": {"path": str(tmp / "spool")},
            "metrics": {"port": 0}, "logging": {"level": "WARNING"},
            "rules": {"warm_up": False},
            "alerts": {"db_path": str(tmp / "alerts.sqlite"),
                       "receivers": {"desk": {"type": "webhook", "url": desk.url}},
                       "routes": [{"route": "emergency", "receivers": ["desk"]}]},
            "desk": {"enabled": True, "port": 0, "users": {"bench": hash_password(PASSWORD)}},
        }, base_dir=tmp, environ={})
        with Registry(cfg.path(cfg.registry.path)) as reg:
            for d in (*fleet, *flood_gauges):
                reg.add(d, by="bench")
        rounds = max(1, int(args.rate * args.duration / len(fleet)) + 1)
        print(f"pre-building {rounds} rounds × {len(fleet)} background uplinks …", flush=True)
        sim = FleetSimulator(fleet, Scenario("calm"), gateways=1)
        t0_ns = time.time_ns() - rounds * 1_000_000_000
        backlog = [u for r in range(rounds) for u in sim.round(float(r), t0_ns + r * 1_000_000_000)]
        flood_sim = FleetSimulator(flood_gauges, Scenario("calm"), gateways=1)

        holder: dict = {}
        started = threading.Event()

        def service() -> None:
            async def go() -> None:
                svc = Service(cfg)
                holder["svc"], holder["loop"] = svc, asyncio.get_running_loop()
                task = asyncio.create_task(svc.run())
                await svc.started.wait()
                started.set()
                await task
            asyncio.run(go())

        th = threading.Thread(target=service, daemon=True)
        th.start()
        assert started.wait(60), "service did not start"
        svc: Service = holder["svc"]
        assert svc.desk is not None
        console = Console(svc.desk.url)

        bg = Publisher("127.0.0.1", mosq.port, max_outstanding=5000)
        flood_pub = Publisher("127.0.0.1", mosq.port)
        stop = threading.Event()
        sent = [0]

        def background() -> None:
            interval = 1.0 / args.rate
            start = time.perf_counter()
            for i, u in enumerate(backlog):
                if stop.is_set():
                    break
                due = start + i * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                bg.publish(u.topic, u.event)
                sent[0] += 1

        bg_thread = threading.Thread(target=background, daemon=True)
        bg_t0 = time.perf_counter()
        received0 = svc.pipeline.stats.received if svc.pipeline else 0
        bg_thread.start()
        time.sleep(2.0)  # let the load settle
        published: dict[str, float] = {}
        deadline = time.perf_counter() + args.duration - 4
        for g in flood_gauges:
            if time.perf_counter() > deadline:
                break
            fields = flood_sim.fields_for(g, 0.0)
            fields["distance_mm"] = 2000.0 - 320.0
            info = flood_sim.model(g)
            payload, port = info.codec.encode(fields)
            topic, event = build_chirpstack_event(g.key, payload, port, 1, time.time_ns(),
                                                  [("a840410000000001", -90.0, 6.5)], os.urandom(16).hex())
            published[g.id] = time.perf_counter()
            flood_pub.publish(topic, event)
            time.sleep(1.0 / args.floods_per_s)
        time.sleep(3.0)
        stop.set()
        bg_thread.join(10)
        bg_elapsed = time.perf_counter() - bg_t0
        received = (svc.pipeline.stats.received if svc.pipeline else 0) - received0
        console.stop.set()
        holder["loop"].call_soon_threadsafe(svc.stop)
        th.join(60)
        bg.close()
        flood_pub.close()

        hook = [(desk.received[d] - t) * 1000 for d, t in published.items() if d in desk.received]
        seen = [(console.seen[d] - t) * 1000 for d, t in published.items() if d in console.seen]
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared)")
        print(f"background: {sent[0]} uplinks published in {bg_elapsed:.1f} s = {sent[0] / bg_elapsed:.0f}/s; "
              f"service received {received} ({received / bg_elapsed:.0f}/s)")
        print(f"floods: {len(published)} gauges; webhook got {len(hook)}, console showed {len(seen)}; "
              f"{console.events} console events")
        stages = [(f"publish → {k}", [(STAGES[k][d] - t) * 1000 for d, t in published.items() if d in STAGES[k]])
                  for k in STAGES] if args.stages else []
        for name, xs in (*stages, ("publish → desk webhook", hook), ("publish → console event", seen)):
            if xs:
                print(f"{name:26s} p50 {pct(xs, 50):6.1f} ms  p95 {pct(xs, 95):6.1f} ms  "
                      f"p99 {pct(xs, 99):6.1f} ms  max {max(xs):6.1f} ms  mean {statistics.mean(xs):6.1f} ms")
    finally:
        influx.stop()
        mosq.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=5000.0, help="background uplinks per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of background load")
    p.add_argument("--devices", type=int, default=2000, help="background devices")
    p.add_argument("--gauges", type=int, default=200, help="gauges available to flood (one flood each)")
    p.add_argument("--floods-per-s", type=float, default=10.0, help="floods per second")
    p.add_argument("--stages", action="store_true", help="also time the stages in between (wraps service methods)")
    args = p.parse_args()
    if args.stages:
        trace_stages()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    with tempfile.TemporaryDirectory(prefix="urbansense-latency-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
