"""Modbus device keys: `host:port/unit`, pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"(?P<host>[a-z0-9.\-]+):(?P<port>\d{1,5})/(?P<unit>\d{1,3})")


@dataclass(frozen=True, slots=True)
class ModbusAddress:
    host: str
    port: int
    unit: int

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}/{self.unit}"


def parse_key(key: str) -> ModbusAddress | None:
    """The address in a registry key, or None for a key that is not `host:port/unit` (a DevEUI, an IMEI)."""
    m = _KEY.fullmatch(key)
    if m is None:
        return None
    port, unit = int(m["port"]), int(m["unit"])
    if not (1 <= port <= 65535 and 0 <= unit <= 247):
        return None
    return ModbusAddress(m["host"], port, unit)
