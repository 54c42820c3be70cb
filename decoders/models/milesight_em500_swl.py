"""Milesight EM500-SWL submersible (pressure) water-level sensor: reports the depth itself, in cm."""

from __future__ import annotations

from decoders.engines import milesight
from decoders.engines.tlv import Value, item
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = milesight.codec(
    "milesight-em500-swl", "water_level",
    item(0x03, 0x77, 2, Value("depth_mm", "H", mul=10,
                              sentinels=((0xFFFF, "sensor collection failed"), (0xFFFD, "sensor out of range"))),
         name="water level"),
    milesight.HISTORY_6,
    extra_responses={**milesight.EM500_RESPONSES, 0x1B: 5},
)

MODEL = ModelInfo(
    model="milesight-em500-swl", kind="water_level", vendor="milesight", title="Milesight EM500-SWL submersible level",
    source="native", codec=CODEC,
    ranges={"depth_mm": FieldRange(0, 10_000, 10), "battery_pct": FieldRange(0, 100, 1)},
    reference="Milesight-IoT/SensorDecoders EM_Series/EM500_Series/EM500-SWL/README.md (level in cm)",
)
