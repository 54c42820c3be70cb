"""Dead-letter store: what goes in comes back byte for byte, survives a reopen, and can be filtered and marked,
in a SQLite file and in PostgreSQL (the `database` fixture runs each test on both)."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

from storage.deadletter import DeadLetter, DeadLetterStore, copy_dead_letters

RAW = bytes(range(256)) + b'{"devEui": "0011"}'


def letter(i: int, reason: str = "bad_json", **kw: object) -> DeadLetter:
    return DeadLetter(time_ns=1_000 + i, source="chirpstack", topic=f"application/1/device/{i:016x}/event/up",
                      payload=RAW + bytes([i]), reason=reason, detail=f"detail {i}", **kw)  # type: ignore[arg-type]


def test_dead_letters_round_trip_and_survive_a_reopen(database: str) -> None:
    with DeadLetterStore(database) as store:
        ids = store.add_many([letter(0), letter(1, "unknown_device", device_key="0011223344556677")])
    with DeadLetterStore(database) as store:
        second = store.get(ids[1])
        assert second == DeadLetter(time_ns=1_001, source="chirpstack", topic="application/1/device/0000000000000001"
                                    "/event/up", payload=RAW + b"\x01", reason="unknown_device", detail="detail 1",
                                    device_key="0011223344556677", id=ids[1])
        assert store.get(999) is None
    if not database.startswith("postgresql"):
        assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_hostile_text_and_every_byte_survive_exactly(database: str) -> None:
    """A message is dead-lettered because it is hostile: its bytes and the words about it must come back as
    they were (NUL, which PostgreSQL text cannot hold, is shown as \\x00 in the texts on both backends)."""
    detail = "bad JSON near '; DROP TABLE dead_letters; -- 朝阳区 \U0001f30a \u202e\u200b %_\\ \x00 end"
    with DeadLetterStore(database) as store:
        i = store.add(DeadLetter(time_ns=2**62, source="chirpstack", topic="application/1/device/朝阳/event/up",
                                 payload=RAW + "水位 🌊".encode(), reason="bad_json", detail=detail,
                                 device_key="24e1247100000201'--"))
        back = store.get(i)
        assert back is not None and back.payload == RAW + "水位 🌊".encode() and back.time_ns == 2**62
        assert back.detail == detail.replace("\x00", "\\x00") and back.topic == "application/1/device/朝阳/event/up"
        assert store.last_for_key("24e1247100000201'--") == back
        assert store.count_by_reason() == {"bad_json": 1}


def test_list_filters_newest_first_and_counts_by_reason(database: str) -> None:
    with DeadLetterStore(database) as store:
        store.add_many([letter(i, "decode_error" if i % 3 == 0 else "bad_base64") for i in range(10)])
        assert [d.time_ns for d in store.list(limit=3)] == [1_009, 1_008, 1_007]
        assert [d.time_ns for d in store.list(reason="decode_error")] == [1_009, 1_006, 1_003, 1_000]
        assert [d.time_ns for d in store.list(reason="bad_base64", since_ns=1_005)] == [1_008, 1_007, 1_005]
        assert store.count_by_reason() == {"bad_base64": 6, "decode_error": 4}


def test_mark_replayed_sets_the_time_and_filters(database: str) -> None:
    with DeadLetterStore(database) as store:
        ids = store.add_many([letter(i, "influx_rejected") for i in range(4)])
        assert store.mark_replayed([*ids[:2], 12345], when_ns=77) == 2
        assert [d.id for d in store.list(replayed=False)] == [ids[3], ids[2]]
        assert [d.replayed_ns for d in store.list(replayed=True)] == [77, 77]
        assert store.count_by_reason(replayed=False) == {"influx_rejected": 2}
        assert store.add_many([]) == [] and store.mark_replayed([]) == 0


def test_many_threads_can_add_at_once(database: str) -> None:
    with DeadLetterStore(database) as store:
        threads = [threading.Thread(target=store.add_many, args=([letter(i) for i in range(t * 10, t * 10 + 10)],))
                   for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count_by_reason() == {"bad_json": 40}


def test_dead_letters_copied_from_a_sqlite_file_into_postgresql_arrive_whole(tmp_path: Path, pg_dsn: str) -> None:
    with DeadLetterStore(tmp_path / "dead.sqlite") as source, DeadLetterStore(pg_dsn) as target:
        ids = source.add_many([letter(i, "unknown_device", device_key="24e1247100000201") for i in range(250)])
        source.mark_replayed(ids[:3], when_ns=77)
        assert copy_dead_letters(source, target, batch=100) == 250
        mine = [dataclasses.replace(d, id=None) for d in source.list(limit=500)]
        assert [dataclasses.replace(d, id=None) for d in target.list(limit=500)] == mine
        assert target.count_by_reason(replayed=True) == {"unknown_device": 3}
