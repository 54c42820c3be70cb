"""Bounded growth: the dead-letter store keeps to its size and age bounds (oldest pruned first, counted)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from sim.daemons import start_postgres
from storage.deadletter import PRUNE_LOCK, DeadLetter, DeadLetterStore

MB = 1 << 20


def _on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def test_60_s_of_junk_keeps_a_10_mb_store_under_10_mb(tmp_path: Path) -> None:
    """The issue's flood: 180 s of junk made 360 MB of dead letters (2 MB/s); 60 s of it is 120 MB. The same
    volume goes through a 10 MB store here, its size on disk (WAL included) checked after every batch."""
    path = tmp_path / "deadletter.sqlite"
    pruned: list[tuple[str, int]] = []
    store = DeadLetterStore(path, max_bytes=10 * MB, on_pruned=lambda why, n: pruned.append((why, n)))
    largest, sent, n = 0, 0, 0
    while sent < 120 * MB:
        batch = []
        for _ in range(200):
            junk = os.urandom(900)
            batch.append(DeadLetter(time.time_ns(), "mqtt", f"application/1/device/{n:016x}/event/up", junk,
                                    "bad_json", "unexpected character: line 1 column 1 (char 0)"))
            sent += len(junk)
            n += 1
        store.add_many(batch)
        largest = max(largest, _on_disk(path))
    newest = store.list(limit=1)[0]
    kept = sum(store.count_by_reason().values())
    store.close()
    print(f"\nDEADLETTER {sent / MB:.0f} MB of junk in {n} rows through a 10 MB store: largest on disk "
          f"{largest / MB:.2f} MB, {kept} rows kept, {n - kept} pruned")
    assert largest < 10 * MB, f"the store reached {largest / MB:.1f} MB"
    assert pruned and all(why == "size" for why, _ in pruned)
    assert sum(k for _, k in pruned) + kept == n, "every row is either kept or counted as pruned"
    assert newest.topic.endswith(f"{n - 1:016x}/event/up"), "the newest dead letters are the ones kept"


def _junk(n: int) -> list[DeadLetter]:
    return [DeadLetter(time.time_ns(), "mqtt", f"application/1/device/{i:016x}/event/up", os.urandom(900), "bad_json",
                       "unexpected character: line 1 column 1 (char 0)") for i in range(n, n + 200)]


def test_a_postgresql_store_keeps_to_its_bound_and_its_table_stops_growing(pg_dsn: str) -> None:
    """The same flood into the shared PostgreSQL database (scaled to a 512 KB store, 6 MB of junk): the rows
    kept stay under the bound after every batch, and the table's files stop growing (VACUUM after pruning
    lets new rows reuse the space of the pruned ones)."""
    pruned: list[tuple[str, int]] = []
    store = DeadLetterStore(pg_dsn, max_bytes=MB // 2, on_pruned=lambda why, n: pruned.append((why, n)))
    largest, largest_files, n = 0, 0, 0
    while n * 900 < 6 * MB:
        store.add_many(_junk(n))
        n += 200
        largest = max(largest, store.used_bytes())
        with store.engine.connect() as conn:
            largest_files = max(largest_files, conn.execute(text("SELECT pg_total_relation_size('dead_letters')"))
                                .scalar_one())
    newest = store.list(limit=1)[0]
    kept = sum(store.count_by_reason().values())
    store.close()
    print(f"\nDEADLETTER-PG {n * 900 / MB:.0f} MB of junk in {n} rows through a 512 KB store: "
          f"largest {largest / MB:.2f}"
          f" MB of rows, table files at most {largest_files / MB:.2f} MB, {kept} rows kept")
    assert largest < MB // 2, f"the store held {largest / MB:.2f} MB"
    assert largest_files < MB, f"the table's files grew to {largest_files / MB:.2f} MB"
    assert sum(k for _, k in pruned) + kept == n and all(why == "size" for why, _ in pruned)
    assert newest.topic.endswith(f"{n - 1:016x}/event/up"), "the newest dead letters are the ones kept"


def test_dead_letters_older_than_the_age_bound_are_pruned_and_counted(database: str) -> None:
    pruned: list[tuple[str, int]] = []
    store = DeadLetterStore(database, max_age_s=86400, on_pruned=lambda why, n: pruned.append((why, n)))
    old = time.time_ns() - 2 * 86400 * 10**9
    store.add_many([DeadLetter(old, "mqtt", "t", b"x", "bad_json", "") for _ in range(5)])
    store.add_many([DeadLetter(time.time_ns(), "mqtt", "t", b"y", "bad_json", "")])
    store.prune()
    assert pruned == [("age", 5)] and store.count_by_reason() == {"bad_json": 1}
    store.close()


def wait_for_rows(store: DeadLetterStore, n: int) -> dict[str, int]:
    """The store's counts once it holds `n` rows (PostgreSQL may still be starting up), or after 30 s."""
    deadline, counts = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        with contextlib.suppress(SQLAlchemyError):  # still starting, or the table not made yet
            counts = store.count_by_reason()
            if sum(counts.values()) >= n:
                break
        time.sleep(0.2)
    time.sleep(0.5)  # nothing more arrives
    return store.count_by_reason()


