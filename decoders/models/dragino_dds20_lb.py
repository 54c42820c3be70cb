"""Dragino DDS20-LB ultrasonic liquid level sensor (LDDS20 successor): fill height from under the container."""

from __future__ import annotations

from decoders.engines.dragino import DraginoDistanceCodec
from decoders.model_info import ModelInfo
from decoders.models.dragino_ldds20 import SENTINELS
from decoders.ranges import FieldRange

CODEC = DraginoDistanceCodec("dragino-dds20-lb", "bin_fill", SENTINELS, lb_ports=True)

MODEL = ModelInfo(
    model="dragino-dds20-lb", kind="bin_fill", vendor="dragino",
    title="Dragino DDS20-LB ultrasonic liquid level (under the bin)",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(21, 2000, 1), "battery_v": FieldRange(2.5, 3.6, 0.001)},
    install_params=("bin_depth_mm",), dead_zone_mm=20.0, mounting="bottom",
    reference="dragino/dragino-end-node-decoder DDS20-LB/DDS20-LB_TTN_Decoder.txt; "
              "TheThingsNetwork/lorawan-devices vendor/dragino/dds20-lb.js",
)
