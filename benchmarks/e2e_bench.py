"""End-to-end ingest throughput: a broker backlog of ChirpStack uplinks into InfluxDB, service vs. a raw pipe.

    python benchmarks/e2e_bench.py [--uplinks 100000] [--devices 1000]

Starts a private Mosquitto and influxd on loopback (data in a temporary folder), provisions
D demo devices across the five kinds, creates the persistent sessions of both consumers,
then pre-publishes N realistic uplinks (~1.35 KB, 2 gateways in rxInfo) so the broker
queues the whole backlog for each. Then:

1. the real `Service` (manual acks after each batch is written) drains its queue;
2. a *raw pipe* drains the same backlog into its own database: paho QoS 1 subscriber
   (auto-ack), orjson parse, base64 decode, one precomputed-tag line per uplink, 5,000-line
   batches to `/write` from a writer thread, nothing else.

Each is timed from its connect to the poll of InfluxDB that first counts all N points
(`SELECT count(...)` per kind measurement, every 0.1 s). Also prints per-stage µs on a sample.
Mosquitto runs with a long `autosave_interval` here: saving a 260 MB queue every second
(the demo's setting) would measure the broker's disk, not the consumers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import queue
import sys
import threading
import time
from collections import Counter as Counter_
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as paho
from loguru import logger

sys.path.insert(0, str(Path(__file__).parent))
from benchkit import TOPIC, bench_stack, create_session, fleet, publish_backlog

from collectors.lorawan import parse as parse_envelope
from core.uplink import Incoming
from decoders import derive, get_model
from provisioning.view import RegistryView
from service.app import Service
from service.collectors import envelope_parsers
from service.config import parse_config
from service.dedup import Deduplicator
from service.metrics import Metrics
from service.pipeline import Pipeline
from sim.daemons import Daemon
from sim.simulator import FleetSimulator, Scenario, SimUplink
from storage.deadletter import DeadLetterStore
from storage.influx import InfluxClient
from storage.lineprotocol import encode_reading, tag_string
from storage.writer import BatchWriter

SERVICE_ID = "urbansense-bench-service"
RAW_ID = "urbansense-bench-raw"
T0_NS = 1_760_000_000_000_000_000
POLL_S = 0.1


def make_backlog(devices: list, n: int, scenario: str, interval_s: int) -> list[SimUplink]:
    """N uplinks, one round of the fleet every `interval_s`, ending now: the queue after an outage."""
    sim = FleetSimulator(devices, Scenario(scenario, ("朝阳",), ramp_s=3600), seed=11)
    rounds = -(-n // len(sim.devices))
    start_ns = (time.time_ns() // 1_000_000_000 - rounds * interval_s) * 1_000_000_000
    out: list[SimUplink] = []
    for r in range(rounds):
        out.extend(sim.round(float(r * interval_s), start_ns + r * interval_s * 1_000_000_000))
    return out[:n]


def count_fields(backlog: list[SimUplink]) -> dict[str, str]:
    """Per kind, a field every uplink of that kind stores (so its count is the kind's point count)."""
    common: dict[str, set[str]] = {}
    for u in backlog:
        keys = set(u.expected)
        common[u.device.kind] = common[u.device.kind] & keys if u.device.kind in common else keys
    return {kind: sorted(keys)[0] for kind, keys in common.items()}


class Counter:
    """Polls InfluxDB for the number of points per kind measurement in one database."""

    def __init__(self, url: str, db: str, fields: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.db = db
        self.q = ";".join(f'SELECT count("{f}") FROM "{k}"' for k, f in fields.items())

    def count(self) -> int:
        r = self.http.get("/query", params={"db": self.db, "q": self.q})
        r.raise_for_status()
        total = 0
        for result in r.json()["results"]:
            for series in result.get("series", []):
                total += series["values"][0][1]
        return total

    def wait_for(self, n: int, timeout: float, started: float) -> float:
        """Seconds from `started` to the first poll that counts `n` points."""
        deadline = time.perf_counter() + timeout
        last = -1
        while time.perf_counter() < deadline:
            last = self.count()
            if last >= n:
                return time.perf_counter() - started
            time.sleep(POLL_S)
        raise SystemExit(f"{self.db}: only {last:,} of {n:,} points after {timeout:.0f} s")


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of each live thread of this process, by thread name (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{t.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = "paho (service)" if t.name.startswith("paho-mqtt-client-") else t.name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def run_service(tmp: Path, broker: Daemon, influxd: Daemon, n: int, fields: dict[str, str],
                cfg_extra: dict) -> tuple[float, float, Service]:
    """The real service in a thread of its own; wall seconds connect→all stored, CPU seconds of this process."""
    data = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": SERVICE_ID},
        "influxdb": {"url": influxd.url, "database": "svc"},
        "registry": {"path": str(tmp / "registry.sqlite")},
        "pipeline": {"dead_letter_path": str(tmp / "deadletter.sqlite")},
        "metrics": {"port": 0},
        "logging": {"level": "WARNING"},
    }
    for section, values in cfg_extra.items():
        data.setdefault(section, {}).update(values)
    cfg = parse_config(data, base_dir=tmp, environ={})
    holder: dict = {}
    started = threading.Event()

    def main() -> None:
        async def go() -> None:
            svc = Service(cfg)
            holder["svc"], holder["loop"] = svc, asyncio.get_running_loop()
            task = asyncio.create_task(svc.run())
            await svc.started.wait()
            holder["t0"] = time.perf_counter()
            holder["c0"] = time.process_time()
            holder["threads0"] = thread_cpu()
            started.set()
            await task
        try:
            asyncio.run(go())
        except BaseException as exc:
            holder["error"] = exc
            started.set()

    t = threading.Thread(target=main, name="service", daemon=True)
    t.start()
    if not started.wait(30) or "error" in holder:
        raise SystemExit(f"service did not start: {holder.get('error')}")
    wall = Counter(influxd.url, "svc", fields).wait_for(n, 900, holder["t0"])
    cpu = time.process_time() - holder["c0"]
    before = holder["threads0"]
    per_thread = {k: v - before.get(k, 0.0) for k, v in thread_cpu().items()}
    print("service CPU by thread, s: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                   sorted(per_thread.items(), key=lambda kv: -kv[1]) if v >= 0.01))
    holder["loop"].call_soon_threadsafe(holder["svc"].stop)
    t.join(60)
    if "error" in holder:
        raise holder["error"]
    return wall, cpu, holder["svc"]


def raw_line_maker(devices: list) -> Callable[[bytes], bytes]:
    """orjson parse, base64 decode, one line with per-device tag strings precomputed."""
    heads = {d.key: f"{d.kind}{tag_string(d.tags())}" for d in devices}
    loads, b64 = orjson.loads, base64.b64decode

    def line(payload: bytes) -> bytes:
        doc = loads(payload)
        data = b64(doc["data"])
        fcnt = doc["fCnt"]
        rssi = max(rx.get("rssi", 0) for rx in doc["rxInfo"])
        head = heads[doc["deviceInfo"]["devEui"]]
        return f"{head} fcnt={fcnt}i,rssi={rssi}i,size={len(data)}i {T0_NS + fcnt * 1_000_000_000}\n".encode()

    return line


def run_raw_pipe(broker: Daemon, influxd: Daemon, devices: list, n: int, fields: dict[str, str]) -> tuple[float, float]:
    httpx.post(f"{influxd.url}/query", params={"q": 'CREATE DATABASE "raw"'}).raise_for_status()
    make_line = raw_line_maker(devices)
    batches: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
    lock = threading.Lock()
    current: list[bytes] = []

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        nonlocal current
        line = make_line(msg.payload)
        with lock:
            current.append(line)
            if len(current) >= 5000:
                batches.put(current)
                current = []

    def writer() -> None:
        nonlocal current
        with httpx.Client(base_url=influxd.url, timeout=60) as http:
            while True:
                try:
                    batch = batches.get(timeout=0.1)
                except queue.Empty:
                    with lock:
                        batch, current = current, []
                    if not batch:
                        continue
                if batch is None:
                    return
                http.post("/write", params={"db": "raw"}, content=b"".join(batch)).raise_for_status()

    w = threading.Thread(target=writer, daemon=True)
    w.start()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=RAW_ID, protocol=paho.MQTTv311, clean_session=False)
    c.on_message = on_message
    c.on_connect = lambda client, *a: client.subscribe(TOPIC, qos=1)
    t0, c0 = time.perf_counter(), time.process_time()
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    before = thread_cpu()
    wall = Counter(influxd.url, "raw", dict.fromkeys(fields, "fcnt")).wait_for(n, 900, t0)
    cpu = time.process_time() - c0
    per_thread = {k: v - before.get(k, 0.0) for k, v in thread_cpu().items()}
    print("raw pipe CPU by thread, s: " + ", ".join(f"{k.replace('service', 'raw')} {v:.2f}" for k, v in
                                                    sorted(per_thread.items(), key=lambda kv: -kv[1]) if v >= 0.01))
    c.disconnect()
    c.loop_stop()
    batches.put(None)
    w.join(10)
    return wall, cpu


def per_call_us(fn: Callable[[], object], items: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - start) / items * 1e6)
    return best


def stage_costs(tmp: Path, sample: list[SimUplink], devices: list) -> dict[str, float]:
    """µs per uplink of each pipeline stage, best of 3 passes over `sample`."""
    view = RegistryView(tmp / "registry.sqlite")
    dead = DeadLetterStore(tmp / "stage-deadletters.sqlite")
    # each pass replays the same frames: the duplicate window is off, or passes 2 and 3 would only skip
    pipe = Pipeline(view=view, writer=BatchWriter(InfluxClient("http://127.0.0.1:9", "x")), deadletters=dead,
                    metrics=Metrics(), parsers=envelope_parsers(), dedup=Deduplicator(0))
    ups = [parse_envelope(u.topic, u.event, 0) for u in sample]
    models = {d.model: get_model(d.model) for d in devices}
    devs = [view.by_key[up.device_key] for up in ups]
    incoming = [Incoming("lorawan", u.topic, u.event, u.time_ns + 200_000_000) for u in sample]
    readings = [r for m in incoming for r in pipe.to_readings(m)]
    raw_line = raw_line_maker(devices)
    k = len(sample)

    def decode() -> None:
        for up, d in zip(ups, devs, strict=True):
            m = models[d.model]
            derive(d.kind, m.codec.decode(up.payload, up.port).fields, d.install, m)

    out = {
        "envelope parse (collectors.lorawan.parse)": per_call_us(
            lambda: [parse_envelope(u.topic, u.event, 0) for u in sample], k),
        "decode + derive": per_call_us(decode, k),
        "line protocol (encode_reading, 2 lines)": per_call_us(lambda: [encode_reading(r) for r in readings], k),
        "Pipeline.to_readings + encode_reading": per_call_us(
            lambda: [encode_reading(r) for m in incoming for r in pipe.to_readings(m)], k),
        "Pipeline.process_chunk (1,000-uplink chunks)": per_call_us(
            lambda: [pipe.process_chunk(incoming[i:i + 1000]) for i in range(0, k, 1000)], k),
        "raw pipe: orjson + base64 + 1 line": per_call_us(lambda: [raw_line(u.event) for u in sample], k),
    }
    view.close()
    dead.close()
    return out


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return f"{os.cpu_count()} cores, {model}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python benchmarks/e2e_bench.py --uplinks 50000 --devices 500")
    ap.add_argument("--uplinks", type=int, default=100_000, help="backlog size (default 100,000)")
    ap.add_argument("--devices", type=int, default=1000, help="devices, split evenly over the five kinds")
    ap.add_argument("--scenario", choices=("calm", "rainstorm"), default="calm",
                    help="calm: steady state; rainstorm: flooding districts, many alerts")
    ap.add_argument("--interval", type=int, default=60, help="seconds between a device's uplinks (default 60)")
    ap.add_argument("--sample", type=int, default=5000, help="uplinks timed per stage")
    ap.add_argument("--skip-raw", action="store_true", help="only the service (for profiling)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a service config value, e.g. --set influxdb.batch_size=10000")
    args = ap.parse_args()
    logger.remove()
    logger.add(lambda m: print(m, end=""), level="WARNING")
    cfg_extra: dict = {}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        try:
            cfg_extra.setdefault(section, {})[name] = orjson.loads(value)
        except orjson.JSONDecodeError:
            cfg_extra.setdefault(section, {})[name] = value

    devices = fleet(args.devices)
    n = args.uplinks
    print(f"machine: {machine()}; {len(devices)} devices, {n:,} uplinks, scenario {args.scenario}, "
          f"one uplink per device every {args.interval} s")
    t = time.perf_counter()
    backlog = make_backlog(devices, n, args.scenario, args.interval)
    size = sum(len(u.event) for u in backlog) / n
    fields = count_fields(backlog)
    print(f"generated {n:,} uplinks (mean {size:,.0f} bytes) in {time.perf_counter() - t:.1f} s")

    with bench_stack("e2e-bench-", devices) as (tmp, broker, influxd):
        create_session(broker.port, SERVICE_ID)
        create_session(broker.port, RAW_ID)
        print(f"published the backlog in {publish_backlog(broker.port, backlog):.1f} s (queued for both sessions)")

        stages = stage_costs(tmp, backlog[:args.sample], devices)
        svc_wall, svc_cpu, svc = run_service(tmp, broker, influxd, n, fields, cfg_extra)
        stats = svc.pipeline.stats if svc.pipeline else None
        if svc.alerting is not None:
            rules = Counter_(f"{t.rule_id}→{t.to_state}" for t in svc.alerting.recent)
            print(f"alert transitions during the run: {svc.alerting.transitions:,} (last 50: {dict(rules)})")
        print(f"service : {n:,} uplinks in {svc_wall:.2f} s = {n / svc_wall:,.0f} uplinks/s "
              f"(process CPU {svc_cpu:.2f} s = {svc_cpu / n * 1e6:.0f} µs/uplink; "
              f"rejected {dict(stats.rejected) if stats else '?'})")
        if args.skip_raw:
            raw_wall = raw_cpu = float("nan")
        else:
            raw_wall, raw_cpu = run_raw_pipe(broker, influxd, devices, n, fields)
            print(f"raw pipe: {n:,} uplinks in {raw_wall:.2f} s = {n / raw_wall:,.0f} uplinks/s "
                  f"(process CPU {raw_cpu:.2f} s = {raw_cpu / n * 1e6:.0f} µs/uplink)")
            print(f"ratio service / raw pipe: {raw_wall / svc_wall:.2f}")
        print("per-stage cost, µs per uplink (best of 3 over "
              f"{min(args.sample, n):,} uplinks of the backlog):")
        for name, us in stages.items():
            print(f"  {name:<46} {us:7.1f}")


if __name__ == "__main__":
    main()
