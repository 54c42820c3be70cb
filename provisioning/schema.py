"""The registry's tables and their versioned migrations (component `registry` in `schema_versions`).

One SQLAlchemy Core definition serves a SQLite file (the embedded default) and the shared PostgreSQL
database. Version 1 is the schema every release before issue 19 made: a file of then is at version
1 once its missing tamper-evidence columns are added and its rows sealed (see `provisioning.audit`).
Version 2 adds the change counter the service's `RegistryView` polls: one row in
`registry_changes`, bumped by triggers in the same transaction as every change to `devices`,
`audit` or `mac_keys` — made through urbansense or behind its back (SQLite's `PRAGMA data_version`
has no PostgreSQL equivalent, a counter row works on both).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
    select,
    text,
)

from core.database import Migration, is_postgres
from core.device import Device
from provisioning.audit import GENESIS, entry_hash, row_hash

COMPONENT = "registry"
DEVICE_FIELDS = [f.name for f in fields(Device)]

_ORDERED = Text().with_variant(Text(collation="C"), "postgresql")
"""Ids and keys compare and sort by code point on both backends (SQLite's BINARY; PostgreSQL's "C",
whatever the database's locale), so listings come out in the same order everywhere."""

META = MetaData()
devices = Table(
    "devices", META,
    Column("id", _ORDERED, primary_key=True),
    Column("key", _ORDERED, nullable=False, unique=True),
    Column("model", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("latitude", Double),
    Column("longitude", Double),
    Column("address", Text, nullable=False, server_default=""),
    Column("district", Text, nullable=False, server_default=""),
    Column("street", Text, nullable=False, server_default=""),
    Column("zone_class", Text, nullable=False, server_default=""),
    Column("site", Text, nullable=False, server_default=""),
    Column("install", Text, nullable=False, server_default="{}"),
    Column("expected_interval_s", Integer, nullable=False, server_default="300"),
    Column("status", Text, nullable=False, server_default="active"),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("row_hash", Text, nullable=False, server_default=""),
)
audit = Table(
    "audit", META,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("device_id", _ORDERED, nullable=False),
    Column("at", Double, nullable=False),
    Column("by", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("changes", Text, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("prev_hash", Text, nullable=False, server_default=""),
    Column("hash", Text, nullable=False, server_default=""),
    Index("audit_device", "device_id", "seq"),
)
"""`seq` is given by the writer (last + 1, under the registry's write lock), never by a sequence: a
PostgreSQL sequence leaves gaps on rollback, and a gap reads as a deleted audit row."""
mac_keys = Table(
    "mac_keys", META,
    Column("device_id", _ORDERED, primary_key=True),
    Column("key", Text, nullable=False),
)
registry_changes = Table(
    "registry_changes", META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
)
"""One row (id 1): `n` grows with every change; its row lock also makes registry writers take turns."""

_WATCHED = ("devices", "audit", "mac_keys")


def _v1_today(conn: Connection) -> None:
    """Today's tables; a registry made before tamper evidence gets its columns and is sealed as it is."""
    META.create_all(conn, tables=[devices, audit, mac_keys], checkfirst=True)
    insp = inspect(conn)
    audit_cols = {c["name"] for c in insp.get_columns("audit")}
    device_cols = {c["name"] for c in insp.get_columns("devices")}
    missing = [("audit", col) for col in ("note", "prev_hash", "hash") if col not in audit_cols]
    missing += [("devices", "row_hash")] if "row_hash" not in device_cols else []
    if not missing:
        return
    for table, col in missing:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {col} TEXT NOT NULL DEFAULT ''"))
    prev, last_of = GENESIS, {}
    for r in conn.execute(select(audit).order_by(audit.c.seq)).mappings().all():
        h = entry_hash(prev, r["device_id"], r["at"], r["by"], r["action"], r["changes"], r["note"])
        conn.execute(audit.update().where(audit.c.seq == r["seq"]).values(prev_hash=prev, hash=h))
        prev = last_of[r["device_id"]] = h
    for r in conn.execute(select(devices)).mappings().all():
        seal = row_hash(device_to_row(device_from_row(r)), last_of.get(r["id"], GENESIS))
        conn.execute(devices.update().where(devices.c.id == r["id"]).values(row_hash=seal))


def _v2_change_counter(conn: Connection) -> None:
    """The change counter and the triggers that bump it."""
    registry_changes.create(conn, checkfirst=True)
    conn.execute(registry_changes.insert().values(id=1, n=0))
    if is_postgres(conn):
        conn.execute(text(  # once per transaction (a bulk import is thousands of statements), in this schema
            "CREATE OR REPLACE FUNCTION registry_changed() RETURNS trigger LANGUAGE plpgsql "
            "SET search_path FROM CURRENT AS $$ BEGIN "
            "IF current_setting('urbansense.registry_bumped', true) IS DISTINCT FROM txid_current()::text THEN "
            "UPDATE registry_changes SET n = n + 1 WHERE id = 1; "
            "PERFORM set_config('urbansense.registry_bumped', txid_current()::text, true); "
            "END IF; RETURN NULL; END $$"))
        for table in _WATCHED:  # EXECUTE PROCEDURE: also what openGauss and KingbaseES accept
            conn.execute(text(f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                              f"ON {table} FOR EACH STATEMENT EXECUTE PROCEDURE registry_changed()"))
        return
    for table in _WATCHED:
        for op in ("INSERT", "UPDATE", "DELETE"):
            conn.execute(text(f"CREATE TRIGGER {table}_changed_{op.lower()} AFTER {op} ON {table} "
                              "BEGIN UPDATE registry_changes SET n = n + 1 WHERE id = 1; END"))


MIGRATIONS = [
    Migration(1, "devices, audit (hash-chained), mac_keys: the schema before issue 19", _v1_today),
    Migration(2, "registry_changes: a change counter bumped by triggers, for RegistryView", _v2_change_counter),
]


def device_from_row(row: Mapping[str, Any]) -> Device:
    """The `Device` of a `devices` row (its `install` JSON parsed)."""
    data = {k: row[k] for k in DEVICE_FIELDS}
    data["install"] = json.loads(data["install"] or "{}")
    return Device(**data)


def device_to_row(d: Device) -> dict[str, Any]:
    """A `Device` as `devices` column values; `install` as canonical JSON (sorted keys), what row hashes cover."""
    row = {k: getattr(d, k) for k in DEVICE_FIELDS}  # shallow: `install` is serialised right here
    row["install"] = json.dumps(d.install, sort_keys=True, ensure_ascii=False)
    return row
