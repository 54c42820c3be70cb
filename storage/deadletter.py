"""`DeadLetterStore`: messages that could not become stored readings, kept raw in SQLite for inspection and replay.

The API is synchronous on purpose: each call is a short SQLite transaction ending in an
fsync (WAL, synchronous=FULL), so a row is on disk before the caller acknowledges the
message. Callers on the event loop run it in a thread (`asyncio.to_thread`) and in small
batches (`add_many`); an async wrapper would only hide the same thread hop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    device_key TEXT,
    replayed_ns INTEGER
);
CREATE INDEX IF NOT EXISTS dead_letters_reason_time ON dead_letters (reason, time_ns);
CREATE INDEX IF NOT EXISTS dead_letters_time ON dead_letters (time_ns);
CREATE INDEX IF NOT EXISTS dead_letters_key_time ON dead_letters (device_key, time_ns);
"""

_COLUMNS = "id, time_ns, source, topic, payload, reason, detail, device_key, replayed_ns"


@dataclass(slots=True)
class DeadLetter:
    """One refused message, raw. `reason` is a short stable label (`bad_json`, `bad_base64`,
    `unknown_device`, `decode_error`, `influx_rejected`, ...); `detail` the human explanation.
    `id` and `replayed_ns` are set by the store."""

    time_ns: int
    source: str
    topic: str
    payload: bytes
    reason: str
    detail: str
    device_key: str | None = None
    id: int | None = None
    replayed_ns: int | None = None


