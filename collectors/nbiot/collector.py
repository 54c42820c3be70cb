"""The NB-IoT collector: whichever of UDP, CoAP and platform push `[nbiot]` enables, as one plug-in."""

from __future__ import annotations

import asyncio
from typing import Any

from collectors.nbiot.coap import CoapEndpoint
from collectors.nbiot.push import PushReceiver
from collectors.nbiot.udp import UdpListener
from core.uplink import Sink


class NbiotCollector:
    """Devices are looked up by IMEI in the pipeline; this only frames, checks and acknowledges."""

    name = "nbiot"

    def __init__(self, *, udp: UdpListener | None, coap: CoapEndpoint | None, push: PushReceiver | None) -> None:
        self.udp, self.coap, self.push = udp, coap, push
        self._parts: list[Any] = [p for p in (udp, coap, push) if p is not None]

    async def start(self, sink: Sink) -> None:
        for part in self._parts:
            await part.start(sink)

    async def stop(self) -> None:
        for part in reversed(self._parts):
            await part.stop()

    def tasks(self) -> dict[str, asyncio.Task[None]]:
        """Long-running tasks the service supervises (the UDP pump)."""
        pump = self.udp.pump if self.udp is not None else None
        return {"udp": pump} if pump is not None else {}

    def ready(self) -> tuple[bool, str]:
        down = [type(p).__name__ for p in self._parts if not p.running]
        return (False, f"not listening: {', '.join(down)}") if down else (True, "listening")
