"""Flood alert latency under load: uplink publish → the desk webhook's receipt, and → the desk console's event.

    python benchmarks/alert_latency_bench.py [--rate 5000] [--duration 20] [--gauges 200] [--floods-per-s 10]

Starts a private Mosquitto and influxd on loopback, provisions background devices (noise, dust,
bins, parking) and `--gauges` water-level gauges, and runs the real `Service` with a webhook
receiver (the emergency desk, route `emergency`) and the desk console enabled. Every part that
is not the service runs in a process of its own, so that none of them shares the service's GIL
(the first version ran the publishers in the service's process: they reached 1,461 uplinks/s):

* the service: one process, as `urbansense run` would be;
* background publishers (`--publishers`, default 1): pre-built ChirpStack events, one per device
  per round, `--rate` uplinks/s in total;
* the flood publisher: floods one fresh gauge at a time to 32 cm (the `water.depth` rule's
  critical level), `--floods-per-s` times a second;
* the console client: logged in, reading the server-sent events;
* this process: the desk's webhook receiver.

Times are read from CLOCK_MONOTONIC (`time.clock_gettime_ns`), which Linux keeps system-wide, so
a flood publisher's "just before publish" and this process's "received" are on one clock and
no wall-clock step (NTP) can bend them. For each flood it prints p50/p95/p99/max from that
publish to (a) the webhook's receipt of the critical notification and (b) the first console
`state` event that shows the alert; also the background rate published and ingested, the
processes' CPU use and the load average. `--stages` also times the service's own stages
(network thread: paho hands the message on; received: `Pipeline.to_readings`; rule: transition;
stored: committed; sending: the webhook's send starts; wrappers installed in the service process).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
from loguru import logger

from collectors.lorawan.chirpstack import build_chirpstack_event
from core.device import Device
from provisioning.registry import Registry
from service import app
from service.app import Service
from service.config import parse_config
from service.desk.auth import hash_password
from sim.daemons import Daemon, free_port, start_influxd, start_mosquitto
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet

PASSWORD = "bench-password-1"


def now_ns() -> int:
    """CLOCK_MONOTONIC: one system-wide clock for every process of the bench (Linux)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def gauges(n: int) -> list[Device]:
    return [Device(f"WL-B{i:04d}", f"{0x24E1250000000000 + i:016x}", "milesight-em500-udl", "water_level",
                   39.80 + (i % 20) * 0.01, 116.30 + (i // 20) * 0.01, f"下穿通道 {i}", "朝阳", "建外街道",
                   install={"mount_height_mm": 2000.0}, expected_interval_s=3600) for i in range(n)]


def background_fleet(n: int) -> list[Device]:
    per = n // 4
    return demo_fleet({"noise": per, "dust": per, "bin_fill": per, "parking": n - 3 * per})


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---- the processes ------------------------------------------------------------------------------------


def wait_start(go: Any, start: Any, out: Any, name: str) -> int:
    """Say `name` is ready, wait for the common start, return its CLOCK_MONOTONIC ns."""
    out.put(("ready", name))
    go.wait()
    while now_ns() < start.value:
        time.sleep(0.0005)
    return int(start.value)


def background_process(port: int, fleet: list[Device], rate: float, duration: float, go: Any, start: Any,
                       stop: Any, out: Any) -> None:
    """Publish pre-built uplinks of `fleet` at `rate`/s from the start until `stop` or the backlog ends."""
    rounds = max(1, int(rate * duration / len(fleet)) + 1)
    sim = FleetSimulator(fleet, Scenario("calm"), gateways=1)
    t0_ns = time.time_ns() - rounds * 1_000_000_000
    backlog = [u for r in range(rounds) for u in sim.round(float(r), t0_ns + r * 1_000_000_000)]
    pub = Publisher("127.0.0.1", port, max_outstanding=5000)
    start_ns = wait_start(go, start, out, "background")
    cpu0 = cpu_s()
    interval_ns = 1e9 / rate
    sent = 0
    for i, u in enumerate(backlog):
        if stop.is_set():
            break
        delay = (start_ns + i * interval_ns - now_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        pub.publish(u.topic, u.event)
        sent += 1
    elapsed = (now_ns() - start_ns) / 1e9
    pub.close()
    out.put(("background", {"sent": sent, "elapsed_s": elapsed, "cpu_s": cpu_s() - cpu0}))


def flood_process(port: int, flood_gauges: list[Device], floods_per_s: float, settle_s: float, floods_s: float,
                  go: Any, start: Any, out: Any) -> None:
    """Flood one gauge at a time to 32 cm; report the CLOCK_MONOTONIC time just before each publish."""
    sim = FleetSimulator(flood_gauges, Scenario("calm"), gateways=1)
    pub = Publisher("127.0.0.1", port)
    published: dict[str, int] = {}
    start_ns = wait_start(go, start, out, "flood") + int(settle_s * 1e9)
    end_ns = start_ns + int(floods_s * 1e9)
    while now_ns() < start_ns:
        time.sleep(0.001)
    for g in flood_gauges:
        if now_ns() > end_ns:
            break
        fields = sim.fields_for(g, 0.0)
        fields["distance_mm"] = 2000.0 - 320.0
        payload, fport = sim.model(g).codec.encode(fields)
        topic, event = build_chirpstack_event(g.key, payload, fport, 1, time.time_ns(),
                                              [("a840410000000001", -90.0, 6.5)], os.urandom(16).hex())
        published[g.id] = now_ns()
        pub.publish(topic, event)
        time.sleep(1.0 / floods_per_s)
    pub.close()
    out.put(("floods", published))


STAGES: dict[str, dict[str, int]] = {"network thread": {}, "received": {}, "rule": {}, "stored": {},
                                     "sending": {}}
GC_PAUSES_MS: dict[int, list[float]] = {}


def trace_stages() -> None:
    """Wrap the service's own methods to time the stages of a flood uplink (bench only, service process)."""
    from alerts.notifiers.webhook import WebhookNotifier
    from collectors.mqtt import MqttConsumer
    from service.alerting import RulesAndAlerts
    from service.pipeline import Pipeline

    to_readings, send, collect = Pipeline.to_readings, WebhookNotifier.send, RulesAndAlerts._collect
    on_message = MqttConsumer._on_message
    first_gauge = int(gauges(1)[0].key, 16)

    def on_message_(self, client, userdata, message):  # type: ignore[no-untyped-def]
        parts = message.topic.split("/")
        if "device" in parts and parts.index("device") + 1 < len(parts):
            i = int(parts[parts.index("device") + 1], 16) - first_gauge
            if 0 <= i < 100_000:
                STAGES["network thread"].setdefault(f"WL-B{i:04d}", now_ns())
        return on_message(self, client, userdata, message)

    MqttConsumer._on_message = on_message_  # type: ignore[method-assign]
    threaded = hasattr(RulesAndAlerts, "_store")  # (before the commit thread: `flush` on the loop)
    store: Any = RulesAndAlerts._store if threaded else RulesAndAlerts.flush

    def to_readings_(self, msg):  # type: ignore[no-untyped-def]
        rs = to_readings(self, msg)
        for r in rs:
            if r.device_id.startswith("WL-B"):
                STAGES["received"].setdefault(r.device_id, now_ns())
        return rs

    def collect_(self, transitions):  # type: ignore[no-untyped-def]
        transitions = list(transitions)
        for t in transitions:
            STAGES["rule"].setdefault(t.device_id, now_ns())
        return collect(self, transitions)

    def store_(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        pending = args[0] if args else list(self._pending)
        store(self, *args, **kwargs)
        for t in pending:
            STAGES["stored"].setdefault(t.device_id, now_ns())

    async def send_(self, delivery):  # type: ignore[no-untyped-def]
        STAGES["sending"].setdefault(delivery.body.get("device_id", ""), now_ns())
        return await send(self, delivery)

    Pipeline.to_readings, RulesAndAlerts._collect = to_readings_, collect_  # type: ignore[method-assign]
    setattr(RulesAndAlerts, "_store" if threaded else "flush", store_)
    WebhookNotifier.send = send_  # type: ignore[method-assign]

    started: dict[int, int] = {}

    def gc_pause(phase: str, info: dict) -> None:
        gen = info["generation"]
        if phase == "start":
            started[gen] = now_ns()
        elif gen in started:
            GC_PAUSES_MS.setdefault(gen, []).append((now_ns() - started.pop(gen)) / 1e6)
    gc.callbacks.append(gc_pause)


def service_process(raw_cfg: dict, base_dir: str, knobs: dict[str, Any], stop: Any, out: Any) -> None:
    """Run the real `Service` until `stop` is set; report its desk URL, then its counts, CPU and stages.
    `knobs` are the experiments of the command line (chunk size, switch interval, gc.freeze)."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if knobs["stages"]:
        trace_stages()
    if hasattr(app, "tune_process"):  # as `urbansense run` does
        app.tune_process()
    if knobs["switch_interval_ms"]:
        sys.setswitchinterval(knobs["switch_interval_ms"] / 1000)
    cfg = parse_config(raw_cfg, base_dir=Path(base_dir), environ={})

    async def go() -> None:
        svc = Service(cfg)
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(svc.run())
        await svc.started.wait()
        assert svc.desk is not None and svc.pipeline is not None
        if knobs["chunk_size"]:
            svc.pipeline.chunk_size = knobs["chunk_size"]
        if knobs["gc_freeze"] == "on" or (knobs["gc_freeze"] == "as-is" and hasattr(app, "freeze_startup_heap")):
            gc.collect()  # as `urbansense run` does after start-up
            gc.freeze()
        out.put(("started", svc.desk.url))
        threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(svc.stop)), daemon=True).start()
        cpu0, received0, t0 = cpu_s(), svc.pipeline.stats.received, now_ns()
        await task
        assert svc.alerting is not None
        out.put(("service", {"received": svc.pipeline.stats.received - received0, "cpu_s": cpu_s() - cpu0,
                             "elapsed_s": (now_ns() - t0) / 1e9, "stages": STAGES, "gc": GC_PAUSES_MS,
                             "transitions": svc.alerting.transitions,
                             "delivered": svc.alerting.alerts.worker.stats.delivered}))
    asyncio.run(go())


# ---- the receivers (this process) ---------------------------------------------------------------------


class Desk:
    """The emergency desk's webhook: when each critical `water.depth` firing arrived (CLOCK_MONOTONIC ns)."""

    def __init__(self) -> None:
        self.received: dict[str, int] = {}
        desk = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a desk's web server would

            def do_POST(self) -> None:
                t = now_ns()
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


def console_process(url: str, out: Any) -> None:
    """A logged-in console client reading the server-sent events until the service ends them: when each
    flooded gauge first shows. A process of its own: parsing a storm's snapshots must not hold the GIL of
    the desk's webhook receiver."""
    seen: dict[str, int] = {}
    events = 0
    client = httpx.Client(base_url=url, timeout=None)
    r = client.post("/login", data={"user": "bench", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303, r.text
    try:
        with client.stream("GET", "/events") as r:
            out.put(("ready", "console"))
            for line in r.iter_lines():
                if line.startswith("data: "):
                    t = now_ns()
                    events += 1
                    for a in orjson.loads(line[6:])["alerts"]:
                        if a["rule_id"] == "water.depth" and a["severity"] == "critical":
                            seen.setdefault(a["device_id"], t)
    except httpx.HTTPError:
        pass  # the service stopped
    out.put(("console", {"seen": seen, "events": events}))


def pct(values: list[float], p: float) -> float:
    xs = sorted(values)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def config(args: argparse.Namespace, tmp: Path, mosq: Daemon, influx: Daemon, desk: Desk) -> dict:
    return {
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
    }


def run(args: argparse.Namespace, tmp: Path) -> None:
    ctx = mp.get_context("spawn")
    mosq: Daemon = start_mosquitto(tmp, port=free_port(), **({} if args.broker_nodelay == "as-is"
                                                             else {"tcp_nodelay": args.broker_nodelay == "on"}))
    influx: Daemon = start_influxd(tmp, port=free_port())
    procs: list[Any] = []
    stop_service, stop_background = ctx.Event(), ctx.Event()
    try:
        flood_gauges = gauges(args.gauges)
        fleet = background_fleet(args.devices)
        desk = Desk()
        raw = config(args, tmp, mosq, influx, desk)
        cfg = parse_config(raw, base_dir=tmp, environ={})
        with Registry(cfg.path(cfg.registry.path)) as reg:
            for d in (*fleet, *flood_gauges):
                reg.add(d, by="bench")
        out = ctx.Queue()
        service = ctx.Process(target=service_process, name="service",
                              args=(raw, str(tmp), {"stages": args.stages, "chunk_size": args.chunk_size,
                                                    "switch_interval_ms": args.switch_interval_ms,
                                                    "gc_freeze": args.gc_freeze}, stop_service, out))
        service.start()
        procs.append(service)
        kind, url = out.get(timeout=120)
        assert kind == "started", kind
        console = ctx.Process(target=console_process, args=(url, out), name="console", daemon=True)
        console.start()
        procs.append(console)
        kind, _name = out.get(timeout=60)
        assert kind == "ready", kind

        n = args.publishers
        go, start = ctx.Event(), ctx.Value("q", 0)
        for i in range(n):
            p = ctx.Process(target=background_process, name=f"background-{i}",
                            args=(mosq.port, fleet[i::n], args.rate / n, args.duration, go, start, stop_background,
                                  out))
            p.start()
            procs.append(p)
        flood = ctx.Process(target=flood_process, name="flood",
                            args=(mosq.port, flood_gauges, args.floods_per_s, args.settle,
                                  args.duration - args.settle - 3, go, start, out))
        flood.start()
        procs.append(flood)
        print(f"{n} background publisher(s) pre-building …", flush=True)
        for _ in range(n + 1):
            kind, _name = out.get(timeout=300)
            assert kind == "ready", kind
        start.value = now_ns() + 200_000_000
        go.set()

        results: dict[str, Any] = {"background": []}
        while len(results["background"]) < n or "floods" not in results:
            kind, value = out.get(timeout=args.duration + 120)
            if kind == "background":
                results["background"].append(value)
            else:
                results[kind] = value
            if "floods" in results and not stop_background.is_set():
                time.sleep(3.0)  # the last floods' notifications
                stop_background.set()
        load = os.getloadavg()
        stop_service.set()
        while "service" not in results or "console" not in results:
            kind, value = out.get(timeout=120)
            results[kind] = value
        report(args, results, desk, load)
    finally:
        stop_background.set()
        stop_service.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
        influx.stop()
        mosq.stop()


def report(args: argparse.Namespace, results: dict[str, Any], desk: Desk, load: tuple[float, float, float]) -> None:
    published: dict[str, int] = results["floods"]
    svc, console = results["service"], results["console"]
    bg = results["background"]
    sent = sum(b["sent"] for b in bg)
    elapsed = max(b["elapsed_s"] for b in bg)
    pub_cpu = sum(b["cpu_s"] for b in bg)
    hook = [(desk.received[d] - t) / 1e6 for d, t in published.items() if d in desk.received]
    seen = [(console["seen"][d] - t) / 1e6 for d, t in published.items() if d in console["seen"]]
    knobs = {k: v for k in ("chunk_size", "switch_interval_ms", "gc_freeze", "broker_nodelay")
             if (v := getattr(args, k)) not in (0, "as-is")}
    print(f"rate {args.rate:g}/s, {args.devices} background devices, {args.floods_per_s:g} floods/s"
          + (f"; {knobs}" if knobs else ""))
    print(f"machine: {os.cpu_count()} CPUs (shared), load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"(1 / 5 / 15 min)")
    print(f"background: {sent} uplinks published in {elapsed:.1f} s = {sent / elapsed:.0f}/s "
          f"({len(bg)} process(es), {pub_cpu / elapsed:.0%} of a core); service received {svc['received']} "
          f"({svc['received'] / svc['elapsed_s']:.0f}/s over its {svc['elapsed_s']:.1f} s, "
          f"{svc['cpu_s'] / svc['elapsed_s']:.0%} of a core)")
    print(f"floods: {len(published)} gauges; webhook got {len(hook)}, console showed {len(seen)}; "
          f"{console['events']} console events; {svc['transitions']} alert transitions in all, "
          f"{svc['delivered']} notifications delivered")
    for gen, pauses in sorted(svc["gc"].items()):
        print(f"GC generation {gen}: {len(pauses)} collections, max {max(pauses):.1f} ms, "
              f"total {sum(pauses):.0f} ms")
    stages = svc["stages"]
    rows = [(f"publish → {k}", [(stages[k][d] - t) / 1e6 for d, t in published.items() if d in stages[k]])
            for k in stages] if args.stages else []
    for name, xs in (*rows, ("publish → desk webhook", hook), ("publish → console event", seen)):
        if xs:
            print(f"{name:26s} p50 {pct(xs, 50):6.1f} ms  p95 {pct(xs, 95):6.1f} ms  "
                  f"p99 {pct(xs, 99):6.1f} ms  max {max(xs):6.1f} ms  mean {statistics.mean(xs):6.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=5000.0, help="background uplinks per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of background load")
    p.add_argument("--devices", type=int, default=2000, help="background devices")
    p.add_argument("--publishers", type=int, default=1, help="background publisher processes")
    p.add_argument("--gauges", type=int, default=200, help="gauges available to flood (one flood each)")
    p.add_argument("--floods-per-s", type=float, default=10.0, help="floods per second")
    p.add_argument("--settle", type=float, default=2.0, help="seconds of background load before the first flood")
    p.add_argument("--chunk-size", type=int, default=0, help="the pipeline's chunk size (0 = the service's own)")
    p.add_argument("--switch-interval-ms", type=float, default=0.0,
                   help="the service's sys.setswitchinterval, ms (0 = as `urbansense run` sets it)")
    p.add_argument("--gc-freeze", choices=("on", "off", "as-is"), default="as-is",
                   help="gc.freeze() the service's start-up heap or not (as-is: as `urbansense run` does)")
    p.add_argument("--broker-nodelay", choices=("on", "off", "as-is"), default="as-is",
                   help="Mosquitto's set_tcp_nodelay (as-is: as `sim.daemons` writes it; off: Mosquitto's default)")
    p.add_argument("--stages", action="store_true", help="also time the stages in between (wraps service methods)")
    args = p.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    with tempfile.TemporaryDirectory(prefix="urbansense-latency-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
