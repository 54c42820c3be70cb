"""Collector plug-ins: every transport that feeds the pipeline, built from config, registered here.

A collector has `name`, `async start(sink)`, `async stop()` and `ready() -> (ok, why)`;
adding a transport is one module under `collectors/` and one line in `FACTORIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from collectors.uplink import Sink, Uplink
from service.config import Config


class Collector(Protocol):
    name: str

    async def start(self, sink: Sink) -> None: ...

    async def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]: ...


def _lorawan(cfg: Config) -> Collector | None:
    from collectors.lorawan.collector import LorawanCollector

    lw, mc = cfg.lorawan, cfg.mqtt
    topics = [t for on, t in ((lw.chirpstack, lw.chirpstack_topic), (lw.tts, lw.tts_topic)) if on]
    if not topics:
        return None
    return LorawanCollector(topics=topics, host=mc.host, port=mc.port, client_id=mc.client_id,
                            username=mc.username or None, password=mc.password or None,
                            receive_maximum=mc.receive_maximum, session_expiry_s=mc.session_expiry_s,
                            keepalive=mc.keepalive_s, reconnect_min_s=mc.reconnect_min_s,
                            reconnect_max_s=mc.reconnect_max_s)


FACTORIES: dict[str, Callable[[Config], Collector | None]] = {
    "lorawan": _lorawan,
}


def build_collectors(cfg: Config) -> list[Collector]:
    """The collectors the config enables, in registration order."""
    return [c for make in FACTORIES.values() if (c := make(cfg)) is not None]


def _parse_mqtt(topic: str, payload: bytes, received_ns: int) -> Uplink:
    from collectors.lorawan import parse

    return parse(topic, payload, received_ns)


# Envelope parsers by `Incoming.source`, for collectors that leave parsing to the pipeline
# (so a bad envelope is dead-lettered like any other refused message).
PARSERS: dict[str, Callable[[str, bytes, int], Uplink]] = {
    "mqtt": _parse_mqtt,
}
