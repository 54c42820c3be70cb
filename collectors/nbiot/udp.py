"""The UDP listener: device frames in, ack datagrams out once the reading is durably handed off.

`datagram_received` only appends to a bounded buffer (a full buffer drops and counts: UDP
senders retry when no ack comes), so a flood never blocks the socket; a pump task feeds
the pipeline. Well-formed frames go as `Uplink`s; anything else goes as a `Rejected` with
its raw bytes, which the pipeline dead-letters under that reason.
An ack is never larger than the frame it answers (no amplification toward spoofed senders).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from collectors.nbiot.frame import build_ack, mac_refusal, parse_frame, to_uplink
from core.uplink import EnvelopeError, Incoming, Sink

RCVBUF_BYTES = 8 << 20
"""Socket receive buffer asked for, so a burst waits in the kernel while the loop is busy."""


@dataclass
class UdpStats:
    received: int = 0
    malformed: int = 0
    dropped: int = 0
    acks_sent: int = 0


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, host: str, port: int, buffer: int) -> None:
        self.host, self.port, self.buffer = host, port, buffer
        self.stats = UdpStats()
        self.mac_key_of: Callable[[str], bytes | None] = lambda imei: None
        """The device's MAC key by IMEI (the registry's, set by the service); a frame of a device with a
        key must carry its tag (`frame.py`), else it is refused as `bad_mac`."""
        self._queue: deque[tuple[bytes, tuple, int]] = deque()
        self._wake = asyncio.Event()
        self._transport: asyncio.DatagramTransport | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self, sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):  # the kernel caps this at net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        self._pump = asyncio.create_task(self._run(sink), name="nbiot-udp")

    @property
    def pump(self) -> asyncio.Task[None] | None:
        """The task that hands datagrams to the pipeline."""
        return self._pump

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.stats.received += 1
        if len(self._queue) >= self.buffer:
            self.stats.dropped += 1
            return
        self._queue.append((data, addr, time.time_ns()))
        self._wake.set()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable from a device that went back to sleep: nothing to do

    async def _run(self, sink: Sink) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            data, addr, received_ns = self._queue.popleft()
            await sink.put_async(self._incoming(data, addr, received_ns))

    def _incoming(self, data: bytes, addr: tuple, received_ns: int) -> Incoming:
        topic = f"udp:{addr[0]}:{addr[1]}"
        try:
            frame = parse_frame(data)
        except EnvelopeError as exc:
            self.stats.malformed += 1
            return Incoming("nbiot-udp", topic, data, received_ns, rejected=exc)
        key = self.mac_key_of(frame.imei)
        if key is not None or frame.mac is not None:
            refused = mac_refusal(frame, key)
            if refused is not None:
                self.stats.malformed += 1
                return Incoming("nbiot-udp", topic, data, received_ns, rejected=refused)
        ack = None
        if frame.ack_requested:
            reply = build_ack(frame)

            def ack() -> None:
                if self._transport is not None and not self._transport.is_closing():
                    self._transport.sendto(reply, addr)
                    self.stats.acks_sent += 1

        return Incoming("nbiot-udp", topic, data, received_ns, ack=ack,
                        uplink=to_uplink(frame, "nbiot-udp", received_ns))
