"""Dragino LDDS75 ultrasonic distance sensor (280–7500 mm), used as a road water-level gauge."""

from __future__ import annotations

from decoders.engines.dragino import DraginoDistanceCodec
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = DraginoDistanceCodec("dragino-ldds75", "water_level")

MODEL = ModelInfo(
    model="dragino-ldds75", kind="water_level", vendor="dragino", title="Dragino LDDS75 ultrasonic distance",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(280, 7500, 1), "battery_v": FieldRange(2.5, 3.6, 0.001)},
    install_params=("mount_height_mm",), dead_zone_mm=280.0,
    reference="dragino/dragino-end-node-decoder LDDS75/LDDS75_Decoder_V1.1.4.js; Dragino LDDS75 manual "
              "(range 280–7500 mm, 0 = no sensor)",
)
