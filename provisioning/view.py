"""The service's in-memory view of the registry: lookups by key without touching SQLite."""

from __future__ import annotations

import time
from pathlib import Path

from loguru import logger

from core.device import Device
from provisioning.registry import Registry


class RegistryView:
    """Devices by key and by id, reloaded when the registry file changes (no restart needed).

    `refresh()` costs one `PRAGMA data_version` when nothing changed, so the service can
    call it every couple of seconds.
    """

    def __init__(self, path: str | Path) -> None:
        self._registry = Registry(path)
        self._version = -1
        self.by_key: dict[str, Device] = {}
        self.by_id: dict[str, Device] = {}
        self.loaded_at = 0.0
        self.refresh()

    def refresh(self) -> bool:
        """Reload if anything changed since the last load; True when it reloaded."""
        version = self._registry.data_version()
        if version == self._version and self.by_key:
            return False
        devices = self._registry.all()
        self.by_key = {d.key: d for d in devices}
        self.by_id = {d.id: d for d in devices}
        changed = self._version != -1
        self._version = version
        self.loaded_at = time.time()
        if changed:
            logger.info("registry reloaded: {} devices", len(devices))
        return True

    def close(self) -> None:
        self._registry.close()
