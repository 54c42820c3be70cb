"""Rules engine cost per reading with all presets loaded, for a mixed fleet: prints µs per reading.

Run: python benchmarks/rules_bench.py [--devices 20000] [--hours 2] [--ruleset]
Readings are generated first (not timed), in time order, each device at its own interval;
then `Engine.process` (with `--ruleset`: `RuleSet.process`, the engine behind the quality
gate with the quality rules, what the service runs, every reading judged `good`) is timed
over all of them, per kind, and `tick` once a second of simulated time. Times are process
CPU time (`time.process_time`), so that other processes on a shared machine do not count.
The generated readings (millions of objects the service never holds at once) are moved out
of the garbage collector's view with `gc.freeze()`, so that its full collections time the
engine's own heap rather than rescanning the input.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections import defaultdict

from core.device import ZONE_CLASSES, Device
from core.reading import Reading
from rules.engine import Engine
from rules.gate import RuleSet
from rules.loader import load_rules

S = 1_000_000_000
T0 = 1_720_000_000 * S
# kind: (share of the fleet, report interval in seconds)
FLEET = {"noise": (0.2, 300), "dust": (0.15, 300), "bin_fill": (0.25, 1800), "parking": (0.3, 600),
         "water_level": (0.1, 60)}


def make_fleet(n: int, rng: random.Random) -> list[Device]:
    devices = []
    for i in range(n):
        kind = rng.choices(list(FLEET), weights=[share for share, _ in FLEET.values()])[0]
        interval = FLEET[kind][1]
        site = ""
        if kind == "parking":
            site = rng.choice(["no-parking", "metered", ""])
        elif kind in ("dust", "noise") and rng.random() < 0.2:
            site = f"cs-{i % 50}"
        devices.append(Device(id=f"{kind[:2]}{i:07d}", key=f"k{i}", model=f"acme-{kind}", kind=kind,
                              district=f"d{i % 16}", zone_class=rng.choice(ZONE_CLASSES) if kind == "noise" else "",
                              site=site, expected_interval_s=interval))
    return devices


def fields_for(kind: str, rng: random.Random, state: dict) -> dict:
    v = state.get("v", rng.uniform(0, 1))
    v = min(1.0, max(0.0, v + rng.gauss(0, 0.05)))
    state["v"] = v
    if kind == "noise":
        return {"laeq_db": 40 + 35 * v, "lmax_db": 55 + 35 * v}
    if kind == "dust":
        return {"pm10_ugm3": 20 + 250 * v, "pm2_5_ugm3": 10 + 120 * v}
    if kind == "bin_fill":
        return {"fill_pct": 100 * v, "distance_mm": 1000 * (1 - v)}
    if kind == "parking":
        return {"occupied": v > 0.5}
    return {"depth_mm": max(0.0, 400 * v - 100)}


def make_readings(devices: list[Device], hours: float, rng: random.Random) -> list[Reading]:
    out = []
    for d in devices:
        state: dict = {}
        tags = d.tags()
        t = T0 + int(rng.uniform(0, d.expected_interval_s) * S)
        end = T0 + int(hours * 3600 * S)
        while t < end:
            health = {"battery_pct": 15 + 80 * rng.random(), "rssi_dbm": -100.0} if rng.random() < 0.2 else {}
            out.append(Reading(d.id, d.kind, t, fields_for(d.kind, rng, state), tags, health))
            t += int(d.expected_interval_s * rng.uniform(0.9, 1.1) * S)
    out.sort(key=lambda r: r.time_ns)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=20000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ruleset", action="store_true", help="time RuleSet (engine + quality gate and rules)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rules = load_rules([])
    devices = make_fleet(args.devices, rng)
    readings = make_readings(devices, args.hours, rng)
    if args.ruleset:
        for r in readings:
            r.fields["quality"] = "good"
    engine = RuleSet(rules) if args.ruleset else Engine(rules)
    engine.set_devices(devices)
    gc.collect()
    gc.freeze()
    print(f"{len(rules)} preset rules, {len(devices)} devices, {len(readings)} readings over {args.hours:g} h")

    per_kind: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    transitions = 0
    tick_s = 0.0
    ticks = 0
    next_tick = T0
    process = engine.process
    perf = time.process_time
    total_start = perf()
    for r in readings:
        if r.time_ns >= next_tick:
            t0 = perf()
            transitions += len(engine.tick(r.time_ns))
            tick_s += perf() - t0
            ticks += 1
            next_tick = r.time_ns + S
        t0 = perf()
        transitions += len(process(r))
        per_kind[r.kind] += perf() - t0
        count[r.kind] += 1
    total = perf() - total_start
    busy = sum(per_kind.values())
    print(f"process: {busy / len(readings) * 1e6:.2f} µs per reading on average "
          f"({len(readings) / busy:,.0f} readings/s on one core), {transitions} transitions")
    for kind in sorted(per_kind):
        print(f"  {kind:12s} {per_kind[kind] / count[kind] * 1e6:7.2f} µs per reading  ({count[kind]} readings)")
    print(f"tick (once per simulated second, {ticks} ticks): {tick_s / max(ticks, 1) * 1e6:.1f} µs per tick")
    print(f"CPU time {total:.1f} s")


if __name__ == "__main__":
    main()
