"""Collector plug-ins: every transport that feeds the pipeline, built from config, registered here.

A collector has `name`, `async start(sink)`, `async stop()` and `ready() -> (ok, why)`;
adding a transport is one module under `collectors/` and one line in `FACTORIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from collectors.lorawan import parse as parse_lorawan
from collectors.lorawan.collector import LorawanCollector
from collectors.nbiot.frame import parse_udp
from collectors.nbiot.platforms import parse_ctwing_dead, parse_onenet_dead
from core.device import DeviceSource
from core.secrets import reveal
from core.uplink import Sink, Uplink
from service.config import Config


class Collector(Protocol):
    name: str

    async def start(self, sink: Sink) -> None: ...

    async def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]: ...


def _lorawan(cfg: Config, devices: DeviceSource) -> Collector | None:
    lw, mc = cfg.lorawan, cfg.mqtt
    topics = [t for on, t in ((lw.chirpstack, lw.chirpstack_topic), (lw.chirpstack_v3, lw.chirpstack_v3_topic),
                              (lw.tts, lw.tts_topic)) if on]
    if not topics:
        return None
    return LorawanCollector(topics=topics, host=mc.host, port=mc.port, client_id=mc.client_id,
                            username=mc.username or None, password=reveal(mc.password) or None,
                            receive_maximum=mc.receive_maximum, session_expiry_s=mc.session_expiry_s,
                            keepalive=mc.keepalive_s, reconnect_min_s=mc.reconnect_min_s,
                            reconnect_max_s=mc.reconnect_max_s, tls=cfg.mqtt_tls())


def _nbiot(cfg: Config, devices: DeviceSource) -> Collector | None:
    # imported only when enabled: aiohttp and aiocoap take a second or more to import
    from collectors.nbiot.coap import CoapEndpoint
    from collectors.nbiot.collector import NbiotCollector
    from collectors.nbiot.push import PushReceiver
    from collectors.nbiot.udp import UdpListener

    nb = cfg.nbiot
    if not (nb.udp or nb.coap or nb.push):
        return None
    return NbiotCollector(
        udp=UdpListener(nb.udp_host, nb.udp_port, nb.udp_buffer) if nb.udp else None,
        coap=CoapEndpoint(nb.coap_host, nb.coap_port, nb.coap_path) if nb.coap else None,
        push=PushReceiver(nb.push_host, nb.push_port, ctwing_token=reveal(nb.ctwing_token),
                          onenet_token=reveal(nb.onenet_token),
                          max_body_bytes=nb.max_body_bytes, nonce_window_s=nb.nonce_window_s,
                          max_push_age_s=nb.max_push_age_s, ctwing_sources=nb.ctwing_sources) if nb.push else None)


def _modbus(cfg: Config, devices: DeviceSource) -> Collector | None:
    mb = cfg.modbus
    if not mb.enabled:
        return None
    from collectors.modbus.collector import ModbusCollector  # pymodbus is imported only when polling is on

    return ModbusCollector(devices=devices, min_interval_s=mb.min_interval_s,
                           timeout_s=mb.timeout_s, backoff_max_s=mb.backoff_max_s, rtu_ports=tuple(mb.rtu_ports),
                           reload_interval_s=cfg.registry.reload_interval_s)


FACTORIES: dict[str, Callable[[Config, DeviceSource], Collector | None]] = {
    "lorawan": _lorawan,
    "nbiot": _nbiot,
    "modbus": _modbus,
}


def build_collectors(cfg: Config, devices: DeviceSource, metrics: object = None) -> list[Collector]:
    """The collectors the config enables, in registration order; those with `bind_metrics` get `metrics`.

    `devices` is the service's registry view (devices by key), for collectors that poll.
    """
    collectors = [c for make in FACTORIES.values() if (c := make(cfg, devices)) is not None]
    for c in collectors:
        bind = getattr(c, "bind_metrics", None)
        if metrics is not None and bind is not None:
            bind(metrics)
    return collectors


# Envelope parsers by `Incoming.source`, for collectors that leave parsing to the pipeline
# (so a bad envelope is dead-lettered like any other refused message).
PARSERS: dict[str, Callable[[str, bytes, int], Uplink]] = {
    "mqtt": parse_lorawan,
    "nbiot-udp": parse_udp,
    "ctwing": parse_ctwing_dead,
    "onenet": parse_onenet_dead,
}
