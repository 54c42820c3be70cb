"""Writer and client behaviour that a healthy influxd never shows, against a small real HTTP server playing InfluxDB.

The server listens on 127.0.0.1 only, answers `/write` from a script (status, headers,
delay), and records what it accepted; it forwards nothing anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storage.influx import InfluxClient
from storage.lineprotocol import split_lines
from storage.writer import BatchWriter


@dataclass
class Answer:
    status: int = 204
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gate: threading.Event | None = None


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    received: float
    answered: float = 0.0
    status: int = 0


class FakeInflux:
    """Plays InfluxDB's /write and /ping: scripted answers first, then `rule(body)`, else 204 (accepted)."""

    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.rule: Callable[[bytes], Answer | None] | None = None
        self.requests: list[Request] = []
        self.accepted: list[bytes] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = Request(self.path, dict(self.headers), body, time.monotonic())
                with fake._lock:
                    fake.requests.append(req)
                    answer = fake.script.popleft() if fake.script else None
                if answer is None and fake.rule is not None:
                    answer = fake.rule(body)
                answer = answer or Answer()
                if answer.gate is not None:
                    answer.gate.wait(10)
                time.sleep(answer.delay)
                if answer.status < 300:
                    with fake._lock:
                        fake.accepted.extend(split_lines(body))
                req.answered, req.status = time.monotonic(), answer.status
                self.send_response(answer.status)
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def do_GET(self) -> None:
                self.send_response(204)
                self.send_header("X-Influxdb-Version", "fake")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeInflux]:
    server = FakeInflux()
    yield server
    server.close()


def lines(n: int, start: int = 0) -> list[bytes]:
    return [f"m,device_id=d{i} x={i}.5 {1000 + i}".encode() for i in range(start, start + n)]


def fast_writer(client: InfluxClient, **kw: object) -> BatchWriter:
    kw = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "flush_interval_s": 0.01, **kw}
    return BatchWriter(client, **kw)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_5xx_and_429_are_retried_honouring_retry_after_and_acked_only_after(fake: FakeInflux) -> None:
    fake.script.extend([Answer(503, b'{"error":"timeout"}'), Answer(429, b'{"error":"slow down"}',
                                                                     {"Retry-After": "1"})])
    acked: list[float] = []
    async with InfluxClient(fake.url, "db") as client:
        writer = fast_writer(client)
        await writer.add(b"m x=1 1\n", lambda: acked.append(time.monotonic()))
        await asyncio.wait_for(writer.close(), 10)
    assert [r.status for r in fake.requests] == [503, 429, 204]
    assert fake.requests[2].received - fake.requests[1].answered >= 0.95
    assert len(acked) == 1 and acked[0] >= fake.requests[2].answered
    assert fake.accepted == [b"m x=1 1"]


@pytest.mark.asyncio
async def test_refused_credentials_are_retried_not_dead_lettered(fake: FakeInflux) -> None:
    fake.script.extend([Answer(401, b'{"error":"authorization failed"}')] * 2)
    rejected: list[bytes] = []
    async with InfluxClient(fake.url, "db", username="u", password="p") as client:
        writer = fast_writer(client, on_rejected=lambda b, why: rejected.append(b))
        await writer.add(b"m x=1 1\n")
        await asyncio.wait_for(writer.close(), 10)
    assert [r.status for r in fake.requests] == [401, 401, 204] and rejected == []


@pytest.mark.asyncio
async def test_413_splits_the_batch_until_it_fits_and_rejects_a_line_too_large_alone(fake: FakeInflux) -> None:
    big = b"m,device_id=huge s=\"" + b"x" * 3000 + b"\" 5000"
    fake.rule = lambda body: Answer(413, b'{"error":"Request Entity Too Large"}') \
        if body.count(b"\n") > 3 or len(body) > 2000 else None
    rejected: list[tuple[bytes, str]] = []
    acked: list[int] = []
    batch = [*lines(6), big, *lines(4, start=6)]
    async with InfluxClient(fake.url, "db") as client:
        writer = fast_writer(client, batch_size=100, on_rejected=lambda b, why: rejected.append((b, why)))
        for i, line in enumerate(batch):
            await writer.add(line + b"\n", lambda i=i: acked.append(i))
        await asyncio.wait_for(writer.close(), 10)
    assert fake.accepted == lines(10)
    assert [b for b, _ in rejected] == [big + b"\n"] and "larger than InfluxDB accepts" in rejected[0][1]
    assert acked == list(range(11))


@pytest.mark.asyncio
async def test_a_rejection_that_names_no_line_is_bisected_to_the_bad_lines(fake: FakeInflux) -> None:
    fake.rule = lambda body: Answer(400, b'{"error":"something unforeseen"}') if b"bad" in body else None
    good = lines(12)
    bad = [b"m,device_id=bad1 x=1 1", b"m,device_id=bad2 x=1 2"]
    rejected: list[tuple[bytes, str]] = []
    async with InfluxClient(fake.url, "db") as client:
        writer = fast_writer(client, on_rejected=lambda b, why: rejected.append((b, why)))
        await writer.add(b"\n".join(good[:5] + bad[:1] + good[5:9] + bad[1:] + good[9:]) + b"\n")
        await asyncio.wait_for(writer.close(), 10)
    assert sorted(fake.accepted) == sorted(good) and len(fake.accepted) == 12
    assert rejected == [(bad[0] + b"\n", "something unforeseen"), (bad[1] + b"\n", "something unforeseen")]


