"""Dragino LDDS20 ultrasonic liquid level sensor: mounted under the container, it measures the fill height."""

from __future__ import annotations

from decoders.engines.dragino import DraginoDistanceCodec
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

SENTINELS = {0: "no ultrasonic sensor detected", 20: "invalid reading"}

CODEC = DraginoDistanceCodec("dragino-ldds20", "bin_fill", SENTINELS)

MODEL = ModelInfo(
    model="dragino-ldds20", kind="bin_fill", vendor="dragino",
    title="Dragino LDDS20 ultrasonic liquid level (under the bin)",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(21, 2000, 1), "battery_v": FieldRange(2.5, 3.6, 0.001)},
    install_params=("bin_depth_mm",), dead_zone_mm=20.0, mounting="bottom",
    reference="dragino/dragino-end-node-decoder LDDS20/ldds20 decoder.txt; TheThingsNetwork/lorawan-devices "
              "vendor/dragino/ldds20-114.js (0 = no sensor, 20 = invalid reading)",
)