@pytest.mark.slow
def test_while_postgresql_is_down_dead_letters_go_to_the_local_file_at_once_and_move_back(tmp_path: Path) -> None:
    """PostgreSQL down at start and again mid-run (a restart, a failover): with a fallback file, `add_many`
    never waits on it. The rows are durable in the local SQLite file, counted, and moved to PostgreSQL
    once it answers, each exactly once. Without a fallback (the CLI) a batch waits for the server."""
    server = start_postgres(tmp_path)
    fallback = tmp_path / "deadletter.sqlite"
    sent: list[int] = []
    try:
        server.stop()
        store = DeadLetterStore(server.dsn(), fallback=fallback, on_fallback=sent.append, fallback_retry_s=0.3)
        t = time.monotonic()
        store.add_many(_junk(0)[:3])  # down at start: no exception, no wait
        assert time.monotonic() - t < 2 and sent == [3]
        with DeadLetterStore(fallback) as local:
            assert local.count_by_reason() == {"bad_json": 3}
        server.restart()
        assert wait_for_rows(store, 3) == {"bad_json": 3}
        waiting = DeadLetterStore(server.dsn())  # no fallback (as the CLI): waits for the server
        server.stop()  # down again mid-run
        t = time.monotonic()
        store.add_many(_junk(3)[:2])
        assert time.monotonic() - t < 5 and sent == [3, 2]
        done: list[list[int]] = []
        adding = threading.Thread(target=lambda: done.append(waiting.add_many(_junk(5)[:1])))
        adding.start()
        time.sleep(1.0)
        assert not done
        server.restart()
        adding.join(60)
        assert wait_for_rows(store, 6) == {"bad_json": 6} and done, "each dead letter exactly once"
        with DeadLetterStore(fallback) as local:
            assert local.count_by_reason() == {}
        store.close()
        waiting.close()
    finally:
        server.stop()


@contextmanager
def another_instance_pruning(database: str) -> Iterator[None]:
    """Hold what a pruning instance holds: the advisory lock (PostgreSQL) or the flock beside the file (SQLite)."""
    if "://" in database:
        with psycopg.connect(database, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (PRUNE_LOCK,))
            yield
        return
    with open(f"{database}-prune.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def test_one_instance_at_a_time_prunes_the_shared_dead_letters(database: str) -> None:
    """`run --workers N` share the SQLite file, ingest on several machines the PostgreSQL table: while one
    prunes by size, another does not prune the same oldest rows a second time."""
    pruned: list[tuple[str, int]] = []
    store = DeadLetterStore(database, on_pruned=lambda why, n: pruned.append((why, n)))
    for n in range(0, 1000, 200):
        store.add_many(_junk(n))
    store.max_bytes = int(store.used_bytes() / 0.95)  # over 80 % of the bound: due for pruning
    with another_instance_pruning(database):
        store.prune()
    assert pruned == [] and sum(store.count_by_reason().values()) == 1000
    store.prune()
    kept = sum(store.count_by_reason().values())
    assert pruned == [("size", 1000 - kept)] and 500 <= kept <= 800
    store.close()
