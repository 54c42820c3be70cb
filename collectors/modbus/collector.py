"""The Modbus collector: one poll loop per registry device whose key is `host:port/unit` and model a register map.

Each device is polled every `expected_interval_s` (at least `min_interval_s`) with one read of
its model's register block; the registers go to the pipeline as an `Uplink` (payload = the
registers' bytes, port = the block's start address) and the codec decodes them. A timeout,
a refused connection or a Modbus exception response counts a failure, backs the device off
(interval × 2ⁿ, capped at `backoff_max_s`), and on the first failure hands over a health
report (an `Uplink` with `reachable=False`, written as `device_health.reachable = false`);
the next good poll reports `reachable = true`. Devices on
one gateway (same host:port) share one connection, one request at a time; every device has
its own task, so a dead gateway never delays another's polls. The device list follows the
registry: the service hands over its device list (`devices()`, checked every `reload_interval_s`),
so the collector opens no registry of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from loguru import logger
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from collectors.modbus.address import ModbusAddress, parse_key
from core.device import Device, DeviceSource
from core.timepolicy import TimeCandidate
from core.timing import backoff_s
from core.uplink import Incoming, Sink, Uplink
from decoders import UnknownModel, get_model
from decoders.engines.modbus import RegisterMapCodec, to_payload


class PollError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class DeviceState:
    device: Device
    address: ModbusAddress
    codec: RegisterMapCodec
    reachable: bool | None = None
    failures: int = 0
    polls: int = 0
    last_error: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class _Gateway:
    """One TCP connection to a Modbus TCP device or serial gateway, shared by its units."""

    def __init__(self, host: str, port: int, rtu: bool, timeout_s: float) -> None:
        self.client = AsyncModbusTcpClient(host, port=port, framer=FramerType.RTU if rtu else FramerType.SOCKET,
                                           timeout=timeout_s, retries=0, reconnect_delay=0)
        self.lock = asyncio.Lock()
        self.timeout_s = timeout_s

    async def read(self, codec: RegisterMapCodec, unit: int) -> list[int]:
        async with self.lock:
            try:
                return await asyncio.wait_for(self._read(codec, unit), self.timeout_s * 2)
            except TimeoutError:
                self.client.close()
                raise PollError("timeout", f"no answer within {self.timeout_s}s") from None
            except ModbusException as exc:
                self.client.close()
                raise PollError("connection", str(exc)) from None
            except OSError as exc:
                self.client.close()
                raise PollError("connection", str(exc)) from None

    async def _read(self, codec: RegisterMapCodec, unit: int) -> list[int]:
        if not self.client.connected and not await self.client.connect():
            raise PollError("connection", "cannot connect")
        read = (self.client.read_holding_registers if codec.table == "holding"
                else self.client.read_input_registers)
        result = await read(codec.start, count=codec.count, device_id=unit)
        if result.isError():
            raise PollError("modbus_exception", str(result))
        if len(result.registers) != codec.count:
            raise PollError("short_read", f"{len(result.registers)} registers, expected {codec.count}")
        return list(result.registers)

    def close(self) -> None:
        self.client.close()


class ModbusCollector:
    name = "modbus"

    def __init__(self, *, devices: DeviceSource, min_interval_s: float, timeout_s: float, backoff_max_s: float,
                 rtu_ports: tuple[int, ...] = (), reload_interval_s: float = 2.0) -> None:
        self._devices = devices
        self._known: Mapping[str, Device] | None = None
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self.backoff_max_s = backoff_max_s
        self.rtu_ports = frozenset(rtu_ports)
        self.reload_interval_s = reload_interval_s
        self.devices: dict[str, DeviceState] = {}
        self._gateways: dict[tuple[str, int], _Gateway] = {}
        self.failures_by_reason: dict[str, int] = {}
        self.polls = 0
        self._sink: Sink | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        self._sync()
        self._watch = asyncio.create_task(self._follow_registry(), name="modbus-registry")

    async def stop(self) -> None:
        tasks = [t for t in (self._watch, *(s.task for s in self.devices.values())) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for gw in self._gateways.values():
            gw.close()

    def tasks(self) -> dict[str, asyncio.Task[None]]:
        """Long-running tasks the service supervises (the registry follower; polls are per device)."""
        return {"registry": self._watch} if self._watch is not None else {}

    def ready(self) -> tuple[bool, str]:
        if self._sink is None:
            return False, "not started"
        down = sum(1 for s in self.devices.values() if s.reachable is False)
        return True, f"polling {len(self.devices)} devices, {down} unreachable"

    def _wanted(self) -> dict[str, tuple[Device, ModbusAddress, RegisterMapCodec]]:
        self._known = self._devices()
        out = {}
        for key, dev in self._known.items():
            addr = parse_key(key)
            if addr is None or dev.status == "retired":
                continue
            try:
                codec = get_model(dev.model).codec
            except UnknownModel:
                continue
            if isinstance(codec, RegisterMapCodec):
                out[key] = (dev, addr, codec)
        return out

    def _sync(self) -> None:
        wanted = self._wanted()
        for key in list(self.devices):
            state = self.devices[key]
            if key not in wanted or wanted[key][0] is not state.device:
                if state.task is not None:
                    state.task.cancel()
                del self.devices[key]
        for key, (dev, addr, codec) in wanted.items():
            if key not in self.devices:
                state = DeviceState(dev, addr, codec)
                state.task = asyncio.create_task(self._poll_loop(state), name=f"modbus {key}")
                self.devices[key] = state

    async def _follow_registry(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval_s)
            if self._devices() is not self._known:
                self._sync()

    def _gateway(self, addr: ModbusAddress) -> _Gateway:
        gw = self._gateways.get((addr.host, addr.port))
        if gw is None:
            gw = _Gateway(addr.host, addr.port, addr.port in self.rtu_ports, self.timeout_s)
            self._gateways[(addr.host, addr.port)] = gw
        return gw

    async def _poll_loop(self, state: DeviceState) -> None:
        interval = max(self.min_interval_s, float(state.device.expected_interval_s))
        while True:
            started = time.monotonic()
            await self.poll_once(state)
            delay = backoff_s(state.failures, interval, self.backoff_max_s) if state.failures else interval
            await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)))

    async def poll_once(self, state: DeviceState) -> None:
        assert self._sink is not None
        key = state.address.key
        try:
            registers = await self._gateway(state.address).read(state.codec, state.address.unit)
        except PollError as exc:
            state.failures += 1
            state.last_error = str(exc)
            self.failures_by_reason[exc.reason] = self.failures_by_reason.get(exc.reason, 0) + 1
            if state.reachable is not False:
                logger.warning("modbus {} ({}) unreachable: {}", state.device.id, key, exc)
                state.reachable = False
                await self._reachability(key, False)
            return
        state.polls += 1
        self.polls += 1
        state.failures = 0
        now = time.time_ns()
        if state.reachable is not True:
            state.reachable = True
            await self._reachability(key, True, now)
        up = Uplink(key, to_payload(registers), state.codec.start, now, "modbus", now,
                    times=(TimeCandidate("poll", now),))
        await self._sink.put_async(Incoming("modbus", key, up.payload, now, uplink=up))

    async def _reachability(self, key: str, reachable: bool, now: int | None = None) -> None:
        """A health report: no registers, only `reachable` (a `device_health` point)."""
        assert self._sink is not None
        now = now or time.time_ns()
        up = Uplink(key, b"", 0, now, "modbus", now, reachable=reachable)
        await self._sink.put_async(Incoming("modbus", key, b"", now, uplink=up))

    @property
    def unreachable(self) -> int:
        """Devices not answering now."""
        return sum(1 for s in self.devices.values() if s.reachable is False)
