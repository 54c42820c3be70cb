"""`InfluxClient`: the v1 HTTP API (`/write` line protocol, `/query` InfluxQL) over one httpx connection pool.

The v1 API is served natively by InfluxDB 1.x and 3.x and by 2.x's compatibility
endpoints (database/retention policy mapped to a bucket, token auth), so one client
covers all three. Every failure is raised as one of `storage.errors`.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

import httpx
import orjson
from loguru import logger

from core.secrets import redact_url
from core.timing import parse_retry_after
from storage.errors import (
    PartialWriteError,
    PayloadTooLarge,
    PermanentWriteError,
    QueryError,
    RequestRefused,
    RetryableWriteError,
    StorageError,
    TransientError,
)

_DROPPED = re.compile(r"dropped=(\d+)")
_MAX_TEXT = 4000


def _error_text(body: bytes) -> tuple[str, list[tuple[int | None, str, str]]]:
    """InfluxDB's error message from a response body (1.x `error`, 2.x `message`, 3.x `error` + `data`)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:_MAX_TEXT], []
    if not isinstance(doc, dict):
        return str(doc)[:_MAX_TEXT], []
    text = str(doc.get("error") or doc.get("message") or doc)
    data = doc.get("data")
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    line_errors = []
    for item in items:
        if isinstance(item, dict) and "original_line" in item:
            number = item.get("line_number")
            line_errors.append((number if isinstance(number, int) else None, str(item["original_line"]),
                                str(item.get("error_message", ""))))
    return text, line_errors


def write_error(status: int, body: bytes, retry_after: str | None = None) -> StorageError:
    """The storage error for a failed `/write` response."""
    text, line_errors = _error_text(body)
    if status == 429 or status == 408 or status >= 500:
        return RetryableWriteError(f"InfluxDB answered {status} to a write: {text}", status=status,
                                   retry_after=parse_retry_after(retry_after))
    if status in (401, 403, 404):
        return RequestRefused(f"InfluxDB refused the write ({status}): {text}", status=status, text=text)
    if status == 413:
        return PayloadTooLarge(f"InfluxDB refused a write as too large (413): {text}", status=status, text=text)
    if "partial write" in text or (line_errors and "partial" in text):
        match = _DROPPED.search(text)
        dropped = int(match.group(1)) if match else (len(line_errors) or None)
        return PartialWriteError(f"InfluxDB dropped points ({status}): {text}", status=status, text=text,
                                 dropped=dropped, line_errors=line_errors)
    return PermanentWriteError(f"InfluxDB refused a write ({status}): {text}", status=status, text=text,
                               line_errors=line_errors)


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _major_version(version: str | None) -> int | None:
    match = re.match(r"v?(\d+)", version or "")
    return int(match.group(1)) if match else None


class InfluxClient:
    """One InfluxDB database over the v1 HTTP API; async, one connection pool; close with `aclose()`.

    Authentication: `token` sends `Authorization: Token <token>` (2.x and 3.x); else
    `username`/`password` go as HTTP basic auth (1.x; kept out of URLs and logs).
    """

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, retention_policy: str | None = None, timeout: float = 10.0,
                 max_connections: int = 8, verify: ssl.SSLContext | bool = True) -> None:
        if token and username:
            raise ValueError("give either a token (InfluxDB 2.x/3.x) or a username and password (1.x), not both")
        if not database:
            raise ValueError("database name is empty")
        self.url = url.rstrip("/")
        self.shown_url = redact_url(self.url)
        self.database = database
        self.retention_policy = retention_policy
        self.server_version: str | None = None
        headers = {"User-Agent": "urbansense"}
        auth = None
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username:
            auth = httpx.BasicAuth(username, password or "")
        self._write_params = {"db": database, "precision": "ns"}
        self._query_params = {"db": database}
        if retention_policy:
            self._write_params["rp"] = retention_policy
            self._query_params["rp"] = retention_policy
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, auth=auth, timeout=timeout, verify=verify,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    async def __aenter__(self) -> InfluxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def write(self, body: bytes) -> None:
        """POST line protocol (ns precision). Raises a `storage.errors` error on any failure."""
        if not body:
            return
        try:
            response = await self._http.post("/write", params=self._write_params, content=body,
                                             headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.TimeoutException as exc:
            raise RetryableWriteError(f"write to {self.shown_url} timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise RetryableWriteError(f"cannot reach InfluxDB at {self.shown_url}: {exc!r}") from exc
        if response.status_code < 300:
            return
        raise write_error(response.status_code, response.content, response.headers.get("Retry-After"))

    async def query(self, q: str, epoch: str | None = "ns") -> list[dict[str, Any]]:
        """Run InfluxQL; return the statement results (each with `series` when it found any).

        Raises `QueryError` when the request or any statement failed, `TransientError` when
        InfluxDB is unreachable or overloaded, `RequestRefused` for credentials.
        """
        params = dict(self._query_params)
        if epoch:
            params["epoch"] = epoch
        try:
            response = await self._http.post("/query", params=params, data={"q": q})
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach InfluxDB at {self.shown_url}: {exc!r}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            text, _ = _error_text(response.content)
            raise TransientError(f"InfluxDB answered {status} to a query: {text}", status=status,
                                 retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status in (401, 403):
            text, _ = _error_text(response.content)
            raise RequestRefused(f"InfluxDB refused the query ({status}): {text}", status=status, text=text)
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise QueryError(f"InfluxDB answered {status} with a body that is not JSON: "
                             f"{response.text[:200]!r}") from None
        if not isinstance(doc, dict):
            raise QueryError(f"unexpected query response: {str(doc)[:200]}")
        if "error" in doc or status >= 400:
            raise QueryError(f"InfluxQL error for {q[:200]!r}: {doc.get('error') or doc.get('message') or doc}")
        results = doc.get("results", [])
        for result in results:
            if "error" in result:
                raise QueryError(f"InfluxQL error for {q[:200]!r}: {result['error']}",
                                 statement_id=result.get("statement_id"))
        return results

    async def ping(self) -> bool:
        """True when the server answers `/ping`; remembers its version (X-Influxdb-Version)."""
        try:
            response = await self._http.get("/ping")
        except httpx.HTTPError:
            return False
        self.server_version = response.headers.get("X-Influxdb-Version") or self.server_version
        return response.status_code < 300

    async def ensure_database(self) -> bool:
        """Create the database when missing; True if it now exists, False where databases are not ours to create.

        InfluxDB 1.x: `CREATE DATABASE` (a no-op when it exists). 2.x: the v1 API maps a
        database to a bucket through a DBRP mapping that an administrator creates
        (`influx bucket create`, `influx v1 dbrp create`), and InfluxQL cannot create one;
        3.x creates a database on its first write. On those two the refusal is logged and
        False returned; on 1.x (or an unknown server) a failure is raised.
        """
        try:
            await self.query(f"CREATE DATABASE {quote_ident(self.database)}", epoch=None)
            return True
        except TransientError:
            raise
        except StorageError as exc:
            await self.ping()
            major = _major_version(self.server_version)
            if major is not None and major >= 2:
                logger.info("InfluxDB {} does not create databases over InfluxQL ({}); "
                            "database {!r} must exist or be created on first write",
                            self.server_version, exc, self.database)
                return False
            raise
