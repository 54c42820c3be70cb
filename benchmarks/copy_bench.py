"""`urbansense db copy-from-sqlite` at a city's size: a machine's registry, dead letters and alert store
(SQLite files) copied into a throw-away PostgreSQL (initdb on a free loopback port, fsync on), then the
same command run again (the idempotent re-run: everything already there).

    python benchmarks/copy_bench.py [--devices 10000] [--dead-letters 100000] [--alerts 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.config import AlertsConfig
from alerts.runtime import AlertsRuntime
from core.device import Device
from core.transition import AlertState, AlertTransition, Severity
from provisioning.registry import Registry
from service.sqlite_copy import Sources, copy_from_sqlite
from sim.daemons import start_postgres
from storage.deadletter import DeadLetter, DeadLetterStore

T0 = 1_790_000_000_000_000_000


def make_files(tmp: Path, devices: int, dead: int, alerts: int) -> Sources:
    src = Sources(tmp / "registry.sqlite", tmp / "deadletter.sqlite", tmp / "alerts.sqlite")
    with Registry(src.registry) as reg:
        reg.import_devices([Device(f"WL-{i:05d}", f"{0x70B3D57ED0000000 + i:016x}", "milesight-em500-udl",
                                   "water_level", 39.8 + i * 1e-5, 116.3 + i * 1e-5, f"建国路 {i} 号",
                                   ("朝阳区", "海淀区")[i % 2], install={"mount_height_mm": 2000.0})
                            for i in range(devices)], by="bench")
    with DeadLetterStore(src.dead_letters) as store:
        for start in range(0, dead, 5000):
            store.add_many(DeadLetter(T0 + i, "chirpstack", f"application/1/device/{i:016x}/event/up",
                                      os.urandom(300), "bad_json", "unexpected character", f"{i:016x}")
                           for i in range(start, min(dead, start + 5000)))
    rt = AlertsRuntime(AlertsConfig(), lambda _id: None, db_path=src.alerts, clock=lambda: T0)
    rt.handle_many(AlertTransition("water.depth", f"WL-{i:05d}", AlertState.PENDING, AlertState.FIRING,
                                   Severity.WARNING, T0 + i, 200.0, 150.0, "case") for i in range(alerts))
    for i in range(200):
        rt.store.add_audit(T0 + i, "wang", "ack", f"water.depth WL-{i:05d}")
    rt.store.close()
    return src


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--dead-letters", type=int, default=100_000)
    ap.add_argument("--alerts", type=int, default=2_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="copy-bench-"))
    server = start_postgres(tmp, durable=True)
    try:
        src = make_files(tmp, args.devices, args.dead_letters, args.alerts)
        sizes = {p.name: p.stat().st_size >> 20 for p in (src.registry, src.dead_letters, src.alerts)}
        for run in ("first copy", "re-run"):
            t = time.perf_counter()
            done = copy_from_sqlite(server.dsn(), src)
            took = time.perf_counter() - t
            print(f"{run:<10} {took:6.1f} s: " + "; ".join(f"{c.component} {c.status} {c.rows}" for c in done))
        rate = args.dead_letters / max(took, 1e-9)
        print(f"files (MiB): {sizes}; re-run: {rate:,.0f} dead letters/s (all three components checked)")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
