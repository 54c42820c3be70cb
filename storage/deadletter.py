"""`DeadLetterStore`: messages that could not become stored readings, kept raw for inspection and replay.

They live in a SQLite file (the embedded default) or in the shared PostgreSQL database (`[database] url`),
through one SQLAlchemy Core code path (`core.database`). The API is synchronous on purpose: each
call is a short transaction that is durable when it returns (SQLite: WAL, synchronous=FULL;
PostgreSQL: a committed transaction), so a row is stored before the caller acknowledges the
message. Callers on the event loop run it in a thread (`asyncio.to_thread`) and in small batches
(`add_many`); an async wrapper would only hide the same thread hop.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from core.database import Migration, is_postgres, migrate, migrate_or_refuse, open_engine, read_connection
from core.timing import backoff_s

COMPONENT = "deadletters"
"""The name of this store's schema in `schema_versions`."""

UNREACHABLE_RETRY_S = 600.0
"""How long `add_many` keeps retrying while PostgreSQL is unreachable (restarting, failing over) before it
raises; meanwhile the caller holds its messages unacknowledged (backpressure), so nothing is lost."""

PRUNE_LOCK = 0x75646c70
"""PostgreSQL advisory lock key held while one instance prunes the shared dead letters by size."""

ROW_OVERHEAD = 300
"""Bytes a PostgreSQL row takes beyond its texts and payload (tuple header, item pointer, numbers, three
index entries): 1,315 bytes on disk per row of 1,015 bytes of values, measured on PostgreSQL 15."""

