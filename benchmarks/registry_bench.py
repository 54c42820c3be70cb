"""The registry and the dead letters on a SQLite file and on PostgreSQL (issue 19): bulk import, the
service's change check and reload, and dead-letter batches, one backend after the other.

    python benchmarks/registry_bench.py [--devices 5000] [--batches 300]

PostgreSQL is a throw-away server of this script's own (initdb on a free loopback port, fsync on,
as in production), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.device import Device
from provisioning.registry import Registry
from provisioning.view import RegistryView
from sim.daemons import start_postgres
from storage.deadletter import DeadLetter, DeadLetterStore


def fleet(n: int) -> list[Device]:
    return [Device(f"D-{i:05d}", f"{0x70B3D57ED0000000 + i:016x}", "milesight-em500-udl", "water_level",
                   39.8 + i * 1e-5, 116.3 + i * 1e-5, f"建国路 {i} 号, 近地铁站", ("朝阳区", "海淀区")[i % 2],
                   "建外街道", install={"mount_height_mm": 2000.0}) for i in range(n)]


def run(where: str, name: str, devices: int, batches: int) -> None:
    with Registry(where) as reg:
        t = time.perf_counter()
        reg.import_devices(fleet(devices), by="bench")
        imported = time.perf_counter() - t
        t = time.perf_counter()
        problems = reg.verify()
        verified = time.perf_counter() - t
    view = RegistryView(where)
    checks = []
    for _ in range(200):
        t = time.perf_counter()
        view.refresh()
        checks.append(time.perf_counter() - t)
    with Registry(where) as reg:
        reg.update("D-00001", district="东城区", by="bench")
    t = time.perf_counter()
    assert view.refresh()
    reload_s = time.perf_counter() - t
    view.close()
    store = DeadLetterStore(where, max_bytes=256 << 20, max_age_s=30 * 86400)
    lat = []
    for i in range(batches):
        rows = [DeadLetter(time.time_ns(), "chirpstack", f"application/1/device/{i:016x}/event/up", os.urandom(400),
                           "bad_json", "unexpected character: line 1 column 1 (char 0)") for _ in range(20)]
        t = time.perf_counter()
        store.add_many(rows)
        lat.append(time.perf_counter() - t)
    store.close()
    lat.sort()
    print(f"{name:<10} import {devices} devices {imported:6.2f} s ({devices / imported:,.0f}/s); "
          f"verify {verified:5.2f} s "
          f"{'ok' if not problems else problems[:1]}; change check median {statistics.median(checks) * 1e3:.2f} ms; "
          f"reload after a change {reload_s * 1e3:.0f} ms; dead letters, 20 per committed batch: median "
          f"{statistics.median(lat) * 1e3:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=300)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    server = start_postgres(tmp, durable=True)
    try:
        run(str(tmp / "state.sqlite"), "SQLite", args.devices, args.batches)
        run(server.dsn(), "PostgreSQL", args.devices, args.batches)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
