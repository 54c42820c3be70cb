"""Dead-letter store: what goes in comes back byte for byte, survives a reopen, and can be filtered and marked."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from storage.deadletter import DeadLetter, DeadLetterStore

RAW = bytes(range(256)) + b'{"devEui": "0011"}'


def letter(i: int, reason: str = "bad_json", **kw: object) -> DeadLetter:
    return DeadLetter(time_ns=1_000 + i, source="chirpstack", topic=f"application/1/device/{i:016x}/event/up",
                      payload=RAW + bytes([i]), reason=reason, detail=f"detail {i}", **kw)  # type: ignore[arg-type]


def test_dead_letters_round_trip_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "var" / "dead.sqlite"
    with DeadLetterStore(path) as store:
        ids = store.add_many([letter(0), letter(1, "unknown_device", device_key="0011223344556677")])
    with DeadLetterStore(path) as store:
        second = store.get(ids[1])
        assert second == DeadLetter(time_ns=1_001, source="chirpstack", topic="application/1/device/0000000000000001"
                                    "/event/up", payload=RAW + b"\x01", reason="unknown_device", detail="detail 1",
                                    device_key="0011223344556677", id=ids[1])
        assert store.get(999) is None
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_list_filters_newest_first_and_counts_by_reason(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dead.sqlite") as store:
        store.add_many([letter(i, "decode_error" if i % 3 == 0 else "bad_base64") for i in range(10)])
        assert [d.time_ns for d in store.list(limit=3)] == [1_009, 1_008, 1_007]
        assert [d.time_ns for d in store.list(reason="decode_error")] == [1_009, 1_006, 1_003, 1_000]
        assert [d.time_ns for d in store.list(reason="bad_base64", since_ns=1_005)] == [1_008, 1_007, 1_005]
        assert store.count_by_reason() == {"bad_base64": 6, "decode_error": 4}


def test_mark_replayed_sets_the_time_and_filters(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dead.sqlite") as store:
        ids = store.add_many([letter(i, "influx_rejected") for i in range(4)])
        assert store.mark_replayed([*ids[:2], 12345], when_ns=77) == 2
        assert [d.id for d in store.list(replayed=False)] == [ids[3], ids[2]]
        assert [d.replayed_ns for d in store.list(replayed=True)] == [77, 77]
        assert store.count_by_reason(replayed=False) == {"influx_rejected": 2}
        assert store.add_many([]) == [] and store.mark_replayed([]) == 0


def test_many_threads_can_add_at_once(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dead.sqlite") as store:
        threads = [threading.Thread(target=store.add_many, args=([letter(i) for i in range(t * 10, t * 10 + 10)],))
                   for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count_by_reason() == {"bad_json": 40}
