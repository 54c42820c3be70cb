"""The device registry: one row per device, with a hash-chained audit trail of every change.

It lives in a SQLite file (the embedded default, `registry.path`) or in the shared PostgreSQL database
(`[database] url`), through one SQLAlchemy Core code path; the tables and their migrations are in
`provisioning.schema`.
"""

from __future__ import annotations

import getpass
import json
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, func, select, true

from core.database import is_postgres, migrate_or_refuse, open_engine, read_connection
from core.device import Device
from provisioning.audit import GENESIS, Problem, entry_hash, row_hash, verify_chain
from provisioning.schema import (
    COMPONENT,
    DEVICE_FIELDS,
    MIGRATIONS,
    audit,
    device_from_row,
    device_to_row,
    devices,
    mac_keys,
    registry_changes,
)

_COLUMNS = DEVICE_FIELDS


@dataclass(slots=True)
class ImportResult:
    """Device ids by what `import_devices` did with them."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent reading of the registry, what `RegistryView` holds: the change counter it was read
    at, every device, the rows changed outside urbansense (id → why) and the frame MAC keys by IMEI."""

    version: int
    devices: list[Device]
    unsealed: dict[str, str]
    mac_keys: dict[str, bytes]


class RegistryError(ValueError):
    """A registry change that cannot be made (duplicate key, unknown id); the message says which."""


def current_user() -> str:
    """Who makes a change when no `--by` is given: the OS user."""
    try:
        return getpass.getuser()
    except Exception:  # getuser raises several types when no name can be found
        return "unknown"


def _refuse_nul(**texts: object) -> None:
    """U+0000 cannot be stored in PostgreSQL text: refused on both backends, naming the field."""
    for name, value in texts.items():
        if isinstance(value, str) and "\x00" in value:
            raise RegistryError(f"{name} contains U+0000 NULL, which no registry field may hold")


def _check_device(device: Device) -> None:
    _refuse_nul(**{k: getattr(device, k) for k in _COLUMNS})


