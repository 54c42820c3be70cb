"""The `Device`: one row of the registry, as every other package sees it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ZONE_CLASSES = ("0", "1", "2", "3", "4a", "4b")
STATUSES = ("active", "maintenance", "retired")


@dataclass(slots=True, frozen=True)
class Device:
    """A provisioned sensor. `key` is what its uplinks carry (DevEUI, IMEI or Modbus `host:port/unit`).

    `install` holds the install parameters the kind needs (mount_height_mm, bin_depth_mm,
    dead_zone_mm, ...); `expected_interval_s` is how often it should report, the base of
    the no-data rule.
    """

    id: str
    key: str
    model: str
    kind: str
    latitude: float | None = None
    longitude: float | None = None
    address: str = ""
    district: str = ""
    street: str = ""
    zone_class: str = ""
    site: str = ""
    install: dict[str, float] = field(default_factory=dict)
    expected_interval_s: int = 300
    status: str = "active"

    def tags(self) -> tuple[tuple[str, str], ...]:
        """Bounded-cardinality InfluxDB tags, sorted, empty ones left out."""
        pairs = {
            "device_id": self.id,
            "model": self.model,
            "district": self.district,
            "zone_class": self.zone_class,
            "site": self.site,
        }
        return tuple(sorted((k, v) for k, v in pairs.items() if v))


DeviceSource = Callable[[], Mapping[str, Device]]
"""The service's current devices by key; a registry reload replaces the mapping, so a new object means a new list."""
