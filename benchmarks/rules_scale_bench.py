"""Rule state at city scale: N registered devices of the five kinds through the rules, every preset on.

    python benchmarks/rules_scale_bench.py --devices 100000 --hours 26
    python benchmarks/rules_scale_bench.py --devices 1000000 --hours 3 --every 30m

Every device reports once per `--interval` (default 5 minutes, the cadence cities use) at its
own phase within the round, a battery level in every reading; noise, dust, bin-fill, parking
and water-level sensors in equal shares (20 % site-tagged, so the construction-site and
no-parking rules select some), each reading judged `good` as the quality judge would. The
readings go through `RuleSet` (rules/gate.py), what the service runs: the engine with every
preset, the quality gate and the quality rules. Event time is compressed: the readings of a
round are made and processed as fast as the engine takes them, `tick` runs once per
simulated minute. Nothing is pre-generated, so the process holds only what the engine (and the
registry it is given) holds. Every `--every` of event time it prints RSS, µs per
`process` call over that stretch (process CPU time, not wall time: the machine may
be shared) and, where the engine reports it, its rule-state entries and bytes; at the end
µs per reading by kind.

`--misbehave F` makes one device in a thousand report F times as often (a firmware fault).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from array import array
from collections import defaultdict

from core.device import ZONE_CLASSES, Device
from core.reading import Reading
from core.timing import parse_duration
from rules.gate import RuleSet
from rules.loader import load_rules

S = 1_000_000_000
T0 = 1_720_000_000 * S  # 2024-07-03 09:46:40 UTC
KINDS = ("noise", "dust", "bin_fill", "parking", "water_level")


def rss_mb() -> float:
    """Resident set size of this process, from /proc (MiB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_fleet(n: int, interval_s: int, rng: random.Random) -> list[Device]:
    devices = []
    for i in range(n):
        kind = KINDS[i % 5]
        site = ""
        if kind == "parking":
            site = ("no-parking", "metered", "")[i % 3]
        elif kind in ("dust", "noise") and i % 25 < 5:
            site = f"cs-{i % 50}"
        devices.append(Device(id=f"{kind[:2]}{i:07d}", key=f"k{i}", model=f"acme-{kind}", kind=kind,
                              district=f"d{i % 16}", zone_class=rng.choice(ZONE_CLASSES) if kind == "noise" else "",
                              site=site, expected_interval_s=interval_s))
    return devices


def fields_for(kind: str, v: float) -> dict:
    if kind == "noise":
        return {"laeq_db": 40 + 35 * v, "lmax_db": 55 + 35 * v}
    if kind == "dust":
        return {"pm10_ugm3": 20 + 250 * v, "pm2_5_ugm3": 10 + 120 * v}
    if kind == "bin_fill":
        return {"fill_pct": 100 * v, "distance_mm": 1000 * (1 - v), "tilted": v > 0.97}
    if kind == "parking":
        return {"occupied": v > 0.5}
    return {"depth_mm": max(0.0, 400 * v - 100)}


def state_summary(engine: RuleSet) -> str:
    stats = getattr(engine, "state_stats", None)
    if stats is None:
        return ""
    rows = stats()
    entries = sum(r.entries for r in rows)
    size = sum(r.bytes for r in rows)
    return f"  state {entries:>11,} entries {size / 2**20:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=26.0, help="event time to simulate")
    parser.add_argument("--interval", default="5m", help="report interval of every device")
    parser.add_argument("--every", default="1h", help="print a line every this much event time")
    parser.add_argument("--misbehave", type=int, default=0, help="1 device in 1,000 reports this many times as often")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    interval_s = int(parse_duration(args.interval))
    every_ns = int(parse_duration(args.every) * S)
    rng = random.Random(args.seed)
    rss0 = rss_mb()
    rules = load_rules([])
    devices = make_fleet(args.devices, interval_s, rng)
    engine = RuleSet(rules)
    engine.set_devices(devices)
    gc.collect()
    rss_fleet = rss_mb()
    print(f"{len(rules)} preset rules, {len(devices):,} devices, one report per {interval_s} s, "
          f"{args.hours:g} h of event time; python {sys.version.split()[0]}")
    print(f"RSS at start {rss0:.0f} MiB; with the registry loaded {rss_fleet:.0f} MiB")

    # devices in phase order, so that a round's readings come (almost) in time order without a sort; the plan
    # is three flat columns (24 bytes a device), so that RSS is what the rules and the registry hold
    phased = sorted((rng.uniform(0, interval_s), i) for i in range(len(devices)))
    phase = array("q", (int(p * S) for p, _ in phased))
    order = [devices[i] for _, i in phased]
    del phased
    level = array("d", (rng.random() for _ in order))
    fast = {i for i in range(0, len(order), 1000)} if args.misbehave > 1 else set()

    process = engine.process
    perf = time.perf_counter
    cpu = time.process_time  # per call: CPU time, so that other processes on a shared machine do not count
    per_kind: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    transitions = 0
    busy = 0.0
    busy_mark = 0.0
    n_mark = 0
    n = 0
    next_tick = T0
    next_print = T0 + every_ns
    end = T0 + int(args.hours * 3600 * S)
    wall0 = perf()
    print(f"{'event h':>8} {'wall s':>7} {'RSS MiB':>8} {'readings':>12} {'µs/reading':>10}")
    round_start = T0
    gauss = rng.gauss
    while round_start < end:
        for i, device in enumerate(order):
            t = round_start + phase[i]
            device_id, kind = device.id, device.kind
            v = min(1.0, max(0.0, level[i] + gauss(0, 0.05)))
            level[i] = v
            times = [t]
            if i in fast:
                step = interval_s * S // args.misbehave
                times = [t + k * step for k in range(args.misbehave)]
            for tt in times:
                if tt >= next_tick:
                    t0 = cpu()
                    transitions += len(engine.tick(tt))
                    busy += cpu() - t0
                    next_tick = tt + 60 * S
                if tt >= next_print:
                    done = n - n_mark
                    cost = (busy - busy_mark) / done * 1e6 if done else float("nan")
                    print(f"{(tt - T0) / 3600 / S:8.2f} {perf() - wall0:7.0f} {rss_mb():8.0f} {n:12,} "
                          f"{cost:10.2f}{state_summary(engine)}", flush=True)
                    n_mark, busy_mark = n, busy
                    next_print += every_ns
                fields = fields_for(kind, v)
                fields["quality"] = "good"
                reading = Reading(device_id, kind, tt, fields, device.tags(),  # a new tuple a reading, as decoded
                                  {"battery_pct": 95.0 - 80 * (tt - T0) / (end - T0), "rssi_dbm": -100.0})
                t0 = cpu()
                transitions += len(process(reading))
                dt = cpu() - t0
                busy += dt
                per_kind[kind] += dt
                count[kind] += 1
                n += 1
        round_start += interval_s * S
    print(f"{(end - T0) / 3600 / S:8.2f} {perf() - wall0:7.0f} {rss_mb():8.0f} {n:12,} "
          f"{(busy - busy_mark) / max(n - n_mark, 1) * 1e6:10.2f}{state_summary(engine)}")
    print(f"process+tick: {busy / n * 1e6:.2f} µs per reading on average, {transitions:,} transitions; "
          f"RSS {rss_mb():.0f} MiB = {(rss_mb() - rss_fleet) * 2**20 / len(devices):,.0f} B per device "
          f"above the registry")
    for kind in KINDS:
        if count[kind]:
            print(f"  {kind:12s} {per_kind[kind] / count[kind] * 1e6:7.2f} µs per reading  ({count[kind]:,} readings)")
    print("rule state by rule (state_stats): states, entries per state, bytes per state")
    for row in engine.state_stats():
        if row.states:
            n = row.states
            print(f"  {row.rule_id:28s} {n:>10,} {row.entries / n:8.1f} {row.bytes / n:8.0f}")


if __name__ == "__main__":
    main()
