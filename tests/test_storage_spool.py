"""The disk spool: order, bounds, segments, crash safety (kill -9, torn records), and draining into real InfluxDB."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import captured_log, influx_query

from sim.daemons import Daemon
from storage.influx import InfluxClient
from storage.spool import DiskSpool, SpoolError
from storage.writer import BatchWriter


def drain_all(spool: DiskSpool, max_bytes: int = 1) -> list[bytes]:
    out = []
    while (chunk := spool.read_sync(max_bytes)) is not None:
        out.append(chunk.body)
        spool.commit_sync(chunk)
    return out


def bodies(n: int, start: int = 0) -> list[bytes]:
    return [f"m,k=v x={i}i {i}\n".encode() for i in range(start, start + n)]


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("*.spool"))


def test_records_come_back_in_order_across_segments_and_drained_segments_are_deleted(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, segment_bytes=100)
    for b in bodies(20):
        spool.append_sync(b)
    assert len(segments(tmp_path)) > 3
    assert spool.pending_bytes == sum(p.stat().st_size for p in segments(tmp_path))
    assert drain_all(spool) == bodies(20)
    assert spool.empty and spool.pending_bytes == 0 and segments(tmp_path) == []
    spool.append_sync(b"m x=1 1\n")
    assert drain_all(spool, 1 << 20) == [b"m x=1 1\n"]
    spool.close()


def test_read_joins_records_up_to_the_byte_limit(tmp_path: Path) -> None:
    with_spool = DiskSpool(tmp_path)
    for b in bodies(10):
        with_spool.append_sync(b)
    chunk = with_spool.read_sync(3 * len(bodies(1)[0]))
    assert chunk is not None and chunk.records == 3 and chunk.body == b"".join(bodies(3))
    with_spool.close()


def test_reopened_spool_replays_only_what_was_not_committed(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, segment_bytes=200)
    for b in bodies(12):
        spool.append_sync(b)
    for _ in range(5):
        chunk = spool.read_sync(1)
        assert chunk is not None
        spool.commit_sync(chunk)
    spool.close()
    again = DiskSpool(tmp_path, segment_bytes=200)
    assert again.oldest_age_s() >= 0
    again.append_sync(bodies(1, start=12)[0])
    assert drain_all(again) == bodies(13)[5:]
    again.close()


def test_a_torn_last_record_is_logged_and_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    for b in bodies(5):
        spool.append_sync(b)
    spool.close()
    [seg] = segments(tmp_path)
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 3)
    with captured_log("WARNING") as messages:
        again = DiskSpool(tmp_path)
    assert again.torn_records == 1
    assert any("torn record" in m for m in messages)
    again.append_sync(b"after x=1 1\n")
    assert drain_all(again) == [*bodies(4), b"after x=1 1\n"]
    again.close()


def test_a_last_record_with_a_bad_crc_is_skipped(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    for b in bodies(3):
        spool.append_sync(b)
    spool.close()
    [seg] = segments(tmp_path)
    data = bytearray(seg.read_bytes())
    data[-2] ^= 0xFF
    seg.write_bytes(bytes(data))
    again = DiskSpool(tmp_path)
    assert again.torn_records == 1 and drain_all(again) == bodies(2)
    again.close()


def test_the_bound_refuses_more_but_an_empty_spool_takes_any_body(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=100)
    big = b"m x=1 1\n" * 50
    assert spool.has_room(len(big))
    spool.append_sync(big)
    assert spool.full and not spool.has_room(1)
    drain_all(spool)
    assert spool.has_room(40)
    spool.append_sync(b"x" * 40)
    assert not spool.has_room(40) and spool.has_room(10)
    spool.close()


def test_one_process_at_a_time(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path)
    with pytest.raises(SpoolError, match="in use"):
        DiskSpool(tmp_path)
    spool.close()
    DiskSpool(tmp_path).close()


def test_every_append_that_returned_survives_kill_9(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from storage.spool import DiskSpool
        spool = DiskSpool({str(tmp_path)!r}, segment_bytes=20000)
        i = 0
        while True:
            spool.append_sync(f"m x={{i}}i {{i}}\\n".encode() * 20)
            print(i, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    assert proc.stdout is not None
    confirmed = -1
    deadline = time.monotonic() + 30
    while confirmed < 300 and time.monotonic() < deadline:
        confirmed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert confirmed >= 300
    spool = DiskSpool(tmp_path, segment_bytes=20000)
    got = drain_all(spool)
    spool.close()
    assert len(got) >= confirmed + 1
    assert got == [f"m x={i}i {i}\n".encode() * 20 for i in range(len(got))]


@pytest.mark.asyncio
async def test_live_batches_are_not_starved_while_a_big_spool_drains(tmp_path: Path, influxd: Daemon,
                                                                      influx_db: str) -> None:
    spool = DiskSpool(tmp_path / "spool")
    old = [b"".join(f"old,n={r} x={i}i {r * 10_000 + i}\n".encode() for i in range(2000)) for r in range(40)]
    for body in old:
        await spool.append(body)
    acked_while_draining = []
    async with InfluxClient(influxd.url, influx_db) as client:
        writer = BatchWriter(client, spool=spool, batch_size=100, flush_interval_s=0.01, drain_bytes=1)
        writer.start()
        for i in range(10):
            await writer.add(f"live x={i}i {i}\n".encode(),
                             lambda: acked_while_draining.append(not spool.empty))
            await asyncio.sleep(0.02)
        await writer.flush()
        while not spool.empty:
            await asyncio.sleep(0.05)
        await writer.close()
    spool.close()
    assert len(acked_while_draining) == 10 and all(acked_while_draining)
    assert influx_query(influxd, influx_db, "SELECT count(x) FROM old")[0]["values"][0][1] == 80_000
    assert influx_query(influxd, influx_db, "SELECT count(x) FROM live")[0]["values"][0][1] == 10
    assert segments(tmp_path / "spool") == []
