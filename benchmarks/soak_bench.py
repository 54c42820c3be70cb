"""Soak: the whole service at a steady uplink rate for a long time, printing its RSS over time.

    python benchmarks/soak_bench.py --rate 3000 --devices 1000 --minutes 60

Starts a private Mosquitto and influxd on loopback, provisions the demo fleet (the five kinds
in equal shares), runs the real service (`urbansense run`, rules presets on) as a child
process, and publishes ChirpStack uplinks at `--rate` per second, live: every device in turn,
each uplink stamped with the current time. Uplinks are made from a pool of templates
(`--variants` per device, made by the simulator beforehand) whose time and fCnt are filled in
at publish time, so that making them costs the publisher ~2 µs, not the simulator's ~160 µs.
Every `--every` seconds it prints the child's RSS (from /proc), the uplinks published and
stored (the service's `/metrics`), and its rule state (`urbansense_rule_state_*`).
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from core.rfc3339 import format_rfc3339_ns
from sim.daemons import free_port, stop_process, wait_http_ok
from sim.simulator import FleetSimulator, Publisher, Scenario

sys.path.insert(0, str(Path(__file__).parent))
from benchkit import bench_stack, fleet

SENTINEL_NS = 1_000_000_000_123_456_789  # a time no real uplink has: its stamp is the template's hole
DEDUP_HOLE = b"ffffffff-ffff-4fff-bfff-ffffffffffff"  # each publish gets its own deduplicationId here


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of metric `name` (all label sets) in a Prometheus text page."""
    total = 0.0
    for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M):
        total += float(m.group(1))
    return total


def templates(devices: list, variants: int) -> list[tuple[str, list[bytes]]]:
    """Per device: its topic and `variants` events with the sentinel time, fCnt 0."""
    sim = FleetSimulator(devices, Scenario("calm"), seed=5)
    out = []
    for d in sim.devices:
        events = []
        for v in range(variants):
            sim.fcnt[d.id] = -1
            u = sim.uplink(d, float(v * 300), SENTINEL_NS)
            dedup_id = orjson.loads(u.event)["deduplicationId"].encode()
            events.append(u.event.replace(dedup_id, DEDUP_HOLE))
        out.append((u.topic, events))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python benchmarks/soak_bench.py --rate 3000 --minutes 60")
    ap.add_argument("--rate", type=int, default=3000, help="uplinks per second (default 3,000)")
    ap.add_argument("--devices", type=int, default=1000, help="devices, split evenly over the five kinds")
    ap.add_argument("--minutes", type=float, default=60.0, help="how long to publish (default 60)")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between RSS lines (default 60)")
    ap.add_argument("--variants", type=int, default=8, help="payload templates per device")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` and kill: stop the daemons on the way out

    devices = fleet(args.devices)
    pool = templates(devices, args.variants)
    hole = format_rfc3339_ns(SENTINEL_NS, utc_suffix="+00:00", digits="auto").encode()
    with bench_stack("soak-bench-", devices) as (tmp, broker, influxd):
        metrics_port = free_port()
        (tmp / "config.toml").write_text(
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "urbansense-soak"\n'
            f'[influxdb]\nurl = "{influxd.url}"\ndatabase = "soak"\n'
            f'[registry]\npath = "{tmp / "registry.sqlite"}"\n'
            f'[pipeline]\ndead_letter_path = "{tmp / "deadletter.sqlite"}"\n'
            f'[metrics]\nport = {metrics_port}\n[logging]\nlevel = "WARNING"\n')
        urbansense = str(Path(sys.executable).with_name("urbansense"))
        service = subprocess.Popen([urbansense, "--config", str(tmp / "config.toml"), "run"],
                                   cwd=tmp, stdout=(tmp / "service.log").open("w"), stderr=subprocess.STDOUT)
        try:
            http = httpx.Client(base_url=f"http://127.0.0.1:{metrics_port}", timeout=10)
            wait_http_ok(f"http://127.0.0.1:{metrics_port}/readyz", 60, proc=service, log=tmp / "service.log")
            print(f"{len(pool)} devices, {args.rate:,} uplinks/s for {args.minutes:g} min; service pid "
                  f"{service.pid}, RSS at start {rss_mib(service.pid):.0f} MiB")
            print(f"{'min':>6} {'RSS MiB':>8} {'published':>11} {'stored':>11} {'up/s':>7} "
                  f"{'rule states':>11} {'entries':>10} {'state MiB':>9}")
            pub = Publisher("127.0.0.1", broker.port, max_outstanding=5000)
            fcnt = [0] * len(pool)
            start = time.monotonic()
            end = start + args.minutes * 60
            next_line = start
            sent = 0
            last_sent, last_t = 0, start
            i = 0
            while True:
                now = time.monotonic()
                if now >= next_line:
                    page = http.get("/metrics").text
                    stored = metric_sum(page, "urbansense_readings_written_total")
                    rate = (sent - last_sent) / max(now - last_t, 1e-9)
                    last_sent, last_t = sent, now
                    print(f"{(now - start) / 60:6.1f} {rss_mib(service.pid):8.0f} {sent:11,} {stored:11,.0f} "
                          f"{rate:7,.0f} {metric_sum(page, 'urbansense_rule_state_states'):11,.0f} "
                          f"{metric_sum(page, 'urbansense_rule_state_entries'):10,.0f} "
                          f"{metric_sum(page, 'urbansense_rule_state_bytes') / 2**20:9.1f}", flush=True)
                    next_line += args.every
                if now >= end:
                    break
                # publish what is due by now, a device at a time, a tenth of a second's worth per pass
                due = min(int((now - start) * args.rate), sent + max(1, args.rate // 10))
                while sent < due:
                    k = i % len(pool)
                    topic, events = pool[k]
                    f = fcnt[k]
                    fcnt[k] = f + 1
                    event = events[f % len(events)]
                    stamp = format_rfc3339_ns(time.time_ns(), utc_suffix="+00:00", digits="auto").encode()
                    unique = b"%08x-0000-4000-8000-%012x" % (sent & 0xFFFFFFFF, k)
                    pub.publish(topic, event.replace(hole, stamp, 1).replace(b'"fCnt":0', b'"fCnt":%d' % f, 1)
                                .replace(DEDUP_HOLE, unique, 1))
                    sent += 1
                    i += 1
                if sent >= int((time.monotonic() - start) * args.rate):
                    time.sleep(0.005)
            pub.close()
            took = time.monotonic() - start
            print(f"published {sent:,} uplinks in {took:.0f} s = {sent / took:,.0f} uplinks/s "
                  f"(offered {args.rate:,}/s)")
        finally:
            stop_process(service, 60)


if __name__ == "__main__":
    main()
