"""The device registry: one SQLite row per device, with an audit trail of every change."""

from __future__ import annotations

import getpass
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.device import Device
from provisioning.audit import GENESIS, Problem, entry_hash, row_hash, verify_chain

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    latitude REAL,
    longitude REAL,
    address TEXT NOT NULL DEFAULT '',
    district TEXT NOT NULL DEFAULT '',
    street TEXT NOT NULL DEFAULT '',
    zone_class TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT '',
    install TEXT NOT NULL DEFAULT '{}',
    expected_interval_s INTEGER NOT NULL DEFAULT 300,
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    at REAL NOT NULL,
    by TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_device ON audit(device_id, seq);
"""

_COLUMNS = [f.name for f in fields(Device)]


@dataclass(slots=True)
class ImportResult:
    """Device ids by what `import_devices` did with them."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class RegistryError(ValueError):
    """A registry change that cannot be made (duplicate key, unknown id); the message says which."""


def _row_to_device(row: sqlite3.Row) -> Device:
    data = {k: row[k] for k in _COLUMNS}
    data["install"] = json.loads(data["install"] or "{}")
    return Device(**data)


def _device_to_row(d: Device) -> dict[str, Any]:
    row = asdict(d)
    row["install"] = json.dumps(d.install, sort_keys=True, ensure_ascii=False)
    return row


def current_user() -> str:
    """Who makes a change when no `--by` is given: the OS user."""
    try:
        return getpass.getuser()
    except Exception:  # getuser raises several types when no name can be found
        return "unknown"


