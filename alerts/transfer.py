"""Copying an alert store whole (alerts, history, silences, cases, outbox, operators' audit) from a SQLite file
into the shared PostgreSQL database, for a city moving to hot standby (`urbansense db copy-from-sqlite`).

Rows are copied verbatim, ids included, so an open alert keeps its case and its outbox rows, and the audit
chain stays valid; PostgreSQL's id sequences are moved past the copied ids.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import column, func, inspect, select, text
from sqlalchemy import table as sql_table

from alerts.errors import AlertsError
from alerts.store import AlertStore

TABLES = ("alerts", "history", "silences", "cases", "outbox", "alert_audit", "alert_clearing")
"""Every table of the alert store, in the order they are copied."""
_SERIAL = ("alerts", "history", "silences", "outbox", "alert_audit")


def _counts(store: AlertStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in TABLES}


def source_empty(store: AlertStore) -> bool:
    """True when `store` holds no row at all (a file the service made but never used)."""
    return not any(_counts(store).values())


def alerts_copied(source: AlertStore, target: AlertStore) -> bool:
    """True when `target` already holds what `source` holds (every alert by fingerprint, and the operators'
    audit up to its last row): a copy made before, perhaps with changes since. False for an empty source."""
    with source.engine.connect() as conn:
        fps = {r[0] for r in conn.execute(text("SELECT fingerprint FROM alerts"))}
        last = conn.execute(text("SELECT seq, hash FROM alert_audit ORDER BY seq DESC LIMIT 1")).first()
    if not fps and last is None:
        return False
    with target.engine.connect() as conn:
        there = {r[0] for r in conn.execute(text("SELECT fingerprint FROM alerts"))}
        same_audit = last is None or conn.execute(
            text("SELECT hash FROM alert_audit WHERE seq = :s"), {"s": last.seq}).scalar_one_or_none() == last.hash
    return fps <= there and same_audit


def copy_alert_store(source: AlertStore, target: AlertStore, *, batch: int = 1000,
                     on_table: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every row of `source` into the empty store `target` in one transaction; returns rows per table.
    `on_table(name, rows)` after each table. A `target` holding anything is refused (`AlertsError`)."""
    held = sum(_counts(target).values())
    if held:
        raise AlertsError(f"the target alert store already holds {held} rows: copy only into a new one")
    copied: dict[str, int] = {}
    with source.engine.connect() as src, target.engine.begin() as dst:
        for name in TABLES:
            table = sql_table(name, *(column(c["name"]) for c in inspect(src).get_columns(name)))
            n = 0
            result = src.execution_options(yield_per=batch).execute(select(table))
            for part in result.mappings().partitions():
                dst.execute(table.insert(), [dict(r) for r in part])
                n += len(part)
            copied[name] = n
            if on_table is not None:
                on_table(name, n)
        if dst.dialect.name == "postgresql":
            for name in _SERIAL:
                top = dst.execute(select(func.coalesce(func.max(text("id")), 0)).select_from(text(name))).scalar_one()
                dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), :n, false)"),
                            {"n": int(top) + 1})
    return copied
