"""The `[modbus]` section of config.toml: polling the registry's Modbus devices."""

from __future__ import annotations

from pydantic import Field

from core.config import Section


class ModbusConfig(Section):
    enabled: bool = Field(False, description=("poll the registry's Modbus devices (key host:port/unit, a Modbus "
                                              "model)"))
    min_interval_s: float = Field(1.0, gt=0, description=("shortest poll interval; each device is polled every "
                                                          "expected_interval_s (registry)"))
    timeout_s: float = Field(3.0, gt=0, description=("time allowed for one read before the device counts as "
                                                     "unreachable, seconds"))
    backoff_max_s: float = Field(300.0, gt=0, description=("longest pause between polls of an unreachable device, "
                                                           "seconds"))
    rtu_ports: list[int] = Field(default_factory=list,
                                 description=("TCP ports of serial gateways that pass Modbus RTU frames through "
                                              "(e.g. [4196])"))
