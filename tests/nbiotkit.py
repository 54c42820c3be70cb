"""Helpers for the NB-IoT and Modbus tests: IMEIs, fleets, stored points."""

from __future__ import annotations

from pathlib import Path

from conftest import influx_query

from core.device import Device
from core.keys import luhn_ok
from provisioning.registry import Registry
from sim.daemons import Daemon


def imei(n: int) -> str:
    """A valid IMEI (Luhn check digit) from a serial number."""
    body = f"86612345{n:06d}"
    return next(body + c for c in "0123456789" if luhn_ok(body + c))


def nb_fleet(n: int) -> list[Device]:
    out = []
    for i in range(n):
        water = i % 2 == 0
        out.append(Device(id=f"NB-{i:03d}", key=imei(i), model="generic-nb-wl" if water else "generic-nb-noise",
                          kind="water_level" if water else "noise", district=("朝阳", "海淀")[i % 2],
                          install={"mount_height_mm": 3000.0} if water else {}, expected_interval_s=60))
    return out


def provision(path: Path, devices: list[Device]) -> None:
    with Registry(path) as reg:
        for d in devices:
            reg.add(d, by="test")


def stored(influxd: Daemon, db: str, kind: str) -> dict[tuple[str, int], dict]:
    out: dict[tuple[str, int], dict] = {}
    for series in influx_query(influxd, db, f'SELECT * FROM "{kind}"'):
        for row in series["values"]:
            rec = {c: v for c, v in zip(series["columns"], row, strict=True) if v is not None}
            out[(rec["device_id"], rec["time"])] = rec
    return out


def count(influxd: Daemon, db: str, kind: str) -> int:
    return len(stored(influxd, db, kind))
