"""The alert store's tables and their migrations (component "alerts" in `schema_versions`).

Version 1 is the SQLite schema of issues 5–18 exactly (a file written by them is adopted as it is);
version 2 renames the operators' audit table to `alert_audit` (in a shared PostgreSQL database the
registry's is `audit`) and adds the outbox claim columns (`claimed_by`, `claimed_until`) with
which two instances never send the same row; version 3 chains `alert_audit` rows by hash (`alerts/audit.py`),
sealing the rows already there; version 4 adds `alert_clearing`, the `keep_firing_for` clock of firing alerts
that a restart puts back. A released migration never changes: add another.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    inspect,
    text,
)

from alerts.audit import audit_parts
from core.database import Migration
from core.hashchain import GENESIS, link_hash

COMPONENT = "alerts"

_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY (the rowid); PostgreSQL: BIGSERIAL


def _v1_tables(md: MetaData, *, with_audit: bool) -> None:
    Table(
        "alerts", md,
        Column("id", _ID, primary_key=True),
        Column("fingerprint", Text, nullable=False, unique=True),
        Column("rule_id", Text, nullable=False),
        Column("device_id", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("severity", Text, nullable=False),
        Column("route", Text, nullable=False, server_default=""),
        Column("labels_json", Text, nullable=False, server_default="{}"),
        Column("summary", Text, nullable=False, server_default=""),
        Column("value", Float), Column("threshold", Float), Column("eta_s", Float),
        Column("started_ns", BigInteger), Column("updated_ns", BigInteger, nullable=False),
        Column("resolved_ns", BigInteger),
        Column("acked_by", Text), Column("acked_ns", BigInteger), Column("ack_comment", Text),
        Column("seq", BigInteger, nullable=False, server_default="0"),
        Column("episode", BigInteger, nullable=False, server_default="0"),
        Column("notified", Integer, nullable=False, server_default="0"),
        Column("receivers_json", Text, nullable=False, server_default="[]"),
        Column("last_notified_ns", BigInteger),
        Column("suppressed_by", Text),
        Column("case_key", Text), Column("case_id", Text),
        Column("measured_json", Text, nullable=False, server_default="{}"),
        Index("alerts_state", "state"),
    )
    Table(
        "history", md,
        Column("id", _ID, primary_key=True),
        Column("fingerprint", Text, nullable=False),
        Column("time_ns", BigInteger, nullable=False),
        Column("from_state", Text, nullable=False), Column("to_state", Text, nullable=False),
        Column("severity", Text, nullable=False),
        Column("value", Float), Column("threshold", Float),
        Column("event", Text), Column("seq", BigInteger),
        Column("receivers_json", Text, nullable=False, server_default="[]"),
        Column("note", Text, nullable=False, server_default=""),
        Index("history_fp", "fingerprint", "id"),
    )
    Table(
        "silences", md,
        Column("id", _ID, primary_key=True),
        Column("matchers_json", Text, nullable=False),
        Column("starts_ns", BigInteger, nullable=False), Column("ends_ns", BigInteger, nullable=False),
        Column("comment", Text, nullable=False), Column("created_by", Text, nullable=False),
        Column("created_ns", BigInteger, nullable=False),
    )
    Table(
        "cases", md,
        Column("receiver", Text, nullable=False), Column("case_key", Text, nullable=False),
        Column("fingerprint", Text, nullable=False), Column("case_id", Text),
        Column("opened_ns", BigInteger), Column("closed_ns", BigInteger),
        PrimaryKeyConstraint("receiver", "case_key"),
    )
    outbox = Table(
        "outbox", md,
        Column("id", _ID, primary_key=True),
        Column("fingerprint", Text, nullable=False), Column("seq", BigInteger, nullable=False),
        Column("receiver", Text, nullable=False),
        Column("event", Text, nullable=False), Column("case_key", Text),
        Column("body_json", Text, nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("created_ns", BigInteger, nullable=False), Column("next_attempt_ns", BigInteger, nullable=False),
        Column("delivered_ns", BigInteger), Column("failed_ns", BigInteger), Column("last_error", Text),
        UniqueConstraint("fingerprint", "seq", "receiver"),
    )
    waiting = text("delivered_ns IS NULL AND failed_ns IS NULL")
    for name, cols in (("outbox_pending", (outbox.c.fingerprint, outbox.c.receiver, outbox.c.id)),
                       ("outbox_due", (outbox.c.next_attempt_ns, outbox.c.id)),
                       ("outbox_queue", (func.coalesce(outbox.c.case_key, outbox.c.fingerprint), outbox.c.receiver,
                                         outbox.c.id))):
        Index(name, *cols, sqlite_where=waiting, postgresql_where=waiting)
    if with_audit:
        _audit_table(md, "audit")


def _audit_table(md: MetaData, name: str) -> Table:
    return Table(
        name, md,
        Column("id", _ID, primary_key=True),
        Column("time_ns", BigInteger, nullable=False), Column("user", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("target", Text, nullable=False, server_default=""),
        Column("detail", Text, nullable=False, server_default=""),
    )


def _v1(conn: Connection) -> None:
    """Today's tables where missing; a file of issue 5–10 also gets the `measured_json` column."""
    md = MetaData()
    sqlite = conn.dialect.name == "sqlite"
    _v1_tables(md, with_audit=sqlite)  # PostgreSQL starts at version 2's `alert_audit` (its `audit` is the registry's)
    md.create_all(conn, checkfirst=True)
    cols = {c["name"] for c in inspect(conn).get_columns("alerts")}
    if "measured_json" not in cols:
        conn.execute(text("ALTER TABLE alerts ADD COLUMN measured_json TEXT NOT NULL DEFAULT '{}'"))