_META = MetaData()
dead_letters = Table(
    "dead_letters", _META,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("time_ns", BigInteger, nullable=False),
    Column("source", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("device_key", Text),
    Column("replayed_ns", BigInteger),
    Index("dead_letters_reason_time", "reason", "time_ns"),
    Index("dead_letters_time", "time_ns"),
    Index("dead_letters_key_time", "device_key", "time_ns"),
    sqlite_autoincrement=True,
)
_COLUMNS = (dead_letters.c.id, dead_letters.c.time_ns, dead_letters.c.source, dead_letters.c.topic,
            dead_letters.c.payload, dead_letters.c.reason, dead_letters.c.detail, dead_letters.c.device_key,
            dead_letters.c.replayed_ns)


def _v1_today(conn: Connection) -> None:
    """The schema every release before issue 19 made (a SQLite file of then is already at this version)."""
    _META.create_all(conn, checkfirst=True)


MIGRATIONS = [Migration(1, "dead_letters with its reason/time, time and key/time indexes", _v1_today)]


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


def _text(value: str) -> str:
    """A text column's value with NUL shown as `\\x00`: PostgreSQL text cannot hold U+0000, and a dead
    letter must never be refused because the message it describes was hostile."""
    return value.replace("\x00", "\\x00") if "\x00" in value else value


class DeadLetterStore:
    """Dead letters in one SQLite file or in the shared PostgreSQL database; safe to share between threads."""

    def __init__(self, path: str | Path, *, max_bytes: int = 0, max_age_s: float = 0.0,
                 on_pruned: Callable[[str, int], None] | None = None, migrate_schema: bool = True,
                 fallback: str | Path | None = None, on_fallback: Callable[[int], None] | None = None,
                 fallback_retry_s: float = 5.0) -> None:
        """`path`: a SQLite file (or `:memory:`) or a `postgresql://` URL. `max_bytes` and `max_age_s` bound
        the store (0 = unbounded); the oldest rows go first, `on_pruned(why, n)` ("size" or "age") counts them.
        The size is the file's (WAL included) on SQLite, the stored rows' bytes on PostgreSQL. Pending
        schema migrations are applied (`migrate_schema`), else a store behind this code raises `MigrationError`.

        `fallback` (PostgreSQL only): a SQLite file that takes the dead letters at once while PostgreSQL is
        unreachable (also at start), so the pipeline never waits on it; a background thread moves them
        to PostgreSQL every `fallback_retry_s` once it answers. `on_fallback(n)` counts rows sent there."""
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.on_pruned = on_pruned
        self.pruned = {"size": 0, "age": 0}
        self._next_age_check = 0.0
        self._added_bytes = 0
        self._lock = threading.Lock()
        self.engine: Engine = open_engine(path)
        self.postgres = is_postgres(self.engine)
        self.path = None if self.postgres else Path(str(path).removeprefix("sqlite:///"))
        self.fallback_path = Path(fallback) if fallback is not None and self.postgres else None
        self.on_fallback = on_fallback
        self.fallback_retry_s = fallback_retry_s
        self._fallback: DeadLetterStore | None = None
        self._degraded = False
        self._migrated = False
        self._stop = threading.Event()
        self._mover: threading.Thread | None = None
        try:
            if not self.postgres:
                self._prepare_sqlite()
            migrate_or_refuse(self.engine, COMPONENT, MIGRATIONS, migrate_schema=migrate_schema, what="dead-letter")
            self._migrated = True
        except (OperationalError, InterfaceError) as exc:
            if self.fallback_path is None:
                self.engine.dispose()
                raise
            self._go_degraded(exc)
        except BaseException:
            self.engine.dispose()
            raise
        if self.fallback_path is not None and self.fallback_path.exists() and not self._degraded:
            self._go_degraded(None)  # rows left there by an outage before a restart: move them now

    def _prepare_sqlite(self) -> None:
        """Bound the WAL on every connection; a fresh file gives freed pages back after pruning (auto_vacuum
        must be chosen before the file turns to WAL mode, hence ahead of `open_engine`'s own hook)."""

        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            if dbapi_conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                dbapi_conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            dbapi_conn.execute("PRAGMA journal_size_limit=1048576")  # cut back to 1 MiB after checkpoints
            dbapi_conn.execute("PRAGMA wal_autocheckpoint=256")

        event.listen(self.engine, "connect", _pragmas, insert=True)
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            self._page_size = int(raw.execute("PRAGMA page_size").fetchone()[0])

    def close(self) -> None:
        self._stop.set()
        if self._mover is not None:
            self._mover.join(30)
        with self._lock:
            if self._fallback is not None:
                self._fallback.close()
            self.engine.dispose()

    def __enter__(self) -> DeadLetterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_many(self, items: Iterable[DeadLetter]) -> list[int]:
        """Store `items` in one transaction, durable on return; returns their ids."""
        rows = [{"time_ns": d.time_ns, "source": _text(d.source), "topic": _text(d.topic),
                 "payload": bytes(d.payload), "reason": _text(d.reason), "detail": _text(d.detail),
                 "device_key": None if d.device_key is None else _text(d.device_key)} for d in items]
        if not rows:
            return []
        with self._lock:
            if self._degraded:
                return self._to_fallback(items_of(rows))
            try:
                ids = self._insert(rows)
            except (OperationalError, InterfaceError) as exc:
                if self.fallback_path is None:
                    raise
                self._go_degraded(exc)
                return self._to_fallback(items_of(rows))
            self._added_bytes += sum(len(r["payload"]) + len(r["topic"]) + len(r["detail"]) + 64 for r in rows)
            if self.max_bytes and self._added_bytes >= self.max_bytes // 20:
                self._added_bytes = 0
                self._prune_size()
            if self.max_age_s and time.monotonic() >= self._next_age_check:
                self._next_age_check = time.monotonic() + 60
                self._prune_age()
        return ids

    def _insert(self, rows: list[dict[str, Any]]) -> list[int]:
        """One committed INSERT of `rows`; their ids. PostgreSQL unreachable: retried with backoff for up to
        `UNREACHABLE_RETRY_S` (a commit whose answer was lost may then store a row twice, never none)."""
        attempt, deadline = 0, time.monotonic() + UNREACHABLE_RETRY_S
        while True:
            try:
                with self.engine.begin() as conn:
                    # ids ascend in the order of the VALUES rows (row ids, a sequence), in every batch
                    ids = sorted(int(i) for i in conn.execute(dead_letters.insert().returning(dead_letters.c.id),
                                                              rows).scalars())
                if attempt:
                    logger.info("dead letters: the database is reachable again; {} held dead letter(s) stored",
                                len(rows))
                return ids
            except (OperationalError, InterfaceError) as exc:
                if not self.postgres or self.fallback_path is not None or time.monotonic() >= deadline:
                    raise
                attempt += 1
                if attempt == 1 or attempt % 30 == 0:
                    logger.warning("dead letters: the database is unreachable ({}); {} dead letter(s) held, their "
                                   "messages unacknowledged; retrying", str(exc.orig).strip().splitlines()[0][:200],
                                   len(rows))
                time.sleep(backoff_s(attempt, 0.2, 5.0))

    def _go_degraded(self, exc: Exception | None) -> None:
        """Send dead letters to the local fallback file until PostgreSQL answers (caller holds the lock or
        is the constructor); start the thread that moves them over."""
        if exc is not None and not self._degraded:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            logger.warning("dead letters: the shared database is unreachable ({}); storing them in {} until it "
                           "answers, then moving them there", reason, self.fallback_path)
        self._degraded = True
        if self._mover is None or not self._mover.is_alive():
            self._mover = threading.Thread(target=self._move_back, name="dead-letters-fallback", daemon=True)
            self._mover.start()

    def _fallback_store(self) -> DeadLetterStore:
        if self._fallback is None:
            assert self.fallback_path is not None
            self._fallback = DeadLetterStore(self.fallback_path)
        return self._fallback

    def _to_fallback(self, items: list[DeadLetter]) -> list[int]:
        ids = self._fallback_store().add_many(items)
        if self.on_fallback is not None:
            self.on_fallback(len(items))
        return ids

    def _move_back(self) -> None:
        """Every `fallback_retry_s`: once PostgreSQL answers, move the fallback's rows there (oldest first, each
        batch committed there before it is deleted here: a crash in between stores a row twice, never zero
        times), then stop sending rows to the fallback."""
        moved = 0
        while not self._stop.wait(self.fallback_retry_s if self._degraded else 0):
            try:
                if not self._migrated:
                    migrate(self.engine, COMPONENT, MIGRATIONS)
                    self._migrated = True
                while True:
                    with self._lock:
                        fallback = self._fallback_store()
                        with read_connection(fallback.engine) as conn:
                            rows = conn.execute(select(*_COLUMNS).order_by(dead_letters.c.id).limit(500)).all()
                        if not rows:
                            self._degraded = False
                            break
                        with self.engine.begin() as conn:
                            conn.execute(dead_letters.insert(), [_values(r) for r in rows])
                        with fallback.engine.begin() as conn:
                            conn.execute(delete(dead_letters).where(dead_letters.c.id.in_([r[0] for r in rows])))
                        moved += len(rows)
            except SQLAlchemyError as exc:  # unreachable again, or refused: the rows stay in the fallback file
                if not isinstance(exc, (OperationalError, InterfaceError)):
                    logger.warning("dead letters: moving the fallback's rows failed ({}); retrying",
                                   type(exc).__name__)
                continue
            logger.info("dead letters: the shared database answers again; {} moved there from {}", moved,
                        self.fallback_path)
            return

    def used_bytes(self) -> int:
        """Bytes the store holds: on SQLite the database's pages in use plus the WAL file; on PostgreSQL
        the stored rows (values plus `ROW_OVERHEAD` each; free space VACUUM keeps for reuse is not counted)."""
        with self._lock:
            return self._used_bytes()

    def _used_bytes(self) -> int:
        if self.postgres:
            c = dead_letters.c
            size = (func.octet_length(c.payload) + func.octet_length(c.topic) + func.octet_length(c.detail)
                    + func.octet_length(c.source) + func.octet_length(c.reason)
                    + func.coalesce(func.octet_length(c.device_key), 0) + ROW_OVERHEAD)
            with read_connection(self.engine) as conn:
                return int(conn.execute(select(func.coalesce(func.sum(size), 0))).scalar_one())
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            pages = raw.execute("PRAGMA page_count").fetchone()[0] - raw.execute("PRAGMA freelist_count").fetchone()[0]
        wal = Path(f"{self.path}-wal")
        return int(pages) * self._page_size + (wal.stat().st_size if wal.exists() else 0)

    def _maintain(self) -> None:
        """Give the space of deleted rows back: SQLite's free pages to the file system and its WAL cut
        back; PostgreSQL's dead rows made reusable (VACUUM), so the table's files stop growing."""
        if self.postgres:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM dead_letters")
            return
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute("PRAGMA incremental_vacuum").fetchall()
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    @contextmanager
    def _only_pruner(self) -> Iterator[bool]:
        """True when this instance may prune by size now: one process at a time (`run --workers N` share a
        SQLite file, instances on several machines the PostgreSQL table; each would delete the oldest rows
        and prune twice as much). SQLite: an flock beside the file; PostgreSQL: a session advisory lock."""
        if not self.postgres:
            if self.path is None or str(self.path) == ":memory:":
                yield True
                return
            with open(f"{self.path}-prune.lock", "a+b") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            got = bool(conn.execute(select(func.pg_try_advisory_lock(PRUNE_LOCK))).scalar_one())
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(PRUNE_LOCK)))

    def _prune_size(self) -> None:
        """Delete the oldest rows until the store is back under 70 % of `max_bytes` (caller holds the lock)."""
        if self._used_bytes() <= self.max_bytes * 0.8:
            return
        with self._only_pruner() as mine:
            if mine:
                self._prune_size_now()

    def _prune_size_now(self) -> None:
        target = self.max_bytes * 0.7
        removed = 0
        for _ in range(50):
            used = self._used_bytes()
            if used <= target:
                break
            with self.engine.begin() as conn:
                rows = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
                if rows == 0:
                    break
                n = max(1, min(rows, int(rows * (used - target) / used) + 1))
                oldest = select(dead_letters.c.id).order_by(dead_letters.c.time_ns, dead_letters.c.id).limit(n)
                removed += conn.execute(delete(dead_letters).where(dead_letters.c.id.in_(oldest))).rowcount
            self._maintain()
        self._count_pruned("size", removed)

    def _prune_age(self) -> None:
        cutoff = time.time_ns() - int(self.max_age_s * 1e9)
        with self.engine.begin() as conn:
            removed = conn.execute(delete(dead_letters).where(dead_letters.c.time_ns < cutoff)).rowcount
        if removed:
            self._maintain()
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
        c = dead_letters.c
        query = select(*_COLUMNS)
        if reason is not None:
            query = query.where(c.reason == reason)
        if since_ns is not None:
            query = query.where(c.time_ns >= since_ns)
        if replayed is not None:
            query = query.where(c.replayed_ns.is_not(None) if replayed else c.replayed_ns.is_(None))
        query = query.order_by(c.time_ns.desc(), c.id.desc()).limit(int(limit))
        with read_connection(self.engine) as conn:
            return [_row(r) for r in conn.execute(query)]

    def get(self, id: int) -> DeadLetter | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(select(*_COLUMNS).where(dead_letters.c.id == int(id))).first()
        return _row(row) if row else None

    def last_for_key(self, device_key: str) -> DeadLetter | None:
        """The newest dead letter of one device key (DevEUI, IMEI, Modbus address), or None."""
        c = dead_letters.c
        with read_connection(self.engine) as conn:
            row = conn.execute(select(*_COLUMNS).where(c.device_key == _text(device_key))
                               .order_by(c.time_ns.desc()).limit(1)).first()
        return None if row is None else _row(row)

    def mark_replayed(self, ids: Iterable[int], when_ns: int | None = None) -> int:
        """Mark dead letters as replayed (now, unless `when_ns`); returns how many rows changed."""
        stamp = time.time_ns() if when_ns is None else when_ns
        id_list = sorted({int(i) for i in ids})
        if not id_list:
            return 0
        with self._lock, self.engine.begin() as conn:
            return int(conn.execute(update(dead_letters).where(dead_letters.c.id.in_(id_list))
                                    .values(replayed_ns=stamp)).rowcount)

    def count_by_reason(self, replayed: bool | None = None) -> dict[str, int]:
        c = dead_letters.c
        query = select(c.reason, func.count()).group_by(c.reason).order_by(c.reason)
        if replayed is not None:
            query = query.where(c.replayed_ns.is_not(None) if replayed else c.replayed_ns.is_(None))
        with read_connection(self.engine) as conn:
            return {str(r[0]): int(r[1]) for r in conn.execute(query)}


