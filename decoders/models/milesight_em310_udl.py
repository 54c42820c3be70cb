"""Milesight EM310-UDL ultrasonic distance sensor with tilt detection, for waste bins."""

from __future__ import annotations

from decoders.engines import milesight
from decoders.engines.tlv import Value, item
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = milesight.codec(
    "milesight-em310-udl", "bin_fill",
    item(0x03, 0x82, 2, Value("distance_mm", "H"), name="distance"),
    item(0x04, 0x00, 1, Value("tilted", "B", kind=bool), name="position"),
)

MODEL = ModelInfo(
    model="milesight-em310-udl", kind="bin_fill", vendor="milesight", title="Milesight EM310-UDL ultrasonic bin level",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(250, 4500, 1), "tilted": FieldRange(0, 1, 1),
            "battery_pct": FieldRange(0, 100, 1)},
    install_params=("bin_depth_mm",), dead_zone_mm=250.0,
    reference="Milesight-IoT/SensorDecoders EM_Series/EM300_Series/EM310-UDL/README.md",
)
