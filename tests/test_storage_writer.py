"""BatchWriter against a real influxd: batching, acks only after the write, refused points, a restart mid-write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import influx_query

from core.reading import Reading
from sim.daemons import Daemon, start_influxd
from storage.influx import InfluxClient
from storage.lineprotocol import encode_reading, split_lines
from storage.writer import BatchWriter

T0 = 1_700_000_000_000_000_000


def reading(i: int, **extra: float) -> Reading:
    tags = (("device_id", f"n{i % 3}"), ("district", "dongcheng"), ("model", "milesight-ws302"),
            ("zone_class", "1"))
    return Reading(f"n{i % 3}", "noise", T0 + i * 1_000_000_000, {"laeq_db": 50.0 + i, **extra}, tags,
                   {"battery_pct": 90.0, "fcnt": i})


def count(influxd: Daemon, db: str, q: str) -> int:
    series = influx_query(influxd, db, q)
    return series[0]["values"][0][1] if series else 0


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_full_batches_are_written_and_acked_in_order_the_rest_waits_for_flush(influxd: Daemon,
                                                                                    influx_db: str) -> None:
    acked: list[int] = []
    async with InfluxClient(influxd.url, influx_db) as client:
        writer = BatchWriter(client, batch_size=10, flush_interval_s=60)
        for i in range(25):
            await writer.add(f"m,device_id=d x={i}i {T0 + i}\n".encode(), lambda i=i: acked.append(i))
        await wait_until(lambda: len(acked) == 20)
        await asyncio.sleep(0.2)
        assert acked == list(range(20))
        assert writer.stats.batches_written == 2
        assert count(influxd, influx_db, "SELECT count(x) FROM m") == 20
        await writer.close()
    assert acked == list(range(25))
    assert count(influxd, influx_db, "SELECT count(x) FROM m") == 25
    assert writer.stats.points_written == 25


@pytest.mark.asyncio
async def test_a_partial_batch_goes_out_after_the_flush_interval(influxd: Daemon, influx_db: str) -> None:
    acked: list[int] = []
    async with InfluxClient(influxd.url, influx_db) as client:
        writer = BatchWriter(client, batch_size=5000, flush_interval_s=0.05)
        for i in range(3):
            await writer.add(encode_reading(reading(i)), lambda i=i: acked.append(i))
        await wait_until(lambda: len(acked) == 3)
        assert count(influxd, influx_db, "SELECT count(laeq_db) FROM noise") == 3
        assert count(influxd, influx_db, "SELECT count(fcnt) FROM device_health") == 3
        await writer.close()


@pytest.mark.asyncio
async def test_an_ack_without_lines_waits_for_earlier_lines(influxd: Daemon, influx_db: str) -> None:
    events: list[str] = []
    async with InfluxClient(influxd.url, influx_db) as client:
        writer = BatchWriter(client, batch_size=100, flush_interval_s=0.05)
        await writer.add(b"", lambda: events.append("first dead letter"))
        await writer.add(b"m x=1 1\n", lambda: events.append("reading"))
        await writer.add(b"", lambda: events.append("second dead letter"))
        assert events == ["first dead letter"]
        await writer.flush()
        assert events == ["first dead letter", "reading", "second dead letter"]
        await writer.close()


@pytest.mark.asyncio
async def test_field_type_conflicts_reject_only_the_conflicting_lines(influxd: Daemon, influx_db: str) -> None:
    planted = f"noise vendor_x=1i,vendor_y=1i {T0}\n".encode()  # same shard (week) as the readings
    httpx.post(f"{influxd.url}/write", params={"db": influx_db}, content=planted).raise_for_status()
    rejected: list[tuple[bytes, str]] = []
    acked: list[int] = []
    readings = [reading(i, **({"vendor_x": 2.5} if i in (3, 8) else {"vendor_y": 0.5} if i == 7 else {}))
                for i in range(10)]
    async with InfluxClient(influxd.url, influx_db) as client:
        writer = BatchWriter(client, on_rejected=lambda lines, why: rejected.append((lines, why)))
        for i, r in enumerate(readings):
            await writer.add(encode_reading(r), lambda i=i: acked.append(i))
        await writer.close()
    rejected_lines = sorted(line for lines, _ in rejected for line in split_lines(lines))
    assert rejected_lines == sorted(split_lines(encode_reading(readings[i]))[0] for i in (3, 7, 8))
    assert all("field type conflict" in why for _, why in rejected)
    assert count(influxd, influx_db, "SELECT count(laeq_db) FROM noise") == 7
    assert count(influxd, influx_db, "SELECT count(fcnt) FROM device_health") == 10
    assert acked == list(range(10))
    assert writer.stats.points_rejected == 3 and writer.stats.points_written == 17


@pytest.mark.asyncio
async def test_an_unparseable_line_is_rejected_and_the_rest_written(influxd: Daemon, influx_db: str) -> None:
    rejected: list[tuple[bytes, str]] = []
    async with InfluxClient(influxd.url, influx_db) as client:
        writer = BatchWriter(client, on_rejected=lambda lines, why: rejected.append((lines, why)))
        await writer.add(b"m x=1 1\nnot line protocol\nm x=2 2\n")
        await writer.close()
    assert [lines for lines, _ in rejected] == [b"not line protocol\n"]
    assert "unable to parse" in rejected[0][1]
    assert count(influxd, influx_db, "SELECT count(x) FROM m") == 2


@pytest.mark.integration
@pytest.mark.asyncio
async def test_influxd_restarted_mid_write_is_retried_and_acks_wait(tmp_path: Path) -> None:
    daemon = start_influxd(tmp_path)
    try:
        httpx.post(f"{daemon.url}/query", params={"q": "CREATE DATABASE outage"}).raise_for_status()
        acked: list[int] = []
        async with InfluxClient(daemon.url, "outage", timeout=2) as client:
            writer = BatchWriter(client, batch_size=50, flush_interval_s=0.05, backoff_initial_s=0.05,
                                 backoff_max_s=0.5)
            for i in range(50):
                await writer.add(encode_reading(reading(i)), lambda i=i: acked.append(i))
            await writer.flush()
            assert acked == list(range(50))
            daemon.stop()
            for i in range(50, 120):
                await writer.add(encode_reading(reading(i)), lambda i=i: acked.append(i))
            await wait_until(lambda: writer.stats.write_failures >= 2)
            await asyncio.sleep(0.3)
            assert acked == list(range(50))
            daemon = start_influxd(tmp_path, port=daemon.port)
            await asyncio.wait_for(writer.close(), 60)
        assert acked == list(range(120))
        assert count(daemon, "outage", "SELECT count(laeq_db) FROM noise") == 120
        assert count(daemon, "outage", "SELECT count(fcnt) FROM device_health") == 120
    finally:
        daemon.stop()
