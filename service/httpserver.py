"""The loopback HTTP endpoint: Prometheus `/metrics`, `/healthz` (alive) and `/readyz` (ready).

Each connection is served in its own thread with a socket timeout, so idle or slow clients
(an orchestrator's probes, a stuck scraper) never keep `/healthz` from answering.
"""

from __future__ import annotations

import hmac
import socketserver
import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class ListenError(RuntimeError):
    """The metrics endpoint cannot listen (port taken, address not here); the text names the address and setting."""


class _QuietHandler(WSGIRequestHandler):
    timeout = 10.0  # seconds a connection may stay idle or half-sent (set per server below)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per connection; threads never keep the process alive."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128


class MetricsServer:
    """Serves in a daemon thread; `port` 0 picks a free one (read `.port` after `start`)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 ready: Callable[[], tuple[bool, str]], *, timeout_s: float = 10.0, token: str = "") -> None:
        self._metrics = make_wsgi_app(registry)
        self._ready = ready
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._bearer = f"Bearer {token}".encode() if token else b""
        self._server: WSGIServer | None = None

    def _app(self, environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            ok, why = self._ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [why.encode() + b"\n"]
        if self._bearer and not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", "").encode(), self._bearer):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"a bearer token is required (metrics.token)\n"]
        return self._metrics(environ, start_response)

    def start(self) -> None:
        handler = type("_Handler", (_QuietHandler,), {"timeout": self.timeout_s})
        try:
            self._server = make_server(self.host, self.port, self._app, server_class=_ThreadingServer,
                                       handler_class=handler)
        except OSError as exc:
            raise ListenError(f"metrics: cannot listen on {self.host}:{self.port}: {exc.strerror or exc} (set "
                              "[metrics] port or run --metrics-port; with run --workers N, worker k listens on "
                              "that port + k)") from None
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
