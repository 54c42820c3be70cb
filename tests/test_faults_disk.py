"""Disks that fill: the spool on a small tmpfs (ENOSPC), read-only (EROFS) and failing reads (EIO).

The spool's filesystem fills long before `spool.max_bytes`; InfluxDB is down, then flaps. Every
uplink published is stored at the end, without a restart; `/readyz` says 503 with the reason
while nothing can take data; the drain task never dies; the stop line tells the truth.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import captured_log
from servicekit import make_config, running, wait_until
from test_faults_ingest import DB, Stream, assert_exact, provision, tally

from sim.daemons import Daemon, start_influxd, start_mosquitto
from storage.health import open_spool
from storage.spool import DiskSpool, SpoolWriteError
from storage.writer import BatchWriter


def _mount_tmpfs(where: Path, options: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root (the suite runs as root in CI)")
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 192 KiB filesystem of the test's own."""
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "size=192k,mode=0755")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "size=64k,ro")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def errors() -> Iterator[list[str]]:
    with captured_log("INFO") as lines:
        yield lines


def test_spool_filesystem_full_influxdb_down_then_flapping_stores_every_uplink_without_restart(
        tmp_path: Path, small_disk: Path, errors: list[str]) -> None:
    broker = start_mosquitto(tmp_path / "broker")
    influx: list[Daemon] = [start_influxd(tmp_path / "influx")]
    try:
        httpx.post(f"{influx[0].url}/query", params={"q": f"CREATE DATABASE {DB}"}).raise_for_status()
        cfg = make_config(tmp_path, broker, influx[0], DB, influxdb={"timeout_s": 2.0},
                          mqtt={"receive_maximum": 500},
                          spool={"path": str(small_disk / "spool"), "probe_max_s": 0.5},
                          logging={"level": "INFO"})
        provision(cfg.registry_database())
        with running(cfg) as svc:
            port = svc.metrics_server.port
            stream = Stream(broker.port, rate=200, total=200 * 30).start()
            time.sleep(2)
            influx[-1].kill()
            down_at = time.monotonic()
            wait_until(lambda: svc.writer.spool_problem not in (None, "full"), 30, "the spool's disk to fill")
            r = httpx.get(f"http://127.0.0.1:{port}/readyz")
            assert r.status_code == 503, "InfluxDB down and the spool's disk full: not ready"
            assert "No space left on device" in r.text, r.text
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            time.sleep(max(0.0, down_at + 30 - time.monotonic()))  # InfluxDB down 30 s in all
            for _ in range(3):  # flapping: up a moment, down again
                influx.append(start_influxd(tmp_path / "influx", port=influx[0].port))
                time.sleep(1.5)
                influx[-1].kill()
                time.sleep(2)
            influx.append(start_influxd(tmp_path / "influx", port=influx[0].port))
            published = stream.wait()
            counts = tally("spool disk full, InfluxDB down then flapping", influx[-1], stream, published)
            wait_until(lambda: svc.spool.empty, 60, "the spool to drain")
            drainer = svc.writer._drainer
            assert drainer is not None and not drainer.done(), "the drain task died"
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        assert_exact(counts)
        assert any("No space left on device" in e and e.startswith("ERROR") for e in errors)
        stop = next(e for e in errors if "stopped:" in e)
        assert "0 bytes still in the spool, 0 lines not stored" in stop, stop
        assert list((small_disk / "spool").glob("*.spool")) == []
    finally:
        for d in influx:
            d.stop()
        broker.stop()


def test_read_only_spool_at_start_runs_without_it_and_says_so(
        tmp_path: Path, read_only_disk: Path, errors: list[str]) -> None:
    assert open_spool(read_only_disk / "spool", max_bytes=1 << 20, segment_bytes=1 << 16) is None
    message = next(e for e in errors if e.startswith("ERROR") and "cannot be used" in e)
    assert "Read-only file system" in message and "broker keeps them" in message


def test_full_disk_append_leaves_no_partial_record_and_the_spool_recovers(small_disk: Path) -> None:
    spool = DiskSpool(small_disk / "spool", max_bytes=1 << 30, segment_bytes=1 << 30, fsync=False)
    bodies = [f"m,n={i} v={i}i {i}\n".encode() * 200 for i in range(100)]
    stored = []
    with pytest.raises(SpoolWriteError, match="No space left on device"):
        for b in bodies:
            spool.append_sync(b)
            stored.append(b)
    assert not spool.has_room(10), "a spool whose disk is full refuses until space is freed"
    got = []
    while (chunk := spool.read_sync(1)) is not None:
        got.append(chunk.body)
        spool.commit_sync(chunk)
    assert got == stored, "every appended record comes back whole, no partial one"
    assert spool.has_room(10)
    spool.append_sync(bodies[0])
    assert spool.read_sync(1).body == bodies[0]
    spool.close()


@pytest.mark.asyncio
async def test_drain_survives_read_errors_and_resumes(tmp_path: Path) -> None:
    class Sink:
        def __init__(self) -> None:
            self.bodies: list[bytes] = []

        async def write(self, body: bytes) -> None:
            self.bodies.append(body)

    spool = DiskSpool(tmp_path / "spool", fsync=False)
    spool.append_sync(b"m v=1i 1\n")
    real_read, failures = spool.read_sync, [3]

    def flaky_read(max_bytes: int):  # type: ignore[no-untyped-def]
        if failures[0]:
            failures[0] -= 1
            raise OSError(errno.EIO, "Input/output error")
        return real_read(max_bytes)

    spool.read_sync = flaky_read  # type: ignore[method-assign]
    sink = Sink()
    writer = BatchWriter(sink, spool=spool, probe_max_s=0.05, backoff_initial_s=0.01)
    writer.start()
    for _ in range(200):
        if sink.bodies:
            break
        await asyncio.sleep(0.02)
    assert sink.bodies == [b"m v=1i 1\n"]
    assert writer.stats.drain_failures == 3 and not writer._drainer.done()
    await writer.close(timeout=5)
    spool.close()
