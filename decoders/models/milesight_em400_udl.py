"""Milesight EM400-UDL ultrasonic distance sensor (temperature, tilt, threshold alarms), for waste bins."""

from __future__ import annotations

from decoders.engines import milesight
from decoders.engines.tlv import Value, item
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = milesight.codec(
    "milesight-em400-udl", "bin_fill",
    item(0x84, 0x82, 3, Value("distance_mm", "H"), Value("milesight_distance_alarm", "B", 2, kind=bool),
         name="distance with alarm"),
    item(0x83, 0x67, 3, Value("temperature_c", "h", div=10), Value("milesight_temperature_alarm", "B", 2, kind=bool),
         name="temperature with alarm"),
    item(0x03, 0x67, 2, Value("temperature_c", "h", div=10), name="temperature"),
    item(0x04, 0x82, 2, Value("distance_mm", "H"), name="distance"),
    item(0x05, 0x00, 1, Value("tilted", "B", kind=bool), name="position"),
    item(0x06, 0x88, 9, name="location", note="NB-IoT location item skipped"),
    extra_responses={0x13: 1, 0x1C: 2, 0x28: 1, 0x3E: 1, 0x4A: 1, 0x56: 1, 0x70: 2, 0x71: 1},
)

MODEL = ModelInfo(
    model="milesight-em400-udl", kind="bin_fill", vendor="milesight", title="Milesight EM400-UDL ultrasonic bin level",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(250, 4500, 1), "tilted": FieldRange(0, 1, 1),
            "temperature_c": FieldRange(-20, 60, 0.1), "battery_pct": FieldRange(0, 100, 1)},
    install_params=("bin_depth_mm",), dead_zone_mm=250.0,
    reference="Milesight-IoT/SensorDecoders EM_Series/EM400_Series/EM400-UDL/README.md",
)