class Registry:
    """The device registry in a SQLite file or a PostgreSQL database; safe to open from the CLI while the
    service runs (SQLite WAL; PostgreSQL row locks). Writers take turns on the `registry_changes` row, so
    the audit chain never forks."""

    def __init__(self, path: str | Path, *, migrate_schema: bool = True) -> None:
        """`path`: a SQLite file (parents created) or a `postgresql://` URL. Pending schema migrations are
        applied (`migrate_schema`), else a registry behind this code raises `MigrationError`."""
        self.path = path
        self.engine: Engine = open_engine(path)
        self.postgres = is_postgres(self.engine)
        try:
            migrate_or_refuse(self.engine, COMPONENT, MIGRATIONS, migrate_schema=migrate_schema)
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write transaction holding the registry's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
        `registry_changes` row, FOR UPDATE) until it commits, so each writer sees the last audit row."""
        with self.engine.begin() as conn:
            conn.execute(select(registry_changes.c.n).where(registry_changes.c.id == 1).with_for_update())
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction on one snapshot (PostgreSQL: REPEATABLE READ; SQLite: a WAL read transaction),
        so device rows and audit rows read by several statements belong together."""
        with read_connection(self.engine) as conn:
            if self.postgres:
                conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    def data_version(self) -> int:
        """The registry's change counter: it moves whenever anything in it changes, through urbansense or
        not (triggers bump it in the changing transaction); a cheap 'did anything change?'."""
        with read_connection(self.engine) as conn:
            return _version(conn)

    def load(self) -> Snapshot:
        """Everything `RegistryView` needs, read on one snapshot together with the change counter."""
        with self._read() as conn:
            return Snapshot(_version(conn), _all(conn), _unsealed(conn), _mac_keys(conn))

    def _chain(self, conn: Connection, entries: Sequence[tuple[str, str, Mapping[str, Any]]],
               by: str | None, user: str | None) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The audit rows (device id, action, changes) chained onto the last one, and each device's new last
        hash (what its row hash is tied to). `user` is who acted (default: the OS user), `by` a free-text
        note (e.g. "for the district office"), never taken as the actor. Written by `_write_audit`."""
        who, note = user or current_user(), by or ""
        _refuse_nul(user=who, by=note)
        last = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
        seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        rows, out = [], {}
        for device_id, action, changes in entries:
            _refuse_nul(action=action)
            seq, at = seq + 1, time.time()
            changes_text = json.dumps(changes, ensure_ascii=False, sort_keys=True, default=str)
            h = entry_hash(prev, device_id, at, who, action, changes_text, note)
            rows.append({"seq": seq, "device_id": device_id, "at": at, "by": who, "action": action,
                         "changes": changes_text, "note": note, "prev_hash": prev, "hash": h})
            prev = out[device_id] = h
        return rows, out

    def _audit_and_seal(self, conn: Connection, device: Device, action: str, changes: Mapping[str, Any],
                        by: str | None, user: str | None) -> None:
        """One audit row for a device whose row is already written, and its row hash tied to it."""
        rows, last = self._chain(conn, [(device.id, action, changes)], by, user)
        _insert_many(conn, audit, rows)
        conn.execute(devices.update().where(devices.c.id == device.id)
                     .values(row_hash=row_hash(device_to_row(device), last[device.id])))

    def unsealed(self) -> dict[str, str]:
        """Devices whose row no longer matches its hash (changed outside urbansense): id → what differs."""
        with self._read() as conn:
            return _unsealed(conn)

    def verify(self) -> list[Problem]:
        """Everything `urbansense audit verify` reports: a broken audit chain and rows changed behind its back."""
        with self._read() as conn:
            problems = verify_chain(conn.execute(select(audit).order_by(audit.c.seq)).mappings())
            problems += [Problem(f"device {k}", v) for k, v in _unsealed(conn).items()]
        return problems

    def add(self, device: Device, *, by: str | None = None, user: str | None = None) -> None:
        """Insert a device; a duplicate id or key is refused naming the device that has it.

        `user`: who does it (the desk console passes its logged-in user; default the OS user);
        `by`: a free-text note kept beside it in the audit trail."""
        _check_device(device)
        now = time.time()
        with self._tx() as conn:
            for col, val in (("id", device.id), ("key", device.key)):
                hit = conn.execute(select(devices.c.id).where(devices.c[col] == val)).first()
                if hit:
                    raise RegistryError(f"{col} {val!r} is already registered to device {hit[0]!r}")
            conn.execute(devices.insert().values(**device_to_row(device), created_at=now, updated_at=now))
            self._audit_and_seal(conn, device, "add", asdict(device), by, user)

    def update(self, device_id: str, *, by: str | None = None, action: str = "update",
               note: Mapping[str, Any] | None = None, user: str | None = None, **changes: Any) -> Device:
        """Change some columns of one device; records old → new values (plus `note`) in the audit table.

        Nothing is written, and nothing audited, when no value actually changes.
        """
        with self._tx() as conn:
            old = _get(conn, device_id)
            new = replace(old, **changes)
            diff: dict[str, Any] = {k: [getattr(old, k), getattr(new, k)] for k in changes
                                    if getattr(old, k) != getattr(new, k)}
            if not diff:
                return old
            _check_device(new)
            diff.update(note or {})
            if not _sealed(conn, old):  # a change made outside urbansense is taken over, visibly
                action += "+adopt"
                diff["adopted_outside_change"] = True
            if "key" in diff:
                hit = conn.execute(select(devices.c.id).where(and_(devices.c.key == new.key,
                                                                   devices.c.id != device_id))).first()
                if hit:
                    raise RegistryError(f"key {new.key!r} is already registered to device {hit[0]!r}")
            conn.execute(devices.update().where(devices.c.id == device_id)
                         .values(**device_to_row(new), updated_at=time.time()))
            self._audit_and_seal(conn, new, action, diff, by, user)
            return new

    def key_owners(self) -> dict[str, str]:
        """Every registered key → the id of the device that has it."""
        with read_connection(self.engine) as conn:
            return {str(r[0]): str(r[1]) for r in conn.execute(select(devices.c.key, devices.c.id))}

    def import_devices(self, devices_in: Sequence[Device], *, by: str | None = None,
                       action: str = "import", user: str | None = None) -> ImportResult:
        """Add new devices and update changed ones in one transaction; identical ones are left alone.

        One audit row per device added or changed. A key registered to another device
        refuses the whole batch (`RegistryError` naming both), so nothing is half-written.
        """
        result = ImportResult()
        added: list[Device] = []
        updated: list[Device] = []
        entries: list[tuple[str, str, Mapping[str, Any]]] = []
        for device in devices_in:
            _check_device(device)
        with self._tx() as conn:
            now = time.time()
            existing = {d.id: d for d in _all(conn)}
            owners = {d.key: d.id for d in existing.values()}
            for device in devices_in:
                owner = owners.get(device.key)
                if owner is not None and owner != device.id:
                    raise RegistryError(f"key {device.key!r} of device {device.id!r} is already registered "
                                        f"to device {owner!r}")
                old = existing.get(device.id)
                if old is None:
                    changes: dict[str, Any] = asdict(device)
                    result.added.append(device.id)
                    added.append(device)
                    verb = "add"
                elif old == device:
                    result.unchanged.append(device.id)
                    continue
                else:
                    owners.pop(old.key, None)
                    changes = {f: [getattr(old, f), getattr(device, f)] for f in _COLUMNS
                               if getattr(old, f) != getattr(device, f)}
                    result.updated.append(device.id)
                    updated.append(device)
                    verb = "update"
                owners[device.key] = device.id
                entries.append((device.id, f"{action}:{verb}", changes))
            audit_rows, last = self._chain(conn, entries, by, user)

            def sealed(d: Device) -> dict[str, Any]:
                row = device_to_row(d)
                return {**row, "row_hash": row_hash(row, last[d.id]), "updated_at": now}

            if updated:  # first, so a key moved from one device to another is free before it is taken
                conn.execute(devices.update().where(devices.c.id == bindparam("b_id")).values(
                    {k: bindparam(f"b_{k}") for k in (*_COLUMNS, "row_hash", "updated_at") if k != "id"}),
                    [{f"b_{k}": v for k, v in sealed(d).items()} for d in updated])
            _insert_many(conn, devices, [{**sealed(d), "created_at": now} for d in added])
            _insert_many(conn, audit, audit_rows)
        return result

    def get(self, device_id: str) -> Device:
        with read_connection(self.engine) as conn:
            return _get(conn, device_id)

    def find(self, device_id: str) -> Device | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(select(devices).where(devices.c.id == device_id)).mappings().first()
        return device_from_row(row) if row else None

    def by_key(self, key: str) -> Device | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(select(devices).where(devices.c.key == key)).mappings().first()
        return device_from_row(row) if row else None

    def all(self, **where: str) -> list[Device]:
        """Every device, optionally filtered by equality on columns (kind, model, district, status)."""
        bad = set(where) - set(_COLUMNS)
        if bad:
            raise RegistryError(f"cannot filter on {sorted(bad)}; columns are {_COLUMNS}")
        with read_connection(self.engine) as conn:
            return _all(conn, *(devices.c[k] == v for k, v in where.items()))

    def matching(self, *, contains: Mapping[str, str] | None = None, **where: str) -> list[Device]:
        """Devices equal on `where` columns and containing each `contains` text (e.g. district 朝阳 → 朝阳区)."""
        contains = dict(contains or {})
        bad = (set(where) | set(contains)) - set(_COLUMNS)
        if bad:
            raise RegistryError(f"cannot filter on {sorted(bad)}; columns are {_COLUMNS}")
        clauses = [devices.c[k] == v for k, v in where.items()]
        clauses += [func.lower(devices.c[k]).contains(func.lower(_escape_like(v)), escape="\\")
                    for k, v in contains.items()]
        with read_connection(self.engine) as conn:
            return _all(conn, *clauses)

    def with_prefix(self, id_prefix: str, key_prefix: str | None, limit: int = 20) -> list[Device]:
        """Devices whose id starts with `id_prefix` (any case) or whose key starts with `key_prefix`."""
        hit = func.lower(devices.c.id).like(_escape_like(id_prefix.lower()) + "%", escape="\\")
        if key_prefix:
            hit = hit | func.lower(devices.c.key).like(_escape_like(key_prefix.lower()) + "%", escape="\\")
        with read_connection(self.engine) as conn:
            rows = conn.execute(select(devices).where(hit).order_by(devices.c.id).limit(limit)).mappings()
            return [device_from_row(r) for r in rows]

    def ids(self) -> list[str]:
        with read_connection(self.engine) as conn:
            return [str(r[0]) for r in conn.execute(select(devices.c.id).order_by(devices.c.id))]

    def history(self, device_id: str) -> list[dict[str, Any]]:
        with read_connection(self.engine) as conn:
            rows = conn.execute(select(audit).where(audit.c.device_id == device_id).order_by(audit.c.seq))
            return [{**r, "changes": json.loads(r["changes"])} for r in rows.mappings()]

    def set_mac_key(self, device_id: str, *, by: str | None = None, user: str | None = None,
                    clear: bool = False) -> str:
        """Give an NB-IoT device a new random frame MAC key (returned once, hex), or remove it (`clear`).

        The key itself never goes into the audit trail, only that it was set or removed."""
        key = "" if clear else secrets.token_hex(16)
        with self._tx() as conn:
            device = _get(conn, device_id)
            conn.execute(delete(mac_keys).where(mac_keys.c.device_id == device_id))
            if not clear:
                conn.execute(mac_keys.insert().values(device_id=device_id, key=key))
            self._audit_and_seal(conn, device, "mac-key", {"mac_key": "removed" if clear else "set"}, by, user)
        return key

    def mac_keys(self) -> dict[str, bytes]:
        """Frame MAC keys by device key (IMEI) of the devices that have one."""
        with read_connection(self.engine) as conn:
            return _mac_keys(conn)

    def audit_rows(self) -> int:
        with read_connection(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(audit)).scalar_one())

    def count(self) -> int:
        with read_connection(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(devices)).scalar_one())


def _insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows in one executemany (SQLite: its C loop; psycopg: one pipeline), nothing for none."""
    if rows:
        conn.execute(table.insert(), list(rows))


