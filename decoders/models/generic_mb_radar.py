"""Modbus radar water-level gauge for underpasses (RS-485 via a TCP gateway, or Modbus TCP), register map below.

Holding registers (function 0x03), as the common 80 GHz radar level gauges lay them out:

    address  type  content
    0x0000   f32   air gap (sensor to water surface), m, word order CDAB (low word first)
    0x0002   u16   status: bit 0 = echo lost
    0x0003   i16   electronics temperature, 0.1 °C

Depth is derived from the air gap and the install's `mount_height_mm`.
"""

from __future__ import annotations

from decoders.engines.modbus import Register, RegisterMapCodec
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = RegisterMapCodec(
    "generic-mb-radar", "water_level",
    (Register("distance_mm", 0x0000, "f32", scale=1000.0, decimals=1, word_order="little"),
     Register("generic_echo_lost_alarm", 0x0002, "u16", bit=0),
     Register("temperature_c", 0x0003, "i16", scale=0.1, decimals=1)),
    table="holding",
)

MODEL = ModelInfo(
    model="generic-mb-radar", kind="water_level", vendor="generic", title="Modbus radar water level (underpass)",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(100, 10_000, 0.1), "temperature_c": FieldRange(-40, 85, 0.1)},
    install_params=("mount_height_mm",), dead_zone_mm=100.0,
    reference="typical 80 GHz radar level gauge Modbus map (float32 CDAB air gap in m); 0.1–10 m",
)
