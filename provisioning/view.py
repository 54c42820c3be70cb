"""The service's in-memory view of the registry: lookups by key without touching the database."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from loguru import logger
from sqlalchemy.exc import InterfaceError, OperationalError

from core.device import Device
from core.timing import backoff_s
from provisioning.registry import Registry, Snapshot


class RegistryView:
    """Devices by key and by id, reloaded when the registry changes (no restart needed).

    `refresh()` costs one read of the registry's change counter (`Registry.data_version`) when
    nothing changed, so the service can call it every couple of seconds; a change made by another
    process or machine, or behind urbansense's back, moves the counter (triggers bump it).
    """

    def __init__(self, path: str | Path, *, migrate_schema: bool = True, cache: str | Path | None = None,
                 max_wait_s: float = float("inf")) -> None:
        """`path`: the registry's SQLite file or the shared database's `postgresql://` URL.

        `cache` (for the shared database): a local file (mode 0600) rewritten after every load. When the
        database cannot be reached at start, the view starts from it (one log line, no traceback) and
        `refresh()` keeps trying; without a cache it waits for the database (backoff, up to `max_wait_s`)."""
        self._path, self._migrate = path, migrate_schema
        self._cache = Path(cache) if cache is not None else None
        self._registry: Registry | None = None
        self._version = -1
        self.by_key: dict[str, Device] = {}
        self.by_id: dict[str, Device] = {}
        self.loaded_at = 0.0
        self.tampered: dict[str, str] = {}
        """Devices whose registry row was changed outside urbansense (not applied): id → why."""
        self.mac_keys: dict[str, bytes] = {}
        """NB-IoT frame MAC keys by IMEI (see `collectors/nbiot/frame.py`)."""
        self._reported: set[tuple[str, str]] = set()
        attempt, deadline = 0, time.monotonic() + max_wait_s
        while True:
            try:
                self.refresh()
                return
            except (OperationalError, InterfaceError) as exc:
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
                if self._cache is not None and self._cache.exists():
                    self._apply(self._read_cache())
                    logger.warning("registry: the shared database is unreachable ({}); serving the {} devices of "
                                   "the local copy {} until it answers", reason, len(self.by_id), self._cache)
                    return
                attempt += 1
                if time.monotonic() >= deadline:
                    raise
                if attempt == 1 or attempt % 10 == 0:
                    logger.warning("registry: the shared database is unreachable ({}) and there is no local copy "
                                   "yet; waiting for it", reason)
                time.sleep(backoff_s(attempt, 0.5, 10.0))

    def _open(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self._path, migrate_schema=self._migrate)
        return self._registry

    def refresh(self) -> bool:
        """Reload if anything changed since the last load; True when it reloaded."""
        registry = self._open()
        if registry.data_version() == self._version and self.by_key:
            return False
        snap = registry.load()  # counter, devices, seals and keys of one snapshot: no change falls between
        self._apply(snap)
        if self._cache is not None:
            self._write_cache(snap)
        return True

    def _write_cache(self, snap: Snapshot) -> None:
        """The snapshot as JSON beside the config's registry path, written whole (temp file + rename), 0600."""
        assert self._cache is not None
        doc = {"version": snap.version, "devices": [asdict(d) for d in snap.devices], "unsealed": snap.unsealed,
               "mac_keys": {k: v.hex() for k, v in snap.mac_keys.items()}}
        self._cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._cache.with_name(self._cache.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._cache)

    def _read_cache(self) -> Snapshot:
        assert self._cache is not None
        doc = json.loads(self._cache.read_text(encoding="utf-8"))
        return Snapshot(-1, [Device(**d) for d in doc["devices"]], dict(doc["unsealed"]),
                        {k: bytes.fromhex(v) for k, v in doc["mac_keys"].items()})

    def _apply(self, snap: Snapshot) -> None:
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
        if self._registry is not None:
            self._registry.close()