def _escape_like(text: str) -> str:
    """`text` taken literally in a LIKE pattern (escape character `\\`)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _version(conn: Connection) -> int:
    return int(conn.execute(select(registry_changes.c.n).where(registry_changes.c.id == 1)).scalar_one())


def _get(conn: Connection, device_id: str) -> Device:
    row = conn.execute(select(devices).where(devices.c.id == device_id)).mappings().first()
    if row is None:
        raise RegistryError(f"no device with id {device_id!r}")
    return device_from_row(row)


def _all(conn: Connection, *where: Any) -> list[Device]:
    rows = conn.execute(select(devices).where(true(), *where).order_by(devices.c.id)).mappings()
    return [device_from_row(r) for r in rows]


def _last_hashes(conn: Connection, device_id: str | None = None) -> dict[str, str]:
    """The hash of each device's last audit row (of one device when `device_id` is given)."""
    last = select(func.max(audit.c.seq)).group_by(audit.c.device_id)
    if device_id is not None:
        last = last.where(audit.c.device_id == device_id)
    rows = conn.execute(select(audit.c.device_id, audit.c.hash).where(audit.c.seq.in_(last)))
    return {str(r[0]): str(r[1]) for r in rows}


def _sealed(conn: Connection, device: Device) -> bool:
    row = conn.execute(select(devices.c.row_hash).where(devices.c.id == device.id)).first()
    expected = row_hash(device_to_row(device), _last_hashes(conn, device.id).get(device.id, GENESIS))
    return row is not None and row[0] == expected


