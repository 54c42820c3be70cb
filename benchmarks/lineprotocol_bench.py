"""How fast readings become line protocol, and how fast a real influxd takes it in 5,000-line batches.

Run: python benchmarks/lineprotocol_bench.py [--devices 20000] [--points 400000]
Starts its own influxd on a free loopback port with data in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from core.reading import Reading
from sim.daemons import start_influxd
from storage.influx import InfluxClient
from storage.lineprotocol import encode_reading, tag_string
from storage.writer import BatchWriter

KINDS = {  # values as codecs produce them: raw integers scaled by 0.1 or 0.01
    "noise": lambda r: {"laeq_db": r.randint(350, 900) / 10, "lmax_db": r.randint(400, 1100) / 10},
    "dust": lambda r: {"pm2_5_ugm3": float(r.randint(0, 300)), "pm10_ugm3": float(r.randint(0, 500))},
    "bin_fill": lambda r: {"distance_mm": r.randint(50, 1500), "fill_pct": r.randint(0, 10000) / 100},
    "parking": lambda r: {"occupied": r.random() < 0.5},
    "water_level": lambda r: {"distance_mm": r.randint(100, 3000), "depth_mm": float(r.randint(0, 400))},
}


def make_readings(devices: int, per_device: int, seed: int = 1) -> list[Reading]:
    """Readings as the pipeline builds them: one tag tuple per device, reused; ints where codecs give ints."""
    rnd = random.Random(seed)
    kinds = list(KINDS)
    tags = []
    for d in range(devices):
        kind = kinds[d % len(kinds)]
        tags.append((kind, (("device_id", f"{kind}-{d:06d}"), ("district", f"district-{d % 16}"),
                            ("model", "milesight-em500-udl"), ("zone_class", "4a"))))
    out = []
    t0 = 1_700_000_000_000_000_000
    for i in range(per_device):
        for d, (kind, tag) in enumerate(tags):
            health = {"battery_pct": rnd.randint(0, 100), "rssi_dbm": -float(rnd.randint(60, 120)),
                      "snr_db": rnd.randint(-200, 100) / 10, "fcnt": i, "fcnt_gap": 0}
            out.append(Reading(tag[0][1], kind, t0 + (i * devices + d) * 1_000_000, KINDS[kind](rnd), tag, health))
    return out


def bench_encode(devices: int) -> None:
    readings = make_readings(devices, 1)
    tag_string.cache_clear()
    start = time.perf_counter()
    for r in readings:
        encode_reading(r)
    cold = (time.perf_counter() - start) / len(readings) * 1e6
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for r in readings:
            encode_reading(r)
        best = min(best, (time.perf_counter() - start) / len(readings) * 1e6)
    size = sum(len(encode_reading(r)) for r in readings) / len(readings)
    print(f"encode_reading, {devices} devices, 2 lines per reading (~{size:.0f} bytes):")
    print(f"  cold tag cache: {cold:6.2f} µs/reading")
    print(f"  warm tag cache: {best:6.2f} µs/reading  ({best / 2:.2f} µs/line, {1e6 / best:,.0f} readings/s)")


async def bench_write(points: int) -> None:
    devices = 5000
    readings = make_readings(devices, max(1, points // 2 // devices))
    bodies = [encode_reading(r) for r in readings]
    lines = sum(b.count(b"\n") for b in bodies)
    with tempfile.TemporaryDirectory() as tmp:
        daemon = start_influxd(Path(tmp))
        try:
            async with InfluxClient(daemon.url, "bench", timeout=60) as client:
                await client.ensure_database()
                for in_flight in (1, 2):
                    await client.query("DROP SERIES FROM /.*/")
                    writer = BatchWriter(client, batch_size=5000, flush_interval_s=0.2,
                                         max_batches_in_flight=in_flight)
                    start = time.perf_counter()
                    for body in bodies:
                        await writer.add(body)
                    await writer.close()
                    elapsed = time.perf_counter() - start
                    lat = sorted(writer.stats.write_seconds)
                    print(f"BatchWriter → influxd, 5,000-line batches, {in_flight} in flight: {lines:,} points in "
                          f"{elapsed:.2f} s = {lines / elapsed:,.0f} points/s "
                          f"(median write {lat[len(lat) // 2] * 1000:.0f} ms)")
                [result] = await client.query("SELECT count(fcnt) FROM device_health")
                assert result["series"][0]["values"][0][1] == len(readings)
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=400_000)
    args = parser.parse_args()
    bench_encode(args.devices)
    asyncio.run(bench_write(args.points))


if __name__ == "__main__":
    main()
