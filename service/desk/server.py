"""The desk console's HTTP server (aiohttp): login, the page, its live event stream and its actions.

Routes: `GET /login`, `POST /login`, `POST /logout`, `GET /` (the page), `GET /api/state` (one
snapshot), `GET /events` (server-sent events: a `state` event with the full snapshot at connect and
on every change), `POST /api/alerts/{ref}/ack` and `/silence` (JSON `{comment, minutes}`, header
`X-CSRF-Token`), `/static/…`. Everything but the login page and static files needs a session;
actions also need the session's CSRF token and a same-origin request. Logins, failed logins,
lockouts, acks and silences are written to the audit trail with the user's name. After
`[desk] login_max_failures` failed logins for a user name (or `login_max_failures_per_address` from
one address) within `login_window_s`, `POST /login` answers 429 with Retry-After for `login_lockout_s`
without checking the password (`service/desk/limits.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiohttp import web
from loguru import logger

from alerts.errors import AlertsError
from alerts.runtime import AlertsRuntime
from core.controls import bad_character
from core.device import Device
from core.transition import AlertTransition, Severity
from rules.model import TrendNow
from service.config import DeskConfig
from service.desk.auth import Session, Sessions, Users
from service.desk.limits import Lockout, LoginLimiter
from service.desk.state import FLOOD_KIND, DeskState
from service.metrics import Metrics

T = TypeVar("T")

STATIC = Path(__file__).with_name("static")
COOKIE = "desk_session"
HEARTBEAT_S = 15.0
ROUTINE_EVERY_S = 0.25
"""Routine changes (a warning on a bin, a delivery's outcome) reach the page at most this often: each push
is a snapshot of every active alert, and a night of noise alerts makes one cost milliseconds of the event
loop that carries the flood alerts. A flood gauge's or any critical alert's change is pushed at once."""
MAX_COMMENT = 500
CSP = web.AppKey("csp", str)


class DeskServer:
    """`await start()` inside the service's event loop; `changed()` after anything the page shows moved."""

    def __init__(self, cfg: DeskConfig, alerts: AlertsRuntime, devices: Callable[[], dict[str, Device]], *,
                 timezone: str = "Asia/Shanghai", tls: ssl.SSLContext | None = None,
                 metrics: Metrics | None = None, trend: Callable[[str, str], TrendNow | None] | None = None,
                 watch: Callable[[frozenset[str]], None] | None = None, silent_factor: float = 3.0) -> None:
        """`metrics`: where login outcomes and lockouts are counted (the service's; None in a bare test).
        `trend` and `watch`: the rules engine's newest reading of a flood alert's gauge, and where to say which
        gauges those are (`reading_seen` is then to be called on each of their readings); see `DeskState`.
        `silent_factor`: a gauge without a reading for its expected interval × this is shown as data stale."""
        self.cfg = cfg
        self.metrics = metrics
        self.tls = tls
        self.alerts = alerts
        self.devices = devices
        self.timezone = timezone
        self.users = Users(cfg.users)
        self.sessions = Sessions(cfg.session_ttl_s)
        self.limiter = LoginLimiter(max_per_user=cfg.login_max_failures,
                                    max_per_address=cfg.login_max_failures_per_address,
                                    window_s=cfg.login_window_s, lockout_s=cfg.login_lockout_s)
        self.port = cfg.port
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._routine: asyncio.TimerHandle | None = None
        self._pushed_at = -ROUTINE_EVERY_S
        self._runner: web.AppRunner | None = None
        self.events_sent = 0
        self._state = DeskState(alerts.store, devices, tz=timezone, recent=cfg.recent_notifications, trend=trend,
                                watch=watch, silent_factor=silent_factor)

    # lifecycle

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024, middlewares=[_security_headers])
        app[CSP] = content_policy(self.cfg.tile_source())
        app.add_routes([
            web.get("/login", self.login_page), web.post("/login", self.login), web.post("/logout", self.logout),
            web.get("/", self.page), web.get("/api/state", self.state), web.get("/events", self.events),
            web.post("/api/alerts/{ref}/ack", self.ack), web.post("/api/alerts/{ref}/silence", self.silence),
            web.static("/static", STATIC, follow_symlinks=False),
        ])
        return app

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not len(self.users):
            logger.warning("desk console: no users in [desk.users]; nobody can log in "
                           "(add one with `urbansense desk hash-password`)")
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=self.tls)
        await site.start()
        server = site._server  # the bound socket tells the port when 0 was asked for
        if server is not None and server.sockets:  # type: ignore[union-attr]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        logger.info("desk console on {}", self.url)

    async def stop(self) -> None:
        for q in list(self._clients):
            q.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{self.cfg.host}:{self.port}/"

    # live updates

    def changed(self, urgent: bool = True) -> None:
        """Something the page shows changed: push one fresh snapshot to every open page, at the next turn
        of the event loop when `urgent`, else within `ROUTINE_EVERY_S` (changes in between are sent as
        one). Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._clients:
            return
        try:
            same = asyncio.get_running_loop() is loop
        except RuntimeError:
            same = False
        if same:
            self._schedule(urgent)
        else:
            loop.call_soon_threadsafe(self._schedule, urgent)

    def reading_seen(self, device_id: str) -> None:
        """A flood gauge with an active alert reported: its row's depth, rise rate and ETA move (a routine push)."""
        self.changed(urgent=False)

    def transitions_stored(self, transitions: Iterable[AlertTransition]) -> None:
        """Alert transitions were committed: urgent when one is critical or on a flood gauge."""
        devices = self.devices()
        self.changed(any(t.severity == Severity.CRITICAL or getattr(devices.get(t.device_id), "kind", "") == FLOOD_KIND
                         for t in transitions))

    def _schedule(self, urgent: bool) -> None:
        if self._scheduled:
            return
        loop = asyncio.get_running_loop()
        wait = self._pushed_at + ROUTINE_EVERY_S - loop.time()
        if urgent or wait <= 0:
            self._scheduled = True
            loop.call_soon(self._broadcast)
        elif self._routine is None:
            self._routine = loop.call_later(wait, self._broadcast)

    def _broadcast(self) -> None:
        self._scheduled = False
        if self._routine is not None:
            self._routine.cancel()
            self._routine = None
        if not self._clients:
            return
        self._pushed_at = asyncio.get_running_loop().time()
        try:
            data = self._event_bytes("state", self._state.snapshot_json())
        except Exception:  # a failed read must not end the stream; the next change tries again
            logger.exception("desk console: snapshot failed")
            return
        for q in self._clients:
            q.put_nowait(data)

    @staticmethod
    def _event_bytes(name: str, data: bytes) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"

    # sessions

    def _session(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _require(self, request: web.Request) -> Session:
        session = self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text="login required", content_type="text/plain")
        return session

    def _require_action(self, request: web.Request) -> Session:
        """A logged-in user, the session's CSRF token, and a request from our own page."""
        session = self._require(request)
        token = request.headers.get("X-CSRF-Token", "")
        if not token or token != session.csrf:
            raise web.HTTPForbidden(text="missing or wrong CSRF token", content_type="text/plain")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden(text="cross-origin request refused", content_type="text/plain")
        return session

    async def _commit(self, fn: Callable[..., T], *args: Any) -> T:
        """A write to the alert store in its commit thread: the fsync does not hold the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.alerts.committer, fn, *args)

    async def _audit(self, user: str, action: str, target: str = "", detail: str = "") -> None:
        await self._commit(self.alerts.store.add_audit, time.time_ns(), user, action, target, detail)

    # handlers

    async def login_page(self, request: web.Request) -> web.Response:
        return _login_html()

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        user = str(form.get("user", ""))[:100]
        password = str(form.get("password", ""))[:1000]
        address = self._client_address(request)
        lockout, started = self.limiter.attempt(user, address)
        if lockout is not None:
            self._count_login("refused")
            if started:  # a burst of guesses, more than the limit at once
                await self._lockout_started(lockout, user, address, burst=True)
            return _refused_html(lockout)
        ok = bool(user) and await asyncio.to_thread(self.users.verify, user, password)
        if not ok:
            self._count_login("failed")
            await self._audit(user or "?", "login_failed", detail=f"from {address}")
            logger.warning("desk console: failed login for {!r} from {}", user, address)
            if (lockout := self.limiter.failed(user, address)) is not None:
                await self._lockout_started(lockout, user, address)
                return _refused_html(lockout)
            return _login_html("用户名或密码错误 (wrong user name or password)", status=401)
        self.limiter.succeeded(user, address)
        self._count_login("ok")
        token, _ = self.sessions.create(user)
        await self._audit(user, "login", detail=f"from {address}")
        logger.info("desk console: {} logged in", user)
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", secure=self.tls is not None,
                            max_age=int(self.cfg.session_ttl_s))
        raise response

    def _client_address(self, request: web.Request) -> str:
        """The connection's address; behind our own reverse proxy (`trust_forwarded_for`, a loopback peer) the
        address that proxy put last in X-Forwarded-For (earlier entries are the client's to forge)."""
        peer = request.remote or "?"
        if self.cfg.trust_forwarded_for and peer in ("127.0.0.1", "::1"):
            forwarded = request.headers.getall("X-Forwarded-For", [])
            last = forwarded[-1].split(",")[-1].strip() if forwarded else ""
            if last:
                return last[:64]
        return peer

    def _count_login(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.desk_logins.labels(outcome=outcome).inc()

    async def _lockout_started(self, lockout: Lockout, user: str, address: str, *, burst: bool = False) -> None:
        """Logged, counted and audited once per lockout; the tries it refuses are only counted."""
        cfg = self.cfg
        limit = cfg.login_max_failures if lockout.scope == "user" else cfg.login_max_failures_per_address
        what = f"more than {limit} login attempts" if burst else f"{limit} failed logins"
        why = (f"{what} for {lockout.scope} {lockout.key!r} within {cfg.login_window_s:g} s: "
               f"refused for {cfg.login_lockout_s:g} s")
        logger.warning("desk console: {} (last try: user {!r} from {})", why, user, address)
        if self.metrics is not None:
            self.metrics.desk_lockouts.labels(scope=lockout.scope).inc()
        await self._audit(user or "?", "login_locked", f"{lockout.scope} {lockout.key}", why)

    async def logout(self, request: web.Request) -> web.Response:
        session = self._require_action(request)
        self.sessions.end(request.cookies.get(COOKIE))
        await self._audit(session.user, "logout")
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def page(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is None:
            raise web.HTTPSeeOther("/login")
        return web.FileResponse(STATIC / "desk.html", headers={"Cache-Control": "no-store"})

    async def state(self, request: web.Request) -> web.Response:
        session = self._require(request)
        body = {**orjson.loads(self._state.snapshot_json()), "user": session.user, "csrf": session.csrf,
                "timezone": self.timezone,
                "tiles": {"url": self.cfg.tile_url, "attribution": self.cfg.tile_attribution}}
        return web.Response(body=orjson.dumps(body), content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        self._require(request)
        token = request.cookies.get(COOKIE)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._clients.add(queue)
        try:
            await response.write(self._event_bytes("state", self._state.snapshot_json()))
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    data = b": keep-alive\n\n"
                if data is None or self.sessions.get(token) is None:
                    break  # service stopping, or the session expired: the page goes back to the login
                await response.write(data)
                self.events_sent += 1
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _action_body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json(loads=orjson.loads)
        except (ValueError, orjson.JSONDecodeError):
            raise web.HTTPBadRequest(text="expected a JSON body", content_type="text/plain") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="expected a JSON object", content_type="text/plain")
        comment = str(data.get("comment", ""))
        bad = bad_character(comment, allow="\n")
        if bad:
            raise web.HTTPBadRequest(text=f"comment holds {bad}: type plain text (line breaks are fine)",
                                     content_type="text/plain")
        comment = comment.strip()
        if len(comment) > MAX_COMMENT:
            raise web.HTTPBadRequest(text=f"comment longer than {MAX_COMMENT} characters", content_type="text/plain")
        data["comment"] = comment
        return data

    async def ack(self, request: web.Request) -> web.Response:
        session = self._require_action(request)
        data = await self._action_body(request)
        ref = request.match_info["ref"]
        try:
            a = await self._commit(self.alerts.manager.ack, ref, session.user, data["comment"])
        except AlertsError as exc:
            raise web.HTTPConflict(text=str(exc), content_type="text/plain") from None
        await self._audit(session.user, "ack", f"{a.rule_id} {a.device_id} ({a.fingerprint})", data["comment"])
        self.changed()
        return web.json_response({"fingerprint": a.fingerprint, "acked_by": a.acked_by})

    async def silence(self, request: web.Request) -> web.Response:
        session = self._require_action(request)
        data = await self._action_body(request)
        if not data["comment"]:
            raise web.HTTPBadRequest(text="a silence needs a comment saying why", content_type="text/plain")
        try:
            minutes = float(data.get("minutes", 60))
        except (TypeError, ValueError):
            raise web.HTTPBadRequest(text="minutes must be a number", content_type="text/plain") from None
        longest = self.alerts.config.max_silence_s / 60
        if not 1 <= minutes <= longest:
            raise web.HTTPBadRequest(text=f"minutes must be between 1 and {longest:g} ([alerts] max_silence_s)",
                                     content_type="text/plain")
        ref = request.match_info["ref"]
        try:
            sid = await self._commit(self.alerts.manager.silence_alert, ref, session.user, data["comment"],
                                     minutes * 60)
            a = self.alerts.store.find(ref)
        except AlertsError as exc:
            raise web.HTTPConflict(text=str(exc), content_type="text/plain") from None
        await self._audit(session.user, "silence", f"{a.rule_id} {a.device_id} ({a.fingerprint})",
                    f"{minutes:g} min: {data['comment']}")
        self.changed()
        return web.json_response({"fingerprint": a.fingerprint, "silence_id": sid})


@web.middleware
async def _security_headers(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _harden(response, request.app[CSP])
        raise
    _harden(response, request.app[CSP])
    return response


def content_policy(tile_source: str) -> str:
    """The page's Content-Security-Policy: images only from the console itself, `data:` (Leaflet's own)
    and the configured map tile server, so markup slipped into a device's text can fetch nothing."""
    images = " ".join(x for x in ("'self'", "data:", tile_source) if x)
    return (f"default-src 'self'; img-src {images}; style-src 'self' 'unsafe-inline'; script-src 'self'; "
            "frame-ancestors 'none'")


def _harden(response: web.StreamResponse, csp: str) -> None:
    if response.prepared:
        return
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Content-Security-Policy", csp)


def _refused_html(lockout: Lockout) -> web.Response:
    """HTTP 429 for a locked user name or address, saying when to try again."""
    response = _login_html(f"登录失败次数过多，请 {lockout.retry_after} 秒后再试 "
                           f"(too many failed logins; try again in {lockout.retry_after} s)", status=429)
    response.headers["Retry-After"] = lockout.retry_after
    return response


def _login_html(message: str = "", status: int = 200) -> web.Response:
    note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    body = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>应急值守台 · 登录</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/desk.css"></head>
<body class="login"><form method="post" action="/login" class="login-box">
<h1>应急值守台 <small>urbansense</small></h1>{note}
<label>用户名 <input name="user" autocomplete="username" required autofocus></label>
<label>密码 <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">登录</button></form></body></html>"""
    return web.Response(text=body, content_type="text/html", status=status, headers={"Cache-Control": "no-store"})
