"""The `Device`: one row of the registry, as every other package sees it."""

from __future__ import annotations

import sys
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

    def __post_init__(self) -> None:
        # A city registers a million devices over a few dozen districts, models and sites: one copy of each
        # shared string and of each distinct install table (~0.2 KB a device otherwise; docs/architecture.md).
        for name in _SHARED_FIELDS:
            value = getattr(self, name)
            if type(value) is str:
                object.__setattr__(self, name, sys.intern(value))
        object.__setattr__(self, "install", shared_install(self.install))

    def tags(self) -> tuple[tuple[str, str], ...]:
        """Bounded-cardinality InfluxDB tags, sorted by key, empty ones left out.

        Every pair but the device's own id is one shared object (`shared_pair`): a tags tuple
        the pipeline or the rules keep per device costs ~0.15 KB, not ~0.35 KB.
        """
        pairs = [("device_id", self.id)] if self.id else []
        for key in _TAG_KEYS:  # (in key order after "device_id")
            value = getattr(self, key)
            if value:
                pairs.append(shared_pair(key, value))
        return tuple(pairs)


DeviceSource = Callable[[], Mapping[str, Device]]
"""The service's current devices by key; a registry reload replaces the mapping, so a new object means a new list."""


_TAG_KEYS = ("district", "model", "site", "zone_class")
_PAIRS: dict[tuple[str, str], tuple[str, str]] = {}
_SHARED_MAX = 100_000  # distinct pairs or install tables kept shared; beyond that each is its own


def shared_pair(key: str, value: str) -> tuple[str, str]:
    """The one (key, value) tuple of a tag pair (a new one past `_SHARED_MAX` distinct pairs)."""
    pair = (key, value)
    found = _PAIRS.get(pair)
    if found is None:
        found = pair
        if len(_PAIRS) < _SHARED_MAX:
            _PAIRS[pair] = pair
    return found


_SHARED_FIELDS = ("model", "kind", "district", "street", "zone_class", "site", "status")


class InstallParams(dict[str, float]):
    """A device's install parameters, read-only: equal tables are one shared object (`shared_install`)."""

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("a device's install parameters are read-only: build a new Device (dataclasses.replace)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (InstallParams, (dict(self),))


_INSTALLS: dict[tuple[tuple[str, float], ...], InstallParams] = {}


def shared_install(install: Mapping[str, float]) -> InstallParams:
    """The one read-only table equal to `install` (a new one past `_INSTALLS_MAX` distinct tables)."""
    key = tuple(sorted(install.items()))
    found = _INSTALLS.get(key)
    if found is None:
        found = InstallParams(key)
        if len(_INSTALLS) < _SHARED_MAX:
            _INSTALLS[key] = found
    return found