class DeadLetterStore:
    """Dead letters in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path, *, max_bytes: int = 0, max_age_s: float = 0.0,
                 on_pruned: Callable[[str, int], None] | None = None) -> None:
        """`max_bytes` (file size, WAL included) and `max_age_s` bound the store (0 = unbounded); the oldest
        rows go first, `on_pruned(why, n)` ("size" or "age") counts them."""
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.on_pruned = on_pruned
        self.pruned = {"size": 0, "age": 0}
        self._next_age_check = 0.0
        self._added_bytes = 0
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        fresh = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if fresh:  # freed pages can then be given back to the file system after pruning
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA journal_size_limit=1048576")  # the WAL is cut back to 1 MiB after checkpoints
        self._db.execute("PRAGMA wal_autocheckpoint=256")
        self._db.executescript(_SCHEMA)
        self._page_size = self._db.execute("PRAGMA page_size").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> DeadLetterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_many(self, items: Iterable[DeadLetter]) -> list[int]:
        """Store `items` in one transaction, durable on return; returns their ids."""
        rows = [(d.time_ns, d.source, d.topic, bytes(d.payload), d.reason, d.detail, d.device_key)
                for d in items]
        if not rows:
            return []
        ids = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    cur = self._db.execute(
                        "INSERT INTO dead_letters (time_ns, source, topic, payload, reason, detail, device_key)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                    ids.append(int(cur.lastrowid or 0))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._added_bytes += sum(len(r[3]) + len(r[2]) + len(r[5]) + 64 for r in rows)
            if self.max_bytes and self._added_bytes >= self.max_bytes // 20:
                self._added_bytes = 0
                self._prune_size()
            if self.max_age_s and time.monotonic() >= self._next_age_check:
                self._next_age_check = time.monotonic() + 60
                self._prune_age()
        return ids

    def used_bytes(self) -> int:
        """Bytes the store holds on disk: the database's pages in use plus the WAL file."""
        with self._lock:
            return self._used_bytes()

    def _used_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0] - self._db.execute(
            "PRAGMA freelist_count").fetchone()[0]
        wal = Path(f"{self.path}-wal")
        return pages * self._page_size + (wal.stat().st_size if wal.exists() else 0)

    def _prune_size(self) -> None:
        """Delete the oldest rows until the store is back under 70 % of `max_bytes` (caller holds the lock)."""
        if self._used_bytes() <= self.max_bytes * 0.8:
            return
        target = self.max_bytes * 0.7
        removed = 0
        for _ in range(50):
            used = self._used_bytes()
            if used <= target:
                break
            rows = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            if rows == 0:
                break
            n = max(1, min(rows, int(rows * (used - target) / used) + 1))
            removed += self._db.execute("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters "
                                        "ORDER BY time_ns, id LIMIT ?)", (n,)).rowcount
            self._db.execute("PRAGMA incremental_vacuum")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._count_pruned("size", removed)

    def _prune_age(self) -> None:
        cutoff = time.time_ns() - int(self.max_age_s * 1e9)
        removed = self._db.execute("DELETE FROM dead_letters WHERE time_ns < ?", (cutoff,)).rowcount
        if removed:
            self._db.execute("PRAGMA incremental_vacuum")
        self._count_pruned("age", removed)

    def prune(self) -> None:
        """Apply both bounds now (also done as rows are added)."""
        with self._lock:
            if self.max_age_s:
                self._prune_age()
            if self.max_bytes:
                self._prune_size()

    def _count_pruned(self, why: str, n: int) -> None:
        if n <= 0:
            return
        self.pruned[why] += n
        if self.on_pruned is not None:
            self.on_pruned(why, n)
        logger.warning("dead letters: {} oldest pruned ({} bound of {}); {} pruned so far", n, why,
                       f"{self.max_bytes} bytes" if why == "size" else f"{self.max_age_s / 86400:g} days",
                       sum(self.pruned.values()))

    def add(self, item: DeadLetter) -> int:
        return self.add_many([item])[0]

    def list(self, limit: int = 100, reason: str | None = None, since_ns: int | None = None,
             replayed: bool | None = None) -> list[DeadLetter]:
        """Newest first; filter by reason, by time (`time_ns >= since_ns`) and by whether replayed."""
        where, args = [], []
        if reason is not None:
            where.append("reason = ?")
            args.append(reason)
        if since_ns is not None:
            where.append("time_ns >= ?")
            args.append(since_ns)
        if replayed is not None:
            where.append("replayed_ns IS NOT NULL" if replayed else "replayed_ns IS NULL")
        sql = f"SELECT {_COLUMNS} FROM dead_letters"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_ns DESC, id DESC LIMIT ?"
        args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_row(r) for r in rows]

    def get(self, id: int) -> DeadLetter | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = ?", (id,)).fetchone()
        return _row(row) if row else None

    def last_for_key(self, device_key: str) -> DeadLetter | None:
        """The newest dead letter of one device key (DevEUI, IMEI, Modbus address), or None."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE device_key = ? "
                                   "ORDER BY time_ns DESC LIMIT 1", (device_key,)).fetchone()
        return None if row is None else _row(row)

    def mark_replayed(self, ids: Iterable[int], when_ns: int | None = None) -> int:
        """Mark dead letters as replayed (now, unless `when_ns`); returns how many rows changed."""
        stamp = time.time_ns() if when_ns is None else when_ns
        id_list = [(stamp, int(i)) for i in ids]
        if not id_list:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                changed = 0
                for row in id_list:
                    changed += self._db.execute("UPDATE dead_letters SET replayed_ns = ? WHERE id = ?",
                                                row).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return changed

    def count_by_reason(self, replayed: bool | None = None) -> dict[str, int]:
        sql = "SELECT reason, COUNT(*) FROM dead_letters"
        if replayed is not None:
            sql += " WHERE replayed_ns IS NOT NULL" if replayed else " WHERE replayed_ns IS NULL"
        with self._lock:
            return dict(self._db.execute(sql + " GROUP BY reason ORDER BY reason").fetchall())


def _row(r: tuple) -> DeadLetter:
    return DeadLetter(id=r[0], time_ns=r[1], source=r[2], topic=r[3], payload=bytes(r[4]), reason=r[5],
                      detail=r[6], device_key=r[7], replayed_ns=r[8])