def _unsealed(conn: Connection) -> dict[str, str]:
    last = _last_hashes(conn)
    out = {}
    for row in conn.execute(select(devices)).mappings():
        device = device_from_row(row)
        if row["row_hash"] != row_hash(device_to_row(device), last.get(device.id, GENESIS)):
            out[device.id] = "row changed outside urbansense (its hash does not match its audit trail)"
    return out


def _mac_keys(conn: Connection) -> dict[str, bytes]:
    rows = conn.execute(select(devices.c.key, mac_keys.c.key)
                        .select_from(mac_keys.join(devices, devices.c.id == mac_keys.c.device_id)))
    return {str(r[0]): bytes.fromhex(r[1]) for r in rows}


def registry_copied(source: Registry, target: Registry) -> bool:
    """True when `target` already holds `source`'s audit trail (its last row, same seq and hash): a copy made
    before, perhaps with changes since. False for an empty source."""
    with source._read() as src:
        last = src.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
    if last is None:
        return False
    with target._read() as conn:
        there = conn.execute(select(audit.c.hash).where(audit.c.seq == last.seq)).scalar_one_or_none()
    return there == last.hash


def copy_registry(source: Registry, target: Registry) -> int:
    """Copy every device, audit row and MAC key of `source` into the empty registry `target`, values and
    hashes verbatim (e.g. a city's SQLite file into the shared PostgreSQL when it moves to hot standby);
    returns the devices copied. The audit chain and the row seals stay valid because every value comes
    back exactly; `target.verify()` checks it. A `target` that holds anything is refused (`RegistryError`)."""
    with source._read() as src:
        device_rows = [dict(r) for r in src.execute(select(devices).order_by(devices.c.id)).mappings()]
        audit_rows = [dict(r) for r in src.execute(select(audit).order_by(audit.c.seq)).mappings()]
        key_rows = [dict(r) for r in src.execute(select(mac_keys)).mappings()]
    with target._tx() as conn:
        held = conn.execute(select(func.count()).select_from(devices)).scalar_one()
        held += conn.execute(select(func.count()).select_from(audit)).scalar_one()
        if held:
            raise RegistryError("the target registry is not empty: copy only into a new one")
        for table, rows in ((devices, device_rows), (audit, audit_rows), (mac_keys, key_rows)):
            for i in range(0, len(rows), 1000):
                conn.execute(table.insert(), rows[i:i + 1000])
    return len(device_rows)
