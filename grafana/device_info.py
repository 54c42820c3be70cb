"""`device_info`: each registered device as an InfluxDB point, for the Geomap and the bureau's figures.

Grafana's InfluxQL datasource cannot read the SQLite registry, and Geomap needs latitude and
longitude in the query result, so the service writes one point per non-retired device (tags
device_id, kind, district, zone_class; fields latitude and longitude when located, and
expected_interval_s, the denominator of the online rate) on start and whenever the registry
changes. Dashboards take `last()` per device with no time filter, so an old point still counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from core.device import Device
from core.reading import Point
from storage.lineprotocol import encode_points

MEASUREMENT = "device_info"


def device_info_points(devices: Iterable[Device], time_ns: int) -> list[Point]:
    """One point per non-retired device; coordinates only where the device has them."""
    out: list[Point] = []
    for d in devices:
        if d.status == "retired":
            continue
        tags = {"device_id": d.id, "kind": d.kind, "district": d.district, "zone_class": d.zone_class}
        fields: dict[str, float] = {"expected_interval_s": float(d.expected_interval_s)}
        if d.latitude is not None and d.longitude is not None:
            fields.update(latitude=float(d.latitude), longitude=float(d.longitude))
        out.append(Point(MEASUREMENT, tuple(sorted((k, v) for k, v in tags.items() if v)), fields, time_ns))
    return out


def device_info_lines(devices: Iterable[Device], time_ns: int | None = None) -> bytes:
    """The line-protocol body for `device_info_points` (empty when there is no device)."""
    now = time.time_ns() if time_ns is None else time_ns
    return encode_points(device_info_points(devices, now))


class LineAdder(Protocol):
    async def add(self, lines: bytes) -> None: ...


async def write_device_info(writer: LineAdder, devices: Iterable[Device], time_ns: int | None = None) -> int:
    """Hook for the service: queue the points on its `BatchWriter` (call on start and after a registry change).

    Returns how many devices were written.
    """
    now = time.time_ns() if time_ns is None else time_ns
    points = device_info_points(devices, now)
    if points:
        await writer.add(encode_points(points))
    return len(points)
