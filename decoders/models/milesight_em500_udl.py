"""Milesight EM500-UDL ultrasonic distance sensor, used here as a road water-level gauge."""

from __future__ import annotations

from decoders.engines import milesight
from decoders.engines.tlv import Value, item
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = milesight.codec(
    "milesight-em500-udl", "water_level",
    item(0x03, 0x82, 2, Value("distance_mm", "H"), name="distance"),
    item(0x83, 0xE9, 5, name="distance mutation alarm",
         note="distance mutation alarm item skipped: its distance unit is not documented"),
    milesight.history(6, Value("distance_mm", "H", 4)),
    extra_responses=milesight.EM500_RESPONSES,
)

MODEL = ModelInfo(
    model="milesight-em500-udl", kind="water_level", vendor="milesight",
    title="Milesight EM500-UDL ultrasonic distance",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(250, 10_000, 1), "battery_pct": FieldRange(0, 100, 1)},
    install_params=("mount_height_mm",), dead_zone_mm=250.0,
    reference="Milesight-IoT/SensorDecoders EM_Series/EM500_Series/EM500-UDL/README.md and "
              "EM500-UDL_Decoder.js (history 0x20 0xCE: timestamp uint32 LE, distance uint16 LE mm); "
              "TheThingsNetwork/lorawan-devices vendor/milesight-iot/em500-udl.js",
)
