"""Cost of the data-quality judge per reading, and of the rules' quality gate.

    python benchmarks/quality_bench.py [--n 200000] [--devices 2000]

Readings are real decoded-and-derived fields of the shipped models (noise, dust, bin, water,
parking) for `--devices` devices in turn, with values that move a little so the spike and
stuck paths both run; the figure is the median over 5 runs of the mean µs per `Judge.judge`
call (one call per reading in the pipeline). For scale, the same run times decode + derive of
the same readings (what the pipeline already spends per uplink), since a shared machine's load
moves absolute numbers. Also: the judge's resident state per device.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import tracemalloc

from decoders import derive, get_model
from decoders.quality import Judge

MODELS = [("milesight-ws302", "noise", {}), ("decentlab-dl-pm", "dust", {}),
          ("milesight-em310-udl", "bin_fill", {"bin_depth_mm": 1200.0}),
          ("dragino-ldds75", "water_level", {"mount_height_mm": 3000.0}), ("bosch-tps110", "parking", {})]


def workload(devices: int, rng: random.Random) -> list[tuple]:
    out = []
    for i in range(devices):
        name, kind, install = MODELS[i % len(MODELS)]
        model = get_model(name)
        samples = []
        for _ in range(8):
            payload, port = model.codec.encode(model.sample(rng))
            raw = model.codec.decode(payload, port).fields
            samples.append((raw, derive(kind, raw, install, model).fields, payload, port))
        out.append((f"dev-{i}", kind, model, install, samples))
    return out


def run(judge: Judge, work: list[tuple], n: int, t0: int) -> float:
    start = time.perf_counter()
    m = len(work)
    for i in range(n):
        device_id, kind, model, install, samples = work[i % m]
        raw, fields, _, _ = samples[(i // m) % 8]
        judge.judge(device_id, kind, model, t0 + i * 150_000_000, dict(fields), raw, install, 300)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="judge calls per run")
    parser.add_argument("--devices", type=int, default=2_000)
    args = parser.parse_args()
    work = workload(args.devices, random.Random(7))
    t0 = 1_763_600_000 * 10**9
    copy_us = statistics.median(_copy_cost(work, args.n) for _ in range(5))
    judge = Judge()
    runs = [run(judge, work, args.n, t0 + k * args.n * 150_000_000) for k in range(5)]
    us = statistics.median(runs)
    decode_us = statistics.median(_decode_cost(work, args.n // 4) for _ in range(5))
    tracemalloc.start()
    fresh = Judge()
    run(fresh, work, len(work), t0)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"python {sys.version.split()[0]}, {args.devices} devices, {args.n} readings per run")
    print(f"judge: {us:.2f} µs/reading (of which {copy_us:.2f} µs is the benchmark's dict copy) "
          f"= {1e6 / us:,.0f} readings/s on one core")
    print(f"for scale, decode + derive of the same uplinks: {decode_us:.2f} µs/uplink "
          f"(the judge, net of the copy, adds {(us - copy_us) / decode_us * 100:.0f} %)")
    print(f"state: {size / len(work):.0f} bytes per device (profiles cached per model)")


def _decode_cost(work: list[tuple], n: int) -> float:
    start = time.perf_counter()
    m = len(work)
    for i in range(n):
        _, kind, model, install, samples = work[i % m]
        _, _, payload, port = samples[(i // m) % 8]
        derive(kind, model.codec.decode(payload, port).fields, install, model)
    return (time.perf_counter() - start) / n * 1e6


def _copy_cost(work: list[tuple], n: int) -> float:
    start = time.perf_counter()
    m = len(work)
    for i in range(n):
        dict(work[i % m][4][(i // m) % 8][1])
    return (time.perf_counter() - start) / n * 1e6


if __name__ == "__main__":
    main()
