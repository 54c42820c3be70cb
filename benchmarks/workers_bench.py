"""Ingest throughput through 1 and 2 worker processes (MQTT 5 shared subscription) vs. the raw pipe, one run.

    python benchmarks/workers_bench.py [--uplinks 50000] [--devices 1000]

The backlog of `e2e_bench.py` (ChirpStack v4 uplinks of ~1.35 KB, one per device a minute,
ending now) on a private Mosquitto and influxd. Every consumer's persistent session exists
before the backlog is published, so the broker queues the whole backlog for each: for the
1-worker run (share group `g1`, one member), for the 2-worker run (share group `g2`, two
members: the broker deals the backlog between their two sessions) and for the raw pipe.

Each run is the real `urbansense run --workers N` (N = 1, 2): the parent leads (it reads the
readings topic and runs the rules and alerts) and N child processes ingest: parse, decode,
write to InfluxDB, publish each chunk's readings to the readings topic, acknowledge the
uplinks after the broker's PUBACK. A run is timed from the moment every worker has connected
(log lines; the broker sends a session's queue right after CONNACK) to the poll of InfluxDB
that first counts all N points, over the points stored in that time (a worker that started
first has drained some already: start-up under load takes seconds); separately, to the
leader's `urbansense_bus_readings_total` reaching N. Each process's CPU seconds are printed.
The raw pipe as in `e2e_bench.py`. The machine's load average is printed before and after: on
a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from benchkit import TOPIC, bench_stack, create_session, fleet, publish_backlog
from e2e_bench import Counter, count_fields, machine, make_backlog, run_raw_pipe

from sim.daemons import Daemon, free_port

CLIENT_ID = "bench"
RAW_ID = "urbansense-bench-raw"


def write_config(tmp: Path, broker: Daemon, influxd: Daemon, run: str, metrics_port: int) -> Path:
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
port = {metrics_port}
[alerts]
db_path = "alerts-{run}.sqlite"
[rules]
warm_up = false
[logging]
level = "INFO"
[cluster]
share_group = "{run}"
leader_client_id = "leader-{run}"
""")
    return path


def leader_readings(port: int) -> float:
    """`urbansense_bus_readings_total` of the leader: readings the bus handed to its rules."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("urbansense_bus_readings_total "))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (from /proc), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_workers(tmp: Path, broker: Daemon, influxd: Daemon, run: str, workers: int, n: int,
                fields: dict[str, str]) -> tuple[float, float, dict[str, float], int]:
    """`urbansense run --workers N`: seconds from the moment every worker is subscribed to all N points counted
    in InfluxDB and to the leader having handed all N readings to its rules, CPU seconds by process (start-up
    included), and the points already stored at that moment (by the worker that started first)."""
    port = free_port()
    config = write_config(tmp, broker, influxd, run, port)
    log = tmp / f"{run}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "urbansense"), "--config", str(config), "run",
                                 "--workers", str(workers), "--ingest-id", run], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while len(re.findall(r"\[[-\w]+\] mqtt: connected to ", log.read_text())) < workers:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{run}: not every worker subscribed:\n{log.read_text()[-3000:]}")
            time.sleep(0.02)
        t0 = time.perf_counter()  # every worker is draining from here; what the first did before is left out
        counter = Counter(influxd.url, run, fields)
        before = counter.count()
        stored = counter.wait_for(n, 900, t0)
        deadline = time.monotonic() + 300
        while leader_readings(port) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{run}: the leader got {leader_readings(port):,.0f} of {n:,} readings")
            time.sleep(0.1)
        leader = time.perf_counter() - t0
        cpu = {"leader": cpu_s(proc.pid)}
        for name, pid in re.findall(r"ingest worker (\S+) started \(pid (\d+)\)", log.read_text()):
            cpu[name] = cpu_s(int(pid))
        return stored, leader, cpu, before
    finally:
        proc.terminate()
        proc.wait(120)
        text = log.read_text()
        if len(re.findall(r"subscribed to \$share", text)) < workers:
            raise SystemExit(f"{run}: not every worker subscribed to the shared subscription:\n{text[-3000:]}")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python benchmarks/workers_bench.py --uplinks 20000")
    ap.add_argument("--uplinks", type=int, default=50_000, help="backlog size (default 50,000)")
    ap.add_argument("--devices", type=int, default=1000, help="devices, split evenly over the five kinds")
    args = ap.parse_args()
    devices = fleet(args.devices)
    n = args.uplinks
    print(f"machine: {machine()}; load average {load()} (shared machine: other work runs beside this)")
    backlog = make_backlog(devices, n, "calm", 60)
    fields = count_fields(backlog)
    with bench_stack("workers-bench-", devices) as (tmp, broker, influxd):
        create_session(broker.port, f"{CLIENT_ID}-g1-g1-w1", f"$share/g1/{TOPIC}")  # <client_id>-<ingest id>
        for k in (1, 2):
            create_session(broker.port, f"{CLIENT_ID}-g2-g2-w{k}", f"$share/g2/{TOPIC}")
        create_session(broker.port, RAW_ID)
        print(f"published {n:,} uplinks in {publish_backlog(broker.port, backlog):.1f} s "
              "(queued for g1, g2 and the raw pipe)")
        results = {}
        for run, workers in (("g1", 1), ("g2", 2)):
            wall, leader, cpu, before = run_workers(tmp, broker, influxd, run, workers, n, fields)
            results[workers] = (n - before) / wall
            print(f"--workers {workers}: {n - before:,} uplinks stored in {wall:.2f} s = {results[workers]:,.0f} "
                  f"uplinks/s once every worker was up ({before:,} were stored before); the leader had all N "
                  f"readings after {leader:.2f} s (load average now {load()})")
            print("  CPU s by process (start-up included): " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
                  + f"; ingest {sum(v for k, v in cpu.items() if k != 'leader') / n * 1e6:.0f} µs/uplink, "
                  f"leader {cpu['leader'] / n * 1e6:.0f} µs/reading")
        raw_wall, _ = run_raw_pipe(broker, influxd, devices, n, fields)
        raw = n / raw_wall
        print(f"raw pipe: {n:,} uplinks in {raw_wall:.2f} s = {raw:,.0f} uplinks/s")
        for workers, rate in results.items():
            print(f"ratio {workers} worker(s) / raw pipe: {rate / raw:.2f}")
        print(f"ratio 2 workers / 1 worker: {results[2] / results[1]:.2f}; load average after {load()}; "
              f"cores {os.cpu_count()}")


if __name__ == "__main__":
    main()
