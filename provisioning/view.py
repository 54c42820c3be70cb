"""The service's in-memory view of the registry: lookups by key without touching the database."""

from __future__ import annotations

import time
from pathlib import Path

from loguru import logger

from core.device import Device
from provisioning.registry import Registry


class RegistryView:
    """Devices by key and by id, reloaded when the registry changes (no restart needed).

    `refresh()` costs one read of the registry's change counter (`Registry.data_version`) when
    nothing changed, so the service can call it every couple of seconds; a change made by another
    process or machine, or behind urbansense's back, moves the counter (triggers bump it).
    """

    def __init__(self, path: str | Path, *, migrate_schema: bool = True) -> None:
        """`path`: the registry's SQLite file or the shared database's `postgresql://` URL."""
        self._registry = Registry(path, migrate_schema=migrate_schema)
        self._version = -1
        self.by_key: dict[str, Device] = {}
        self.by_id: dict[str, Device] = {}
        self.loaded_at = 0.0
        self.tampered: dict[str, str] = {}
        """Devices whose registry row was changed outside urbansense (not applied): id → why."""
        self.mac_keys: dict[str, bytes] = {}
        """NB-IoT frame MAC keys by IMEI (see `collectors/nbiot/frame.py`)."""
        self._reported: set[tuple[str, str]] = set()
        self.refresh()

    def refresh(self) -> bool:
        """Reload if anything changed since the last load; True when it reloaded."""
        if self._registry.data_version() == self._version and self.by_key:
            return False
        snap = self._registry.load()  # counter, devices, seals and keys of one snapshot: no change falls between
        devices, tampered, version = snap.devices, snap.unsealed, snap.version
        if tampered:
            devices = self._keep_verified(devices, tampered)
        self.tampered = tampered
        self.mac_keys = snap.mac_keys
        self.by_key = {d.key: d for d in devices}
        self.by_id = {d.id: d for d in devices}
        changed = self._version != -1
        self._version = version
        self.loaded_at = time.time()
        if changed:
            logger.info("registry reloaded: {} devices", len(devices))
        return True

    def _keep_verified(self, devices: list[Device], tampered: dict[str, str]) -> list[Device]:
        """Rows changed outside urbansense are reported and not applied: the last verified version stays."""
        out = []
        for d in devices:
            if d.id not in tampered:
                out.append(d)
                continue
            if (d.id, repr(d)) not in self._reported:
                self._reported.add((d.id, repr(d)))
                logger.error("registry: device {} {}; change NOT applied (kept: {}). Make changes with "
                             "`urbansense device ...`; `urbansense audit verify` lists every such row",
                             d.id, tampered[d.id], "the last verified version" if d.id in self.by_id else "nothing")
            if d.id in self.by_id:
                out.append(self.by_id[d.id])
        return out

    def close(self) -> None:
        self._registry.close()
