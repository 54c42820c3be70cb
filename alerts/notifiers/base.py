"""What every notifier is, and the HTTP plumbing most of them share.

A notifier has a pure `render(notice) -> dict | None` (the body, or None when this event
means nothing to the receiver) and `async send(delivery) -> str | None` that raises
`RetryableError` or `PermanentError`; what it returns is the receiver's own id for the
message (the case platform's case id), remembered for later messages of the same case.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import orjson

from alerts.errors import PermanentError, RetryableError
from alerts.model import Delivery, Notice
from core.secrets import redact_url, reveal
from core.timing import parse_retry_after

RETRYABLE_STATUS = frozenset({408, 425, 429})


class Notifier(Protocol):
    """One configured receiver (`[alerts.receivers.<name>]`), registered by type in `NOTIFIER_TYPES`.

    `render(notice)` is pure: the JSON body for this event, or None when the event means nothing
    to the receiver; it runs when the outbox row is written, so what is sent is fixed then.
    `send(delivery)` delivers one outbox row and returns the receiver's id for the message (the
    case platform's case id) or None; it raises `RetryableError` (network, timeout, 5xx, 429,
    rate limit: the outbox retries with backoff) or `PermanentError` (refused for good).
    `aclose()` releases its HTTP client or connection.
    """

    name: str
    tls: ssl.SSLContext | None

    def render(self, notice: Notice) -> dict[str, Any] | None: ...

    async def send(self, delivery: Delivery) -> str | None: ...

    async def aclose(self) -> None: ...




def check_status(response: httpx.Response, url: str) -> None:
    """2xx passes; 408/425/429 and 5xx are worth retrying; any other status is a permanent refusal."""
    status = response.status_code
    if 200 <= status < 300:
        return
    text = response.text[:300].strip()
    message = f"HTTP {status} from {redact_url(url)}" + (f": {text}" if text else "")
    if status in RETRYABLE_STATUS or status >= 500:
        raise RetryableError(message, retry_after_s=parse_retry_after(response.headers.get("retry-after")))
    raise PermanentError(message)


class HttpNotifier:
    """Base for JSON-over-HTTP notifiers: one client per event loop, `Idempotency-Key` on every request."""

    name: str

    def __init__(self, name: str, *, timeout_s: float, headers: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.headers = {k: reveal(v) for k, v in (headers or {}).items()}
        self.tls: ssl.SSLContext | None = None  # set by `build_notifiers` from the receiver's ca_file
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, trust_env=False,
                                             verify=self.tls if self.tls is not None else True)
            self._loop = loop
        return self._client

    async def post_json(self, url: str, body: Any, delivery: Delivery,
                        params: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Idempotency-Key": delivery.idempotency_key, **self.headers}
        try:
            response = await self._http().post(url, content=orjson.dumps(body), headers=headers, params=params)
        except httpx.TransportError as exc:
            raise RetryableError(f"{redact_url(url)}: {type(exc).__name__}: {exc or 'no response'}") from None
        check_status(response, url)
        return response

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(RuntimeError):
                await client.aclose()


def robot_errcode(response: httpx.Response, url: str, retryable_codes: frozenset[int]) -> None:
    """Chat robots answer HTTP 200 with `errcode`; 0 is success, rate limits are worth retrying."""
    try:
        data = response.json()
    except ValueError:
        raise RetryableError(f"{redact_url(url)}: reply is not JSON: {response.text[:200]!r}") from None
    code = data.get("errcode", 0) if isinstance(data, dict) else 0
    if code == 0:
        return
    message = f"{redact_url(url)}: errcode {code}: {data.get('errmsg', '')}"
    if code in retryable_codes:
        raise RetryableError(message)
    raise PermanentError(message)
