"""InfluxClient against a real influxd, and how InfluxDB's answers become storage errors."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from core.timing import parse_retry_after
from sim.daemons import Daemon, free_port
from storage.errors import (
    PartialWriteError,
    PayloadTooLarge,
    PermanentWriteError,
    QueryError,
    RequestRefused,
    RetryableWriteError,
    TransientError,
)
from storage.influx import InfluxClient, quote_ident, write_error


@pytest.mark.asyncio
async def test_write_then_query_returns_the_points(influxd: Daemon, influx_db: str) -> None:
    async with InfluxClient(influxd.url, influx_db) as client:
        await client.write(b"noise,device_id=n1 laeq_db=55.5 1000\nnoise,device_id=n1 laeq_db=56.5 2000\n")
        results = await client.query("SELECT laeq_db FROM noise; SELECT count(laeq_db) FROM noise")
    assert results[0]["series"][0]["values"] == [[1000, 55.5], [2000, 56.5]]
    assert results[1]["series"][0]["values"] == [[0, 2]]


@pytest.mark.asyncio
async def test_ensure_database_creates_it_and_is_idempotent(influxd: Daemon) -> None:
    name = 'storage "quoted" db'
    httpx.post(f"{influxd.url}/query", params={"q": f"DROP DATABASE {quote_ident(name)}"}).raise_for_status()
    async with InfluxClient(influxd.url, name) as client:
        assert await client.ensure_database() is True
        assert await client.ensure_database() is True
        await client.write(b"m x=1 1\n")
        [result] = await client.query("SHOW DATABASES")
    assert [name] in result["series"][0]["values"]


@pytest.mark.asyncio
async def test_field_type_conflict_is_a_partial_write_naming_the_field(influxd: Daemon, influx_db: str) -> None:
    async with InfluxClient(influxd.url, influx_db) as client:
        await client.write(b"noise x=1i 1\n")
        with pytest.raises(PartialWriteError) as caught:
            await client.write(b"noise x=1.5 2\nnoise y=1.0 3\nnoise x=2.5 4\n")
        [result] = await client.query("SELECT count(y) FROM noise")
    assert caught.value.dropped == 2
    assert 'input field "x" on measurement "noise" is type float, already exists as type integer' in \
        caught.value.text
    assert result["series"][0]["values"][0][1] == 1


@pytest.mark.asyncio
async def test_missing_database_is_refused_not_retried_as_data(influxd: Daemon) -> None:
    async with InfluxClient(influxd.url, "storage_no_such_db") as client:
        with pytest.raises(RequestRefused) as caught:
            await client.write(b"m x=1 1\n")
    assert caught.value.status == 404 and "database not found" in caught.value.text


@pytest.mark.asyncio
async def test_influxql_errors_raise_query_error(influxd: Daemon, influx_db: str) -> None:
    async with InfluxClient(influxd.url, influx_db) as client:
        with pytest.raises(QueryError, match="error parsing query"):
            await client.query("SELEC nothing")
        with pytest.raises(QueryError, match="database not found") as caught:
            await client.query('SELECT * FROM "storage_no_such_db".."m"')
    assert caught.value.statement_id == 0


@pytest.mark.asyncio
async def test_an_unreachable_server_is_transient(influxd: Daemon) -> None:
    async with InfluxClient(f"http://127.0.0.1:{free_port()}", "db", timeout=2) as client:
        assert await client.ping() is False
        with pytest.raises(RetryableWriteError, match="cannot reach InfluxDB"):
            await client.write(b"m x=1 1\n")
        with pytest.raises(TransientError):
            await client.query("SHOW DATABASES")
    async with InfluxClient(influxd.url, "db") as client:
        assert await client.ping() is True
        assert client.server_version and client.server_version.startswith("1.")


def test_token_and_password_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either a token"):
        InfluxClient("http://127.0.0.1:1", "db", username="u", password="p", token="t")


# ---- classification of InfluxDB's answers (1.x, 2.x and 3.x bodies) ----

def test_server_errors_and_throttling_are_retryable_with_retry_after() -> None:
    e = write_error(503, b'{"error":"engine: cache maximum memory size exceeded"}', "7")
    assert isinstance(e, RetryableWriteError) and e.retry_after == 7.0 and "cache maximum" in str(e)
    when = email.utils.formatdate(1_000_030, usegmt=True)
    e = write_error(429, b'{"code":"too many requests","message":"slow down"}', when)
    assert isinstance(e, RetryableWriteError) and "slow down" in str(e)
    assert parse_retry_after(when, now=1_000_000) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_client_errors_are_permanent_and_keep_influxdb_text() -> None:
    e = write_error(400, b'{"error":"unable to parse \'m x=\': missing field value"}')
    assert type(e) is PermanentWriteError and e.text == "unable to parse 'm x=': missing field value"
    e = write_error(413, b'{"error":"Request Entity Too Large"}')
    assert isinstance(e, PayloadTooLarge) and isinstance(e, PermanentWriteError)
    e = write_error(422, b'{"code":"unprocessable entity","message":"failure writing points to database: '
                         b'partial write: field type conflict: input field \\"x\\" on measurement \\"m\\" '
                         b'is type float, already exists as type integer dropped=3"}')
    assert isinstance(e, PartialWriteError) and e.dropped == 3
    e = write_error(400, b'{"error":"partial write of line protocol occurred","data":[{"original_line":"m x=\\"a\\"",'
                         b'"line_number":2,"error_message":"invalid column type"}]}')
    assert isinstance(e, PartialWriteError) and e.line_errors == [(2, 'm x="a"', "invalid column type")]
    e = write_error(403, b"forbidden")
    assert isinstance(e, RequestRefused) and e.text == "forbidden"
