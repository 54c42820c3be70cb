"""The cluster leader's progress: per device, the newest reading time whose transitions are committed.

Why: a new leader warms its rule windows from InfluxDB, and warm-up emits no transitions. Readings
the ingest processes stored while no leader had processed them yet (the dead leader's last
moments, the leaderless gap) are in InfluxDB *and* waiting on the readings bus; were they replayed
by warm-up, an alert they start would fire silently and the bus's copy be dropped as already seen.
So warm-up replays only readings at or before this watermark; later ones reach the rules from the
bus, and their transitions are notified. The row is written after the transitions' own commit: a
leader that dies in between leaves the watermark behind, the bus redelivers, and the alert store's
restored state keeps the replay from notifying twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import BigInteger, Column, Connection, Engine, MetaData, Table, Text, case, select
from sqlalchemy.dialects import postgresql, sqlite

from core.database import Migration, is_postgres, migrate_or_refuse, open_engine, read_connection
from core.reading import Reading

_META = MetaData()
leader_progress = Table(
    "leader_progress", _META,
    Column("device_id", Text, primary_key=True),
    Column("time_ns", BigInteger, nullable=False),
)


def _create(conn: Connection) -> None:
    leader_progress.create(conn)


COMPONENT = "leader"
MIGRATIONS = [Migration(1, "leader_progress: per device, the newest reading the leader committed", _create)]


class LeaderProgress:
    """`load()` the watermarks; `advance(readings)` after their transitions are committed."""

    def __init__(self, url_or_path: str | Path, *, migrate_schema: bool = True) -> None:
        """Opens the database and applies the pending migrations (`migrate_schema=False`: refuses with
        `MigrationError` while the schema is behind, as `[database] migrate_on_start = false` asks)."""
        self.engine: Engine = open_engine(url_or_path, pool_size=1)
        try:
            migrate_or_refuse(self.engine, COMPONENT, MIGRATIONS, migrate_schema=migrate_schema)
        except BaseException:
            self.engine.dispose()
            raise

    def load(self) -> dict[str, int]:
        """Device id → newest committed reading time (ns)."""
        with read_connection(self.engine) as conn:
            return {str(d): int(t) for d, t in conn.execute(select(leader_progress.c.device_id,
                                                                      leader_progress.c.time_ns))}

    def advance(self, readings: Iterable[Reading]) -> None:
        """Raise each device's watermark to its newest reading among `readings` (one transaction)."""
        newest: dict[str, int] = {}
        for r in readings:
            if r.time_ns > newest.get(r.device_id, -1):
                newest[r.device_id] = r.time_ns
        if not newest:
            return
        insert = postgresql.insert if is_postgres(self.engine) else sqlite.insert
        stmt = insert(leader_progress).values([{"device_id": d, "time_ns": t} for d, t in sorted(newest.items())])
        stmt = stmt.on_conflict_do_update(
            index_elements=[leader_progress.c.device_id],
            set_={"time_ns": case((stmt.excluded.time_ns > leader_progress.c.time_ns, stmt.excluded.time_ns),
                                  else_=leader_progress.c.time_ns)})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def close(self) -> None:
        self.engine.dispose()