def _v2(conn: Connection) -> None:
    """`audit` → `alert_audit`; outbox rows can be claimed by one instance until a time."""
    tables = set(inspect(conn).get_table_names())
    if conn.dialect.name == "sqlite" and "audit" in tables and "alert_audit" not in tables:
        conn.execute(text("ALTER TABLE audit RENAME TO alert_audit"))
    else:
        _audit_table(MetaData(), "alert_audit").create(conn, checkfirst=True)
    conn.execute(text("ALTER TABLE outbox ADD COLUMN claimed_by TEXT"))
    conn.execute(text("ALTER TABLE outbox ADD COLUMN claimed_until BIGINT"))


def _v3(conn: Connection) -> None:
    """`alert_audit` hash-chained (`seq`, `prev_hash`, `hash`); the rows already there sealed in `id` order."""
    for col in ("seq BIGINT", "prev_hash TEXT NOT NULL DEFAULT ''", "hash TEXT NOT NULL DEFAULT ''"):
        conn.execute(text(f"ALTER TABLE alert_audit ADD COLUMN {col}"))
    prev = GENESIS
    rows = conn.execute(text('SELECT id, time_ns, "user", action, target, detail FROM alert_audit ORDER BY id'))
    for seq, r in enumerate(rows.mappings().all(), 1):
        h = link_hash(prev, audit_parts({**r, "seq": seq}))
        conn.execute(text("UPDATE alert_audit SET seq = :s, prev_hash = :p, hash = :h WHERE id = :id"),
                     {"s": seq, "p": prev, "h": h, "id": r["id"]})
        prev = h
    conn.execute(text("CREATE UNIQUE INDEX alert_audit_seq ON alert_audit (seq)"))


def _v4(conn: Connection) -> None:
    """`alert_clearing`: a firing alert's `keep_firing_for` clock (since when its value is below the clear level)."""
    Table("alert_clearing", MetaData(), Column("fingerprint", Text, primary_key=True),
          Column("since_ns", BigInteger, nullable=False)).create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [
    Migration(1, "alerts, history, silences, cases, outbox and audit (the SQLite schema of issue 18)", _v1),
    Migration(2, "audit renamed alert_audit; outbox claims (claimed_by, claimed_until)", _v2),
    Migration(3, "alert_audit hash-chained (seq, prev_hash, hash); existing rows sealed", _v3),
    Migration(4, "alert_clearing: the keep_firing_for clock of firing alerts, restored after a restart", _v4),
]
