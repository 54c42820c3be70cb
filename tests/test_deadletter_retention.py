"""Bounded growth: the dead-letter store keeps to its size and age bounds (oldest pruned first, counted)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

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


@pytest.mark.slow
def test_a_dead_letter_waits_for_a_restarting_postgresql_and_is_stored_once(tmp_path: Path) -> None:
    """PostgreSQL goes down (a restart, a failover): `add_many` holds the batch (its messages stay
    unacknowledged) and stores it when the server is back, instead of failing the pipeline."""
    server = start_postgres(tmp_path)
    try:
        store = DeadLetterStore(server.dsn())
        store.add(DeadLetter(1, "mqtt", "t", b"before", "bad_json", "before the restart"))
        server.stop()
        done: list[list[int]] = []
        adding = threading.Thread(target=lambda: done.append(store.add_many(_junk(0)[:3])))
        adding.start()
        time.sleep(2.0)
        assert not done, "nothing can be stored while the server is down"
        server.restart()
        adding.join(60)
        assert done and len(done[0]) == 3
        assert store.count_by_reason() == {"bad_json": 4}
        store.close()
    finally:
        server.stop()


def test_one_instance_at_a_time_prunes_the_shared_dead_letters(pg_dsn: str) -> None:
    """Ingest workers on several machines share the table: while one prunes by size (it holds the advisory
    lock), another does not prune the same oldest rows a second time."""
    pruned: list[tuple[str, int]] = []
    store = DeadLetterStore(pg_dsn, on_pruned=lambda why, n: pruned.append((why, n)))
    for n in range(0, 1000, 200):
        store.add_many(_junk(n))
    store.max_bytes = store.used_bytes()  # now 25 % over 80 % of the bound
    other = psycopg.connect(pg_dsn, autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s)", (PRUNE_LOCK,))  # another worker is pruning
    store.prune()
    assert pruned == [] and sum(store.count_by_reason().values()) == 1000
    other.close()
    store.prune()
    kept = sum(store.count_by_reason().values())
    assert pruned == [("size", 1000 - kept)] and 600 <= kept <= 750
    store.close()
