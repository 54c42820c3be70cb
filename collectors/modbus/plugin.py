"""The Modbus plug-in: `[modbus]`, polling the registry's Modbus devices, given the service's device list."""

from __future__ import annotations

from collectors.modbus.config import ModbusConfig
from collectors.modbus.metrics import ModbusMetrics
from collectors.plugin import Collector, CollectorContext, CollectorPlugin


def build(ctx: CollectorContext) -> Collector | None:
    """The poller when `[modbus] enabled`; it polls the Modbus devices of `ctx.devices`."""
    mb = ctx.section("modbus", ModbusConfig)
    if not mb.enabled:
        return None
    from collectors.modbus.collector import ModbusCollector  # pymodbus is imported only when polling is on

    return ModbusCollector(devices=ctx.devices, min_interval_s=mb.min_interval_s, timeout_s=mb.timeout_s,
                           backoff_max_s=mb.backoff_max_s, rtu_ports=tuple(mb.rtu_ports))


def unshared(ctx: CollectorContext) -> str | None:
    """Every poller polls every Modbus device of the registry: N processes would poll each N times."""
    if not ctx.section("modbus", ModbusConfig).enabled:
        return None
    return ("[modbus] polls every Modbus device of the registry, so each worker would poll it again; run Modbus "
            "polling in its own `urbansense run --role ingest` with a config that enables only [modbus]")


PLUGIN = CollectorPlugin(name="modbus", sections={"modbus": ModbusConfig}, build=build, metrics=ModbusMetrics,
                         unshared=unshared)
