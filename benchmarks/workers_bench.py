"""Ingest throughput through 1 and 2 worker processes (MQTT 5 shared subscription) vs. the raw pipe, one run.

    python benchmarks/workers_bench.py [--uplinks 50000] [--devices 1000]

The backlog of `e2e_bench.py` (ChirpStack v4 uplinks of ~1.35 KB, one per device a minute,
ending now) on a private Mosquitto and influxd. Every consumer's persistent session exists
before the backlog is published, so the broker queues the whole backlog for each: for the
1-worker run (share group `g1`, one member), for the 2-worker run (share group `g2`, two
members: the broker deals the backlog between their two sessions) and for the raw pipe.

Each worker is a real `urbansense run --role ingest --ingest-id wK` process (cluster on): it
parses, decodes, writes to InfluxDB, then publishes each chunk's readings to the readings
topic and acknowledges the uplinks after the broker's PUBACK. No leader runs (nothing reads
the readings topic). A run is timed from the first worker's "connected" log line to the poll
of InfluxDB that first counts all N points; the raw pipe as in `e2e_bench.py`. The machine's
load average is printed before and after: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, str(Path(__file__).parent))
from e2e_bench import KINDS, TOPIC, Counter, count_fields, machine, make_backlog, run_raw_pipe
from e2e_bench import create_session as create_raw_session

from provisioning.registry import Registry
from sim.daemons import Daemon, free_port, start_influxd, start_mosquitto
from sim.simulator import Publisher, demo_fleet

CLIENT_ID = "bench"
RAW_ID = "urbansense-bench-raw"


def create_shared_session(port: int, client_id: str, group: str) -> None:
    """A persistent session subscribed to `$share/<group>/<uplink topic>`: the broker queues its share."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_connect = lambda client, *a: client.subscribe([(f"$share/{group}/{TOPIC}", SubscribeOptions(qos=1))])
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 7 * 24 * 3600
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    if not subscribed.wait(10):
        raise SystemExit(f"could not create the session of {client_id}")
    c.disconnect()
    c.loop_stop()


def write_config(tmp: Path, broker: Daemon, influxd: Daemon, run: str) -> Path:
    path = tmp / f"{run}.toml"
    path.write_text(f"""
[mqtt]
port = {broker.port}
client_id = "{CLIENT_ID}-{run}"
[influxdb]
url = "{influxd.url}"
database = "{run}"
[registry]
path = "registry.sqlite"
[pipeline]
dead_letter_path = "deadletter-{run}.sqlite"
[spool]
path = "spool-{run}"
[metrics]
enabled = false
[rules]
warm_up = false
[logging]
level = "INFO"
[cluster]
enabled = true
role = "ingest"
share_group = "{run}"
""")
    return path


def run_workers(tmp: Path, broker: Daemon, influxd: Daemon, run: str, workers: int, n: int,
                fields: dict[str, str]) -> float:
    """Start `workers` ingest processes; seconds from the first one's connect to all N points counted."""
    config = write_config(tmp, broker, influxd, run)
    exe = str(Path(sys.executable).parent / "urbansense")
    procs, logs = [], []
    for k in range(1, workers + 1):
        log = tmp / f"{run}-w{k}.log"
        logs.append(log)
        with open(log, "ab") as out:
            procs.append(subprocess.Popen([exe, "--config", str(config), "run", "--role", "ingest", "--ingest-id",
                                           f"w{k}", "--metrics-port", str(free_port())],
                                          stdout=out, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 120
        while not any("mqtt: connected" in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"{run}: no worker connected:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
            time.sleep(0.02)
        t0 = time.perf_counter()
        return Counter(influxd.url, run, fields).wait_for(n, 900, t0)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
        shared = [len(re.findall(r"subscribed to \$share", log.read_text())) for log in logs]
        if not all(shared):
            raise SystemExit(f"{run}: a worker never subscribed to the shared subscription")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python benchmarks/workers_bench.py --uplinks 20000")
    ap.add_argument("--uplinks", type=int, default=50_000, help="backlog size (default 50,000)")
    ap.add_argument("--devices", type=int, default=1000, help="devices, split evenly over the five kinds")
    args = ap.parse_args()
    devices = demo_fleet({k: max(1, args.devices // len(KINDS)) for k in KINDS})
    n = args.uplinks
    print(f"machine: {machine()}; load average {load()} (shared machine: other work runs beside this)")
    backlog = make_backlog(devices, n, "calm", 60)
    fields = count_fields(backlog)
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as tmpdir:
        tmp = Path(tmpdir)
        with Registry(tmp / "registry.sqlite") as reg:
            for d in devices:
                reg.add(d, by="bench")
        broker = start_mosquitto(tmp, autosave_interval=86_400)
        influxd = start_influxd(tmp)
        try:
            create_shared_session(broker.port, f"{CLIENT_ID}-g1-w1", "g1")
            for k in (1, 2):
                create_shared_session(broker.port, f"{CLIENT_ID}-g2-w{k}", "g2")
            create_raw_session(broker.port, RAW_ID)
            t = time.perf_counter()
            pub = Publisher("127.0.0.1", broker.port)
            for u in backlog:
                pub.publish(u.topic, u.event)
            pub.close()
            print(f"published {n:,} uplinks in {time.perf_counter() - t:.1f} s (queued for g1, g2 and the raw pipe)")
            results = {}
            for run, workers in (("g1", 1), ("g2", 2)):
                wall = run_workers(tmp, broker, influxd, run, workers, n, fields)
                results[workers] = n / wall
                print(f"{workers} worker(s): {n:,} uplinks in {wall:.2f} s = {n / wall:,.0f} uplinks/s "
                      f"(load average now {load()})")
            raw_wall, _ = run_raw_pipe(broker, influxd, devices, n, fields)
            raw = n / raw_wall
            print(f"raw pipe: {n:,} uplinks in {raw_wall:.2f} s = {raw:,.0f} uplinks/s")
            for workers, rate in results.items():
                print(f"ratio {workers} worker(s) / raw pipe: {rate / raw:.2f}")
            print(f"ratio 2 workers / 1 worker: {results[2] / results[1]:.2f}; load average after {load()}; "
                  f"cores {os.cpu_count()}")
        finally:
            broker.stop()
            influxd.stop()


if __name__ == "__main__":
    main()