class Registry:
    """SQLite-backed device registry; safe to open from the CLI while the service runs (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap 'did anything change?'."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def _migrate(self) -> None:
        """Add the tamper-evidence columns to a registry made before them, and seal its rows as they are."""
        def columns(table: str) -> set[str]:
            return {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}

        if {"note", "prev_hash", "hash"} <= columns("audit") and "row_hash" in columns("devices"):
            return
        with self._tx() as db:
            audit_cols, device_cols = columns("audit"), columns("devices")
            for col in ("note", "prev_hash", "hash"):
                if col not in audit_cols:
                    db.execute(f"ALTER TABLE audit ADD COLUMN {col} TEXT NOT NULL DEFAULT ''")
            if "row_hash" not in device_cols:
                db.execute("ALTER TABLE devices ADD COLUMN row_hash TEXT NOT NULL DEFAULT ''")
            prev = GENESIS
            for r in db.execute("SELECT * FROM audit ORDER BY seq").fetchall():
                h = entry_hash(prev, r["device_id"], r["at"], r["by"], r["action"], r["changes"], r["note"])
                db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, r["seq"]))
                prev = h
            for row in db.execute("SELECT * FROM devices").fetchall():
                self._seal(db, _row_to_device(row))

    def _audit(self, db: sqlite3.Connection, device_id: str, action: str, changes: Mapping[str, Any],
               by: str | None, user: str | None = None) -> str:
        """Append one audit row to the chain; returns its hash. `user` is who acted (default: the OS user),
        `by` a free-text note (e.g. "for the district office"), never taken as the actor."""
        last = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        prev = last["hash"] if last else GENESIS
        at, who, note = time.time(), user or current_user(), by or ""
        text = json.dumps(changes, ensure_ascii=False, sort_keys=True, default=str)
        h = entry_hash(prev, device_id, at, who, action, text, note)
        db.execute("INSERT INTO audit(device_id, at, by, action, changes, note, prev_hash, hash) "
                   "VALUES (?,?,?,?,?,?,?,?)", (device_id, at, who, action, text, note, prev, h))
        return h

    def _seal(self, db: sqlite3.Connection, device: Device) -> None:
        """Record the device row's hash, tied to its last audit row (see `provisioning.audit`)."""
        last = db.execute("SELECT hash FROM audit WHERE device_id = ? ORDER BY seq DESC LIMIT 1",
                          (device.id,)).fetchone()
        db.execute("UPDATE devices SET row_hash = ? WHERE id = ?",
                   (row_hash(_device_to_row(device), last["hash"] if last else GENESIS), device.id))

    def _sealed(self, db: sqlite3.Connection, device: Device) -> bool:
        row = db.execute("SELECT row_hash FROM devices WHERE id = ?", (device.id,)).fetchone()
        last = db.execute("SELECT hash FROM audit WHERE device_id = ? ORDER BY seq DESC LIMIT 1",
                          (device.id,)).fetchone()
        expected = row_hash(_device_to_row(device), last["hash"] if last else GENESIS)
        return row is not None and row["row_hash"] == expected

    def unsealed(self) -> dict[str, str]:
        """Devices whose row no longer matches its hash (changed outside urbansense): id → what differs."""
        last = {r["device_id"]: r["hash"] for r in self._db.execute(
            "SELECT device_id, hash FROM audit WHERE seq IN (SELECT max(seq) FROM audit GROUP BY device_id)")}
        out = {}
        for row in self._db.execute("SELECT * FROM devices"):
            device = _row_to_device(row)
            if row["row_hash"] != row_hash(_device_to_row(device), last.get(device.id, GENESIS)):
                out[device.id] = "row changed outside urbansense (its hash does not match its audit trail)"
        return out

    def verify(self) -> list[Problem]:
        """Everything `urbansense audit verify` reports: a broken audit chain and rows changed behind its back."""
        problems = verify_chain(self._db.execute("SELECT * FROM audit ORDER BY seq"))
        problems += [Problem(f"device {k}", v) for k, v in self.unsealed().items()]
        return problems

    def add(self, device: Device, *, by: str | None = None, user: str | None = None) -> None:
        """Insert a device; a duplicate id or key is refused naming the device that has it.

        `user`: who does it (the desk console passes its logged-in user; default the OS user);
        `by`: a free-text note kept beside it in the audit trail."""
        now = time.time()
        with self._tx() as db:
            for col, val in (("id", device.id), ("key", device.key)):
                hit = db.execute(f"SELECT id FROM devices WHERE {col} = ?", (val,)).fetchone()
                if hit:
                    raise RegistryError(f"{col} {val!r} is already registered to device {hit['id']!r}")
            row = _device_to_row(device)
            cols = ", ".join([*row, "created_at", "updated_at"])
            marks = ", ".join("?" * (len(row) + 2))
            db.execute(f"INSERT INTO devices({cols}) VALUES ({marks})", (*row.values(), now, now))
            self._audit(db, device.id, "add", asdict(device), by, user)
            self._seal(db, device)

    def update(self, device_id: str, *, by: str | None = None, action: str = "update",
               note: Mapping[str, Any] | None = None, user: str | None = None, **changes: Any) -> Device:
        """Change some columns of one device; records old → new values (plus `note`) in the audit table.

        Nothing is written, and nothing audited, when no value actually changes.
        """
        with self._tx() as db:
            old = self._get(db, device_id)
            new = replace(old, **changes)
            diff: dict[str, Any] = {k: [getattr(old, k), getattr(new, k)] for k in changes
                                    if getattr(old, k) != getattr(new, k)}
            if not diff:
                return old
            diff.update(note or {})
            if not self._sealed(db, old):  # a change made outside urbansense is taken over, visibly
                action += "+adopt"
                diff["adopted_outside_change"] = True
            if "key" in diff:
                hit = db.execute("SELECT id FROM devices WHERE key = ? AND id != ?",
                                 (new.key, device_id)).fetchone()
                if hit:
                    raise RegistryError(f"key {new.key!r} is already registered to device {hit['id']!r}")
            row = _device_to_row(new)
            sets = ", ".join(f"{k} = ?" for k in row)
            db.execute(f"UPDATE devices SET {sets}, updated_at = ? WHERE id = ?",
                       (*row.values(), time.time(), device_id))
            self._audit(db, device_id, action, diff, by, user)
            self._seal(db, new)
            return new

    def key_owners(self) -> dict[str, str]:
        """Every registered key → the id of the device that has it."""
        return {r[0]: r[1] for r in self._db.execute("SELECT key, id FROM devices")}

    def import_devices(self, devices: Sequence[Device], *, by: str | None = None,
                       action: str = "import", user: str | None = None) -> ImportResult:
        """Add new devices and update changed ones in one transaction; identical ones are left alone.

        One audit row per device added or changed. A key registered to another device
        refuses the whole batch (`RegistryError` naming both), so nothing is half-written.
        """
        result = ImportResult()
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        audits: list[tuple[Any, ...]] = []
        with self._tx() as db:
            now = time.time()
            existing = {row["id"]: _row_to_device(row) for row in db.execute("SELECT * FROM devices")}
            owners = {d.key: d.id for d in existing.values()}
            for device in devices:
                owner = owners.get(device.key)
                if owner is not None and owner != device.id:
                    raise RegistryError(f"key {device.key!r} of device {device.id!r} is already registered "
                                        f"to device {owner!r}")
                old = existing.get(device.id)
                row = _device_to_row(device)
                if old is None:
                    inserts.append((*row.values(), now, now))
                    changes: dict[str, Any] = asdict(device)
                    result.added.append(device.id)
                    verb = "add"
                elif old == device:
                    result.unchanged.append(device.id)
                    continue
                else:
                    owners.pop(old.key, None)
                    updates.append((*row.values(), now, device.id))
                    changes = {f: [getattr(old, f), getattr(device, f)] for f in _COLUMNS
                               if getattr(old, f) != getattr(device, f)}
                    result.updated.append(device.id)
                    verb = "update"
                owners[device.key] = device.id
                audits.append((device, f"{action}:{verb}", changes))
            if inserts:
                cols = ", ".join([*_COLUMNS, "created_at", "updated_at"])
                db.executemany(f"INSERT INTO devices({cols}) VALUES ({', '.join('?' * (len(_COLUMNS) + 2))})",
                               inserts)
            if updates:
                sets = ", ".join(f"{k} = ?" for k in _COLUMNS)
                db.executemany(f"UPDATE devices SET {sets}, updated_at = ? WHERE id = ?", updates)
            for device, what, changes in audits:
                self._audit(db, device.id, what, changes, by, user)
                self._seal(db, device)
        return result

    def _get(self, db: sqlite3.Connection, device_id: str) -> Device:
        row = db.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone()
        if row is None:
            raise RegistryError(f"no device with id {device_id!r}")
        return _row_to_device(row)

    def get(self, device_id: str) -> Device:
        return self._get(self._db, device_id)

    def find(self, device_id: str) -> Device | None:
        row = self._db.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone()
        return _row_to_device(row) if row else None

    def by_key(self, key: str) -> Device | None:
        row = self._db.execute("SELECT * FROM devices WHERE key = ?", (key,)).fetchone()
        return _row_to_device(row) if row else None

    def all(self, **where: str) -> list[Device]:
        """Every device, optionally filtered by equality on columns (kind, model, district, status)."""
        bad = set(where) - set(_COLUMNS)
        if bad:
            raise RegistryError(f"cannot filter on {sorted(bad)}; columns are {_COLUMNS}")
        clause = " AND ".join(f"{k} = ?" for k in where) or "1"
        rows = self._db.execute(f"SELECT * FROM devices WHERE {clause} ORDER BY id", tuple(where.values()))
        return [_row_to_device(r) for r in rows]

    def matching(self, *, contains: Mapping[str, str] | None = None, **where: str) -> list[Device]:
        """Devices equal on `where` columns and containing each `contains` text (e.g. district 朝阳 → 朝阳区)."""
        contains = dict(contains or {})
        bad = (set(where) | set(contains)) - set(_COLUMNS)
        if bad:
            raise RegistryError(f"cannot filter on {sorted(bad)}; columns are {_COLUMNS}")
        clauses = [f"{k} = ?" for k in where] + [f"instr(lower({k}), lower(?)) > 0" for k in contains]
        rows = self._db.execute(f"SELECT * FROM devices WHERE {' AND '.join(clauses) or '1'} ORDER BY id",
                                (*where.values(), *contains.values()))
        return [_row_to_device(r) for r in rows]

    def with_prefix(self, id_prefix: str, key_prefix: str | None, limit: int = 20) -> list[Device]:
        """Devices whose id starts with `id_prefix` (any case) or whose key starts with `key_prefix`."""
        def like(text: str) -> str:
            return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        sql = "SELECT * FROM devices WHERE lower(id) LIKE ? ESCAPE '\\'"
        args: list[str] = [like(id_prefix)]
        if key_prefix:
            sql += " OR key LIKE ? ESCAPE '\\'"
            args.append(like(key_prefix))
        rows = self._db.execute(f"{sql} ORDER BY id LIMIT ?", (*args, limit))
        return [_row_to_device(r) for r in rows]

    def ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT id FROM devices ORDER BY id")]

    def history(self, device_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM audit WHERE device_id = ? ORDER BY seq", (device_id,))
        return [{**dict(r), "changes": json.loads(r["changes"])} for r in rows]

    def set_mac_key(self, device_id: str, *, by: str | None = None, user: str | None = None,
                    clear: bool = False) -> str:
        """Give an NB-IoT device a new random frame MAC key (returned once, hex), or remove it (`clear`).

        The key itself never goes into the audit trail, only that it was set or removed."""
        key = "" if clear else secrets.token_hex(16)
        with self._tx() as db:
            device = self._get(db, device_id)
            db.execute("CREATE TABLE IF NOT EXISTS mac_keys (device_id TEXT PRIMARY KEY, key TEXT NOT NULL)")
            if clear:
                db.execute("DELETE FROM mac_keys WHERE device_id = ?", (device_id,))
            else:
                db.execute("INSERT OR REPLACE INTO mac_keys(device_id, key) VALUES (?, ?)", (device_id, key))
            self._audit(db, device_id, "mac-key", {"mac_key": "removed" if clear else "set"}, by, user)
            self._seal(db, device)
        return key

    def mac_keys(self) -> dict[str, bytes]:
        """Frame MAC keys by device key (IMEI) of the devices that have one."""
        has = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'mac_keys'").fetchone()
        if not has:
            return {}
        rows = self._db.execute("SELECT d.key, m.key FROM mac_keys m JOIN devices d ON d.id = m.device_id")
        return {r[0]: bytes.fromhex(r[1]) for r in rows}

    def audit_rows(self) -> int:
        return self._db.execute("SELECT count(*) FROM audit").fetchone()[0]

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM devices").fetchone()[0]