def items_of(rows: list[dict[str, Any]]) -> list[DeadLetter]:
    """Row values (as `add_many` builds them) back as dead letters."""
    return [DeadLetter(**r) for r in rows]


def _values(r: Any) -> dict[str, Any]:
    """A selected row (`_COLUMNS` order) as insert values without its id."""
    return {c.name: r[i] for i, c in enumerate(_COLUMNS) if c.name != "id"}


def _row(r: Any) -> DeadLetter:
    return DeadLetter(id=r[0], time_ns=r[1], source=r[2], topic=r[3], payload=bytes(r[4]), reason=r[5],
                      detail=r[6], device_key=r[7], replayed_ns=r[8])


def copy_dead_letters(source: DeadLetterStore, target: DeadLetterStore, batch: int = 1000, *,
                      skip_present: bool = False, on_batch: Callable[[int, int], None] | None = None) -> int:
    """Copy every dead letter of `source` into `target` (e.g. a SQLite file into the shared PostgreSQL),
    oldest first, bytes and texts as stored, replay marks kept; ids are the target's own. Returns the count
    copied. `skip_present`: leave out a letter `target` already holds (same time, source, topic, reason and
    payload), so a copy run again adds only what is new. `on_batch(done, skipped)` after each batch."""
    copied, skipped, last_id = 0, 0, 0
    columns = [c for c in _COLUMNS if c.name != "id"]
    identity = (dead_letters.c.time_ns, dead_letters.c.source, dead_letters.c.topic, dead_letters.c.reason,
                dead_letters.c.payload)
    while True:
        with read_connection(source.engine) as conn:
            rows = conn.execute(select(*_COLUMNS).where(dead_letters.c.id > last_id)
                                .order_by(dead_letters.c.id).limit(batch)).all()
        if not rows:
            return copied
        last_id = int(rows[-1][0])
        if skip_present:
            times = [r[1] for r in rows]
            with read_connection(target.engine) as conn:
                present = {tuple(bytes(v) if isinstance(v, memoryview) else v for v in t) for t in conn.execute(
                    select(*identity).where(dead_letters.c.time_ns.between(min(times), max(times))))}
            fresh = [r for r in rows if (r[1], r[2], r[3], r[5], bytes(r[4])) not in present]
            skipped += len(rows) - len(fresh)
            rows = fresh
        if rows:
            with target._lock, target.engine.begin() as conn:
                conn.execute(dead_letters.insert(), [{c.name: r[i + 1] for i, c in enumerate(columns)} for r in rows])
        copied += len(rows)
        if on_batch is not None:
            on_batch(copied, skipped)
