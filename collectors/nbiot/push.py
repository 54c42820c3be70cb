"""The HTTP receiver for operator platform pushes (aiohttp): one route per platform, never open.

    POST /push/ctwing/<token>   CTWing/AEP subscription push (token compared in constant time)
    GET  /push/onenet           OneNET URL verification: echoes `msg` when `signature` is right
    POST /push/onenet           OneNET data push, signature = Base64(MD5(token + nonce + msg))

A route whose token is not configured answers 404. A wrong token or signature gets 401, a
body over `max_body_bytes` 413, both counted. A push is answered 200 only after its readings
are durably handed off (written to InfluxDB or dead-lettered: up to `influxdb.flush_interval_s`,
0.2 s by default — well inside the platforms' timeouts); decoding happens in the pipeline.
A signed but malformed body is dead-lettered (with the parser's reason) and answered 400.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from loguru import logger

from collectors.nbiot.handoff import ack_future
from collectors.nbiot.platforms import onenet_parts, onenet_signature_ok, parse_ctwing, parse_onenet_msg
from collectors.nbiot.replay import ReplayGuard, message_times_ms, onenet_times_ms
from core.uplink import EnvelopeError, Incoming, Sink, Uplink

HANDOFF_TIMEOUT_S = 30.0


@dataclass
class PushStats:
    """Readings accepted by platform; pushes refused by (platform, reason)."""

    accepted: dict[str, int] = field(default_factory=dict)
    refused: dict[tuple[str, str], int] = field(default_factory=dict)


def _from(remote: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in n for n in networks)


def _ctwing_times(body: bytes) -> list[int]:
    try:
        return message_times_ms(orjson.loads(body), "timestamp")
    except orjson.JSONDecodeError:
        return []


def _topic(request: web.Request) -> str:
    """Where a push came in, as its route pattern: the CTWing path token is never stored or logged."""
    return f"http:{request.match_info.route.resource.canonical}" if request.match_info.route.resource else "http:"


class PushReceiver:
    def __init__(self, host: str, port: int, *, ctwing_token: str, onenet_token: str, max_body_bytes: int,
                 nonce_window_s: float = 86400.0, max_push_age_s: float = 0.0,
                 ctwing_sources: Iterable[str] = (), tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, port
        self.ctwing_token, self.onenet_token = ctwing_token, onenet_token
        self.max_body_bytes = max_body_bytes
        self.tls = tls
        self.nonces = ReplayGuard(nonce_window_s)
        self.ages = ReplayGuard(max_push_age_s) if max_push_age_s > 0 else None
        self.ctwing_sources = [ipaddress.ip_network(s, strict=False) for s in ctwing_sources]
        self.stats = PushStats()
        self._runner: web.AppRunner | None = None
        self._sink: Sink | None = None

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post("/push/ctwing/{token}", self._ctwing)
        app.router.add_get("/push/onenet", self._onenet_verify)
        app.router.add_post("/push/onenet", self._onenet)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls).start()
        if self.tls is None and not ipaddress.ip_address(self.host if self.host != "localhost" else "127.0.0.1"
                                                         ).is_loopback:
            logger.warning("push receiver on {}:{} without TLS: tokens and readings cross the network in clear; "
                           "set nbiot.push_cert_file/push_key_file or put a TLS reverse proxy in front",
                           self.host, self.port)
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def running(self) -> bool:
        return self._runner is not None

    def _refuse(self, platform: str, reason: str, status: int, text: str) -> web.Response:
        key = (platform, reason)
        self.stats.refused[key] = self.stats.refused.get(key, 0) + 1
        return web.Response(status=status, text=text + "\n")

    async def _body(self, request: web.Request, platform: str) -> bytes | web.Response:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(platform, "too_large", 413, f"body over {self.max_body_bytes} bytes")

    async def _ctwing(self, request: web.Request) -> web.Response:
        if not self.ctwing_token:
            return web.Response(status=404, text="CTWing push is not configured\n")
        if not hmac.compare_digest(request.match_info["token"].encode(), self.ctwing_token.encode()):
            return self._refuse("ctwing", "bad_token", 401, "wrong path token")
        if self.ctwing_sources and not _from(request.remote, self.ctwing_sources):
            return self._refuse("ctwing", "source_not_allowed", 403, f"{request.remote} may not push")
        body = await self._body(request, "ctwing")
        if isinstance(body, web.Response):
            return body
        if self.ages is not None:
            stale = self.ages.stale(_ctwing_times(body))
            if stale:
                return self._refuse("ctwing", "stale", 403, stale)
        received_ns = time.time_ns()
        try:
            uplinks = parse_ctwing(body, received_ns)
        except EnvelopeError as exc:
            return await self._dead_letter("ctwing", request, body, received_ns, exc)
        return await self._hand_off("ctwing", request, body, uplinks, received_ns)

    async def _onenet_verify(self, request: web.Request) -> web.Response:
        if not self.onenet_token:
            return web.Response(status=404, text="OneNET push is not configured\n")
        q = request.query
        msg, nonce, sig = q.get("msg", ""), q.get("nonce", ""), q.get("signature", "")
        if not msg or not onenet_signature_ok(self.onenet_token, nonce, msg, sig):
            return self._refuse("onenet", "bad_signature", 401, "wrong signature")
        return web.Response(text=msg)

    async def _onenet(self, request: web.Request) -> web.Response:
        if not self.onenet_token:
            return web.Response(status=404, text="OneNET push is not configured\n")
        body = await self._body(request, "onenet")
        if isinstance(body, web.Response):
            return body
        received_ns = time.time_ns()
        try:
            msg, nonce, sig = onenet_parts(body)
        except EnvelopeError as exc:
            return self._refuse("onenet", exc.reason, 400, f"{exc.reason}: {exc.detail}")
        if not onenet_signature_ok(self.onenet_token, nonce, msg, sig):
            return self._refuse("onenet", "bad_signature", 401, "wrong signature")
        if self.ages is not None:
            stale = self.ages.stale(onenet_times_ms(msg))
            if stale:
                return self._refuse("onenet", "stale", 403, stale)
        claim = f"{nonce}\x1f{sig}"
        if not self.nonces.claim(claim):
            return self._refuse("onenet", "replayed", 409, "this nonce and signature were already received")
        try:
            uplinks = parse_onenet_msg(msg, received_ns)
        except EnvelopeError as exc:
            return await self._dead_letter("onenet", request, body, received_ns, exc)
        response = await self._hand_off("onenet", request, body, uplinks, received_ns)
        if response.status != 200:
            self.nonces.release(claim)  # not stored: the platform may push it again
        return response

    async def _dead_letter(self, platform: str, request: web.Request, body: bytes, received_ns: int,
                           exc: EnvelopeError) -> web.Response:
        """Hand the raw body with its `Rejected` to the pipeline, which dead-letters it under that reason."""
        assert self._sink is not None
        fut, ack = ack_future(asyncio.get_running_loop())
        if await self._sink.put_async(Incoming(platform, _topic(request), body, received_ns, ack=ack,
                                               rejected=exc)):
            await asyncio.wait_for(fut, HANDOFF_TIMEOUT_S)
        return self._refuse(platform, exc.reason, 400, f"{exc.reason}: {exc.detail}")

    async def _hand_off(self, platform: str, request: web.Request, body: bytes, uplinks: list[Uplink],
                        received_ns: int) -> web.Response:
        assert self._sink is not None
        loop = asyncio.get_running_loop()
        futures = []
        for up in uplinks:
            fut, ack = ack_future(loop)
            raw = body if len(uplinks) == 1 else up.payload or orjson.dumps(up.decoded)
            ok = await self._sink.put_async(Incoming(platform, _topic(request), raw, received_ns, ack=ack,
                                                     uplink=up))
            if not ok:
                return web.Response(status=503, text="service is stopping\n")
            futures.append(fut)
        try:
            await asyncio.wait_for(asyncio.gather(*futures), HANDOFF_TIMEOUT_S)
        except TimeoutError:
            return web.Response(status=503, text="storage did not confirm in time; push again\n")
        self.stats.accepted[platform] = self.stats.accepted.get(platform, 0) + len(uplinks)
        return web.json_response({"code": 0, "msg": "ok", "readings": len(uplinks)})