@pytest.mark.asyncio
async def test_a_batch_dropped_whole_is_rejected_whole_without_bisecting(fake: FakeInflux) -> None:
    fake.script.append(Answer(400, b'{"error":"partial write: points beyond retention policy dropped=5"}'))
    rejected: list[tuple[bytes, str]] = []
    async with InfluxClient(fake.url, "db") as client:
        writer = fast_writer(client, on_rejected=lambda b, why: rejected.append((b, why)))
        await writer.add(b"\n".join(lines(5)) + b"\n")
        await asyncio.wait_for(writer.close(), 10)
    assert rejected == [(b"\n".join(lines(5)) + b"\n", "partial write: points beyond retention policy dropped=5")]
    assert len(fake.requests) == 1


@pytest.mark.asyncio
async def test_influxdb3_partial_write_names_each_rejected_line(fake: FakeInflux) -> None:
    fake.script.append(Answer(400, b'{"error":"partial write of line protocol occurred","data":['
                                   b'{"original_line":"m,device_id=d1 x=1.5 1001","line_number":2,'
                                   b'"error_message":"invalid column type for column x"}]}'))
    rejected: list[bytes] = []
    async with InfluxClient(fake.url, "db", token="secret") as client:
        writer = fast_writer(client, on_rejected=lambda b, why: rejected.append(b))
        await writer.add(b"\n".join(lines(3)) + b"\n")
        await asyncio.wait_for(writer.close(), 10)
    assert rejected == [b"m,device_id=d1 x=1.5 1001\n"]
    assert len(fake.requests) == 1 and writer.stats.points_written == 2
    assert fake.requests[0].headers["Authorization"] == "Token secret"


@pytest.mark.asyncio
async def test_acks_run_in_order_even_when_a_later_batch_lands_first(fake: FakeInflux) -> None:
    first, second = lines(2), lines(2, start=2)
    fake.rule = lambda body: Answer(delay=0.5) if first[0] in body else None
    acked: list[int] = []
    async with InfluxClient(fake.url, "db") as client:
        writer = fast_writer(client, batch_size=2, flush_interval_s=60, max_batches_in_flight=2)
        for i, line in enumerate(first + second):
            await writer.add(line, lambda i=i: acked.append(i))
        await wait_for_requests(fake, 2)
        slow, quick = sorted(fake.requests, key=lambda r: first[0] not in r.body)
        while not quick.answered:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert not slow.answered and acked == []
        await asyncio.wait_for(writer.close(), 10)
    assert acked == [0, 1, 2, 3]


@pytest.mark.asyncio
async def test_add_waits_while_max_batches_are_in_flight(fake: FakeInflux) -> None:
    gate = threading.Event()
    fake.script.append(Answer(gate=gate))
    async with InfluxClient(fake.url, "db") as client:
        writer = fast_writer(client, batch_size=1, max_batches_in_flight=1)
        await writer.add(lines(1)[0])
        second = asyncio.create_task(writer.add(lines(1, start=1)[0]))
        await asyncio.sleep(0.3)
        assert not second.done()
        gate.set()
        await asyncio.wait_for(second, 10)
        await asyncio.wait_for(writer.close(), 10)
    assert fake.accepted == lines(2)


class ListSpool:
    """A spool that keeps bodies in memory and never gives them back (the disk spool has its own tests)."""

    empty = True

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def has_room(self, n: int) -> bool:
        return True

    async def append(self, body: bytes) -> None:
        self.bodies.append(body)

    async def read(self, max_bytes: int) -> None:
        return None

    async def commit(self, chunk: object) -> None:
        raise AssertionError("nothing was read")


@pytest.mark.asyncio
async def test_with_a_spool_an_outage_hands_the_batch_to_it_and_acks(fake: FakeInflux) -> None:
    fake.rule = lambda body: Answer(503, b'{"error":"down"}')
    spool = ListSpool()
    acked: list[int] = []
    async with InfluxClient(fake.url, "db") as client:
        writer = fast_writer(client, spool=spool, spool_after_failures=2)
        await writer.add(b"m x=1 1\n", lambda: acked.append(1))
        await asyncio.wait_for(writer.close(), 10)
    assert spool.bodies == [b"m x=1 1\n"] and acked == [1] and len(fake.requests) == 2
    assert writer.stats.points_spooled == 1 and writer.stats.points_written == 0


@pytest.mark.asyncio
async def test_v1_credentials_go_as_basic_auth_not_in_the_url(fake: FakeInflux) -> None:
    async with InfluxClient(fake.url, "my db", username="writer", password="pa:ss", retention_policy="autogen") \
            as client:
        await client.write(b"m x=1 1\n")
    [req] = fake.requests
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"writer:pa:ss").decode()
    assert req.path == "/write?db=my+db&precision=ns&rp=autogen"


async def wait_for_requests(fake: FakeInflux, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(fake.requests) < n:
        assert time.monotonic() < deadline, f"only {len(fake.requests)} requests arrived"
        await asyncio.sleep(0.01)
