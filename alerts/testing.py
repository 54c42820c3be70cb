"""A recording HTTP receiver on 127.0.0.1 that plays case platform, webhook or chat robot in tests and demos.

It answers 200 with `{"errcode": 0, "errmsg": "ok"}` (plus a `case_id` for a case `open`), or the
status it was told to fail with for a while; every request is kept, the accepted ones apart.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(slots=True, frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int
    reply: dict[str, Any]
    time: float

    @property
    def ok(self) -> bool:
        """Accepted: a 2xx status and no robot error code."""
        return 200 <= self.status < 300 and self.reply.get("errcode", 0) == 0


class RecordingServer:
    """`with RecordingServer() as srv:` … `srv.url`, `srv.accepted`, `srv.fail_for(3.0, 500)`."""

    def __init__(self, port: int = 0, *, delay_s: float = 0.0) -> None:
        self.requests: list[Request] = []
        self.delay_s = delay_s
        self._replies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._fail_status = 0
        self._fail_until = 0.0
        self._fail_count = 0
        self._case_ids = itertools.count(1)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server._handle(self)

            do_PUT = do_PATCH = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="recording-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def accepted(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.ok]

    def fail_for(self, seconds: float, status: int = 500) -> None:
        """Answer `status` to everything for the next `seconds`."""
        with self._lock:
            self._fail_status, self._fail_until = status, time.monotonic() + seconds

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer `status` to the next `count` requests."""
        with self._lock:
            self._fail_status, self._fail_count = status, count

    def reply_next(self, count: int, body: dict[str, Any]) -> None:
        """Answer 200 with `body` to the next `count` requests (e.g. a robot's errcode)."""
        with self._lock:
            self._replies.extend([body] * count)

    def _status(self) -> int:
        if self._fail_count > 0:
            self._fail_count -= 1
            return self._fail_status
        if time.monotonic() < self._fail_until:
            return self._fail_status
        return 200

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        parts = urlsplit(h.path)
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            status = self._status()
            reply: dict[str, Any] = {"errcode": 0, "errmsg": "ok"} if status == 200 else {"error": "failing"}
            if status == 200 and isinstance(data, dict) and data.get("action") == "open":
                reply["case_id"] = f"CASE-{next(self._case_ids)}"
            if status == 200 and self._replies:
                reply = self._replies.pop(0)
            self.requests.append(Request(h.command, parts.path, dict(parse_qsl(parts.query)),
                                         {k.lower(): v for k, v in h.headers.items()}, body, data, status,
                                         reply, time.time()))
        out = json.dumps(reply).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
