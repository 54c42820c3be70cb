"""The CoAP endpoint (aiocoap): LwM2M-style `POST coap://host/<path>` carrying one device frame.

The response is sent once the reading is durably handed off (up to `influxdb.flush_interval_s`,
0.2 s by default; aiocoap sends an empty ACK first when that takes longer than CoAP's ack
delay): 2.04 Changed with the ack frame as payload when the frame asked for one, 4.00 Bad
Request (after dead-lettering) for a malformed frame, 5.03 when the service is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiocoap
import aiocoap.resource as resource

from collectors.nbiot.frame import build_ack, parse_frame, to_uplink
from collectors.nbiot.handoff import ack_future
from core.uplink import EnvelopeError, Incoming, Sink

HANDOFF_TIMEOUT_S = 30.0


class FrameResource(resource.Resource):
    def __init__(self, sink: Sink) -> None:
        super().__init__()
        self.sink = sink
        self.received = 0
        self.malformed = 0

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.received += 1
        data = bytes(request.payload)
        received_ns = time.time_ns()
        topic = f"coap:{request.remote.hostinfo}"
        fut, ack = ack_future(asyncio.get_running_loop())
        try:
            frame = parse_frame(data)
        except EnvelopeError as exc:
            self.malformed += 1
            await self.sink.put_async(Incoming("nbiot-coap", topic, data, received_ns, ack=ack, rejected=exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, HANDOFF_TIMEOUT_S)
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=f"{exc.reason}: {exc.detail}".encode())
        up = to_uplink(frame, "nbiot-coap", received_ns)
        if not await self.sink.put_async(Incoming("nbiot-coap", topic, data, received_ns, ack=ack, uplink=up)):
            return aiocoap.Message(code=aiocoap.SERVICE_UNAVAILABLE)
        try:
            await asyncio.wait_for(fut, HANDOFF_TIMEOUT_S)
        except TimeoutError:
            return aiocoap.Message(code=aiocoap.SERVICE_UNAVAILABLE)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=build_ack(frame) if frame.ack_requested else b"")


class CoapEndpoint:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self._ctx: aiocoap.Context | None = None
        self.resource: FrameResource | None = None

    async def start(self, sink: Sink) -> None:
        site = resource.Site()
        self.resource = FrameResource(sink)
        site.add_resource([p for p in self.path.split("/") if p], self.resource)
        self._ctx = await aiocoap.Context.create_server_context(site, bind=(self.host, self.port),
                                                               transports=["udp6"])

    async def stop(self) -> None:
        if self._ctx is not None:
            await self._ctx.shutdown()
            self._ctx = None

    @property
    def running(self) -> bool:
        return self._ctx is not None
