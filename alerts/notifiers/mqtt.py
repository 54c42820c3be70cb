"""MQTT: publishes urbansense's alert JSON to a topic (QoS 1 by default: sent means the broker has it)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from typing import Any

import aiomqtt
import orjson

from alerts.config import MqttReceiver
from alerts.errors import RetryableError
from alerts.model import Delivery, Notice
from alerts.notifiers.text import alert_json
from core.secrets import reveal


def topic_for(template: str, body: dict[str, Any]) -> str:
    """Fill the topic template; `+`, `#` and `/` inside values are replaced so one value stays one level."""
    def clean(v: Any) -> str:
        return "".join("_" if ch in "+#/" else ch for ch in str(v or "")) or "_"
    fields = {k: clean(body.get(k)) for k in ("route", "rule_id", "device_id", "severity", "fingerprint")}
    return template.format(**fields)


class MqttNotifier:
    """Keeps one connection; a broken one is dropped and the message retried on a new one."""

    def __init__(self, name: str, cfg: MqttReceiver) -> None:
        self.name = name
        self.cfg = cfg
        self._client: aiomqtt.Client | None = None
        self.tls: ssl.SSLContext | None = None  # set by `build_notifiers` when the receiver sets `tls`
        self._loop: asyncio.AbstractEventLoop | None = None

    def render(self, notice: Notice) -> dict[str, Any]:
        return alert_json(notice)

    async def _connected(self) -> aiomqtt.Client:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        c = self.cfg
        client = aiomqtt.Client(c.host, c.port, username=c.username or None, password=reveal(c.password) or None,
                                identifier=c.client_id or f"urbansense-alerts-{uuid.uuid4().hex[:8]}",
                                timeout=c.timeout_s, keepalive=30, tls_context=self.tls)
        await client.__aenter__()
        self._client, self._loop = client, loop
        return client

    async def send(self, delivery: Delivery) -> str | None:
        topic = topic_for(self.cfg.topic, delivery.body)
        try:
            client = await self._connected()
            await client.publish(topic, orjson.dumps(delivery.body), qos=self.cfg.qos, retain=self.cfg.retain,
                                 timeout=self.cfg.timeout_s)
        except (TimeoutError, aiomqtt.MqttError, OSError) as exc:
            await self.aclose()
            raise RetryableError(f"mqtt {self.cfg.host}:{self.cfg.port} {topic}: {exc}") from None
        return None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError, RuntimeError, asyncio.TimeoutError):
                await client.__aexit__(None, None, None)
