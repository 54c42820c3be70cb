"""`device_info`: each registered device's coordinates as InfluxDB points, for the Geomap and the online ratio.

Grafana's InfluxQL datasource cannot read the SQLite registry, and Geomap needs latitude and
longitude in the query result, so the service writes one point per device (tags device_id,
kind, district, zone_class; fields latitude, longitude) on start and whenever the registry
changes. Dashboards take `last()` per device with no time filter, so an old point still counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from core.device import Device
from core.reading import Reading
from storage.lineprotocol import encode_reading, join_lines

MEASUREMENT = "device_info"


def device_info_readings(devices: Iterable[Device], time_ns: int) -> list[Reading]:
    """One point per located, non-retired device; devices without coordinates are left out."""
    out: list[Reading] = []
    for d in devices:
        if d.status == "retired" or d.latitude is None or d.longitude is None:
            continue
        tags = {"device_id": d.id, "kind": d.kind, "district": d.district, "zone_class": d.zone_class}
        out.append(Reading(device_id=d.id, kind=MEASUREMENT, time_ns=time_ns,
                           fields={"latitude": float(d.latitude), "longitude": float(d.longitude)},
                           tags=tuple(sorted((k, v) for k, v in tags.items() if v))))
    return out


def device_info_lines(devices: Iterable[Device], time_ns: int | None = None) -> bytes:
    """The line-protocol body for `device_info_readings` (empty when no device has coordinates)."""
    now = time.time_ns() if time_ns is None else time_ns
    return join_lines(encode_reading(r) for r in device_info_readings(devices, now))


class LineAdder(Protocol):
    async def add(self, lines: bytes) -> None: ...


async def write_device_info(writer: LineAdder, devices: Iterable[Device], time_ns: int | None = None) -> int:
    """Hook for the service: queue the points on its `BatchWriter` (call on start and after a registry change).

    Returns how many devices were written.
    """
    now = time.time_ns() if time_ns is None else time_ns
    readings = device_info_readings(devices, now)
    if readings:
        await writer.add(join_lines(encode_reading(r) for r in readings))
    return len(readings)
